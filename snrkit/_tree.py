"""Pytree plumbing shared by every estimator: validation, ravel order, host copies.

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


def validate_float_tree(tree: PyTree, name: str, *, check_finite: bool = True) -> None:
    """Raise a clear error unless `tree` is a non-empty pytree of finite floating arrays.

    Args:
        tree: the pytree to check.
        name: the argument's name, used in the message.
        check_finite: also reject NaN and inf (this reads every value, so it is skipped
            under tracing, where values are not known).

    Raises:
        ValueError: `tree` has no leaf or no coordinate, or (with `check_finite`) a NaN or inf.
        TypeError: a leaf is not floating point.

    Examples:
        >>> import jax.numpy as jnp
        >>> validate_float_tree({"w": jnp.array([1.0, 2.0])}, "grad")   # fine: returns None
        >>> validate_float_tree({"w": jnp.array([1.0, jnp.nan])}, "grad")
        Traceback (most recent call last):
        ...
        ValueError: grad['w'] has 1 non-finite value(s) (NaN or inf); ...
        >>> validate_float_tree(jnp.array([1, 2]), "grad")
        Traceback (most recent call last):
        ...
        TypeError: grad has dtype int32; forward-gradient estimators need floating arrays. ...
    """
    leaves = jax.tree_util.tree_leaves(tree)
    if not leaves:
        raise ValueError(
            f"{name} is an empty pytree: there is no coordinate to estimate. "
            f"Pass the gradient itself (an array or a pytree with at least one array)."
        )
    for path, leaf in zip(leaf_paths(tree), leaves, strict=True):
        dtype = getattr(leaf, "dtype", None)
        if dtype is None:
            dtype = np.asarray(leaf).dtype
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(
                f"{name}{'' if path == '<root>' else path} has dtype {dtype}; forward-gradient "
                f"estimators need floating arrays. Cast it, e.g. jnp.asarray(x, jnp.float32)."
            )
    if sum(int(np.size(leaf)) for leaf in leaves) == 0:
        raise ValueError(f"{name} has no coordinates (all its arrays are empty); pass a non-empty gradient.")
    if check_finite and not any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
        for path, leaf in zip(leaf_paths(tree), leaves, strict=True):
            finite = np.isfinite(np.asarray(leaf))
            if not finite.all():
                bad = int(finite.size - finite.sum())
                raise ValueError(
                    f"{name}{'' if path == '<root>' else path} has {bad} non-finite value(s) (NaN or inf); "
                    f"the law of an estimator is only defined for a finite gradient. Check the loss "
                    f"for overflow (e.g. log of 0) before computing its gradient."
                )


def ravel(tree: PyTree) -> tuple[jax.Array, Callable[[jax.Array], PyTree]]:
    """Flatten a pytree to one array in ravel order, with the inverse.

    Args:
        tree: a pytree of arrays.

    Returns:
        `(flat, unravel)` as from `jax.flatten_util.ravel_pytree`.

    Examples:
        >>> import jax.numpy as jnp
        >>> flat, unravel = ravel({"b": jnp.array([1.0]), "w": jnp.array([2.0, 3.0])})
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
        >>> tree = unravel_host(np.arange(6.0).reshape(2, 3), like)   # two rows
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


def check_key(key: Any, name: str = "key") -> jax.Array:
    """Return `key` if it is a JAX PRNG key (typed or raw uint32), else raise a clear TypeError.

    Args:
        key: the value to check.
        name: the argument's name, used in the message.

    Returns:
        `key`, as a JAX array.

    Raises:
        TypeError: `key` is not a typed key nor a raw `uint32` key of shape `(2,)`.

    Examples:
        >>> import jax
        >>> check_key(jax.random.key(0)).shape
        ()
        >>> check_key(0)
        Traceback (most recent call last):
        ...
        TypeError: key must be a JAX random key, e.g. jax.random.key(0); got int. ...
    """
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    if isinstance(key, jax.Array | np.ndarray) and key.dtype == np.uint32 and key.shape == (2,):
        return jnp.asarray(key)
    raise TypeError(
        f"{name} must be a JAX random key, e.g. jax.random.key(0); got {type(key).__name__}"
        f"{'' if not hasattr(key, 'shape') else f' of shape {key.shape}'}. Keys are explicit in snrkit: "
        f"no global seed is used."
    )


def sample_key(key: jax.Array, index: jax.Array | int) -> jax.Array:
    """Key of the `index`-th sample drawn from `key`: `jax.random.fold_in(key, index)`.

    Derived with `fold_in` so that sample `i` is the same whatever chunk it is drawn in:
    a Monte Carlo result depends on (key, num_samples) only.

    Args:
        key: the key of the whole draw.
        index: the sample's index.

    Returns:
        The key of that sample.

    Examples:
        >>> import jax
        >>> key = jax.random.key(0)
        >>> k3 = jax.random.key_data(sample_key(key, 3))
        >>> bool((k3 == jax.random.key_data(jax.random.fold_in(key, 3))).all())
        True
    """
    return jax.random.fold_in(key, jnp.asarray(index, dtype=jnp.uint32))
