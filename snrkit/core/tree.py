"""Pytree plumbing shared by every estimator: ravel order, host copies, per-sample keys.

Everything flat in snrkit uses `jax.flatten_util.ravel_pytree` order, so a flat array and
the pytree it came from describe the same coordinates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from snrkit.core.threefry import unrolled

PyTree = Any
"""Any JAX pytree of arrays (a flat array is a pytree with one leaf)."""


def leaf_paths(tree: PyTree) -> list[str]:
    """Human-readable path of every leaf, in ravel order (for error messages).

    Args:
        tree: any pytree.

    Returns:
        One `jax.tree_util.keystr` per leaf; `"<root>"` for a bare array.

    Examples:
        >>> import jax.numpy as jnp
        >>> leaf_paths({"b": jnp.zeros(2), "w": jnp.zeros((2, 2))})
        ["['b']", "['w']"]
        >>> leaf_paths(jnp.zeros(3))
        ['<root>']
    """
    return [jax.tree_util.keystr(path) or "<root>" for path, _ in jax.tree_util.tree_leaves_with_path(tree)]


def ravel(tree: PyTree) -> tuple[jax.Array, Callable[[jax.Array], PyTree]]:
    """Flatten a pytree to one array in ravel order, with the inverse.

    Args:
        tree: a pytree of arrays.

    Returns:
        `(flat, unravel)` as from `jax.flatten_util.ravel_pytree`.

    Examples:
        >>> import jax.numpy as jnp
        >>> flat, unravel = ravel(
        ...     {"b": jnp.array([1.0]), "w": jnp.array([2.0, 3.0])}
        ... )
        >>> flat.tolist()
        [1.0, 2.0, 3.0]
        >>> unravel(flat)["w"].tolist()
        [2.0, 3.0]
    """
    return ravel_pytree(tree)


def ravel_host(tree: PyTree) -> np.ndarray:
    """Flatten a pytree of host arrays to one float64 NumPy array, in ravel order.

    `ravel_pytree` would round float64 host values to float32 when x64 is off, so host
    results (Monte Carlo moments) are flattened here instead.

    Args:
        tree: a pytree of NumPy or JAX arrays.

    Returns:
        A float64 NumPy array of all coordinates.

    Examples:
        >>> import numpy as np
        >>> flat = ravel_host({"b": np.array([1e-20]), "w": np.array([[2.0, 3.0]])})
        >>> flat.dtype, flat.tolist()
        (dtype('float64'), [1e-20, 2.0, 3.0])
    """
    return np.concatenate([np.ravel(np.asarray(leaf, dtype=np.float64)) for leaf in jax.tree_util.tree_leaves(tree)])


def unravel_host(flat: np.ndarray, like: PyTree) -> PyTree:
    """Inverse of `ravel_host`: split `flat` into NumPy arrays shaped like `like`.

    A trailing axis layout is kept: `flat` of shape `(*lead, n)` gives leaves of shape
    `(*lead, *leaf.shape)`.

    Args:
        flat: array whose last axis holds the `n` coordinates.
        like: pytree giving the structure and leaf shapes (values are ignored).

    Returns:
        A pytree of NumPy arrays shaped like `like`, with the leading axes of `flat`.

    Raises:
        ValueError: the last axis of `flat` is not the number of coordinates of `like`.

    Examples:
        >>> import numpy as np
        >>> like = {"b": np.zeros(1), "w": np.zeros((2, 1))}
        >>> tree = unravel_host(np.arange(6.0).reshape(2, 3), like)  # two rows
        >>> tree["w"].shape, tree["w"][1].ravel().tolist()
        ((2, 2, 1), [4.0, 5.0])
    """
    flat = np.asarray(flat)
    lead = flat.shape[:-1]
    leaves, treedef = jax.tree_util.tree_flatten(like)
    out, start = [], 0
    for leaf in leaves:
        shape = np.shape(leaf)
        size = int(np.prod(shape, dtype=np.int64))
        out.append(flat[..., start : start + size].reshape(lead + tuple(shape)))
        start += size
    if start != flat.shape[-1]:
        raise ValueError(f"flat array has {flat.shape[-1]} coordinates but the pytree has {start}")
    return jax.tree_util.tree_unflatten(treedef, out)


def is_traced(tree: PyTree) -> bool:
    """Whether any leaf is a JAX tracer: the values are being traced (jit, vmap, grad), not known.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> is_traced({"w": jnp.ones(2)}), bool(jax.jit(is_traced)(jnp.ones(2)))
        (False, True)
    """
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(tree))


def leaf_sizes(tree: PyTree) -> list[int]:
    """Number of coordinates of each leaf, in ravel order.

    Args:
        tree: a pytree of arrays.

    Returns:
        One size per leaf.

    Examples:
        >>> import numpy as np
        >>> leaf_sizes({"b": np.zeros(3), "w": np.zeros((2, 4))})
        [3, 8]
    """
    return [int(np.size(leaf)) for leaf in jax.tree_util.tree_leaves(tree)]


def sample_key(key: jax.Array, index: jax.Array | int) -> jax.Array:
    """Key of the `index`-th sample drawn from `key`: `jax.random.fold_in(key, index)`.

    Derived with `fold_in` so that sample `i` is the same whatever chunk it is drawn in:
    a Monte Carlo result depends on (key, num_samples) only. A threefry key comes back on
    the [unrolled][snrkit.core.threefry] implementation: the same draws, faster on a CPU.

    Args:
        key: the key of the whole draw.
        index: the sample's index.

    Returns:
        The key of that sample, a typed key: a threefry key (typed, or raw `uint32`) comes
        back on the unrolled implementation, whose draws are JAX's but whose type is not
        JAX's threefry key (do not mix the two in one array, `lax.cond` or `scan` carry).

    Examples:
        >>> import jax
        >>> key = jax.random.key(0)
        >>> k3 = jax.random.key_data(sample_key(key, 3))
        >>> bool((k3 == jax.random.key_data(jax.random.fold_in(key, 3))).all())
        True
    """
    return unrolled(jax.random.fold_in(key, jnp.asarray(index, dtype=jnp.uint32)))
