"""Pytree plumbing shared by every estimator: validation, ravel order, host copies.

Everything flat in snrkit uses :func:`jax.flatten_util.ravel_pytree` order, so a flat
array and the pytree it came from describe the same coordinates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

PyTree = Any


def leaf_paths(tree: PyTree) -> list[str]:
    """Human-readable path of every leaf, in ravel order (for error messages)."""
    return [jax.tree_util.keystr(path) or "<root>" for path, _ in jax.tree_util.tree_leaves_with_path(tree)]


def validate_float_tree(tree: PyTree, name: str, *, check_finite: bool = True) -> None:
    """Raise a clear error unless ``tree`` is a non-empty pytree of finite floating arrays.

    Args:
        tree: the pytree to check.
        name: the argument's name, used in the message.
        check_finite: also reject NaN and inf (this reads every value, so it is skipped
            under tracing, where values are not known).
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
    """Flatten a pytree to one array in ravel order, with the inverse."""
    return ravel_pytree(tree)


def ravel_host(tree: PyTree) -> np.ndarray:
    """Flatten a pytree of host arrays to one float64 NumPy array, in ravel order.

    ``ravel_pytree`` would round float64 host values to float32 when x64 is off, so host
    results (Monte Carlo moments) are flattened here instead.
    """
    return np.concatenate([np.ravel(np.asarray(leaf, dtype=np.float64)) for leaf in jax.tree_util.tree_leaves(tree)])


def unravel_host(flat: np.ndarray, like: PyTree) -> PyTree:
    """Inverse of :func:`ravel_host`: split ``flat`` into NumPy arrays shaped like ``like``.

    A trailing axis layout is kept: ``flat`` of shape ``(*lead, n)`` gives leaves of shape
    ``(*lead, *leaf.shape)``.
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
    """Number of coordinates of each leaf, in ravel order."""
    return [int(np.size(leaf)) for leaf in jax.tree_util.tree_leaves(tree)]


def check_key(key: Any, name: str = "key") -> jax.Array:
    """Return ``key`` if it is a JAX PRNG key (typed or raw uint32), else raise a clear TypeError."""
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
    """Key of the ``index``-th sample drawn from ``key``.

    Derived with ``fold_in`` so that sample ``i`` is the same whatever chunk it is drawn
    in: a Monte Carlo result depends on (key, num_samples) only.
    """
    return jax.random.fold_in(key, jnp.asarray(index, dtype=jnp.uint32))
