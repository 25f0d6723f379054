"""Input checks shared by every module: each raises before any long work, naming the argument and the fix.

Examples:
    >>> from snrkit.core.validation import check_int, check_alpha
    >>> check_int(4, "directions")
    4
    >>> check_alpha(1.5)
    Traceback (most recent call last):
    ...
    ValueError: alpha must lie strictly between 0 and 1 ...; got 1.5
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from snrkit.core.tree import PyTree, is_traced, leaf_paths

MAX_SEED = 2**32 - 1
"""The largest seed snrkit accepts. Without x64, `jax.random.key` keeps only the low 32 bits
of a seed, so larger seeds would silently collide with smaller ones (2**32 gives the key of 0)."""


def check_int(value: Any, name: str, *, minimum: int = 1, maximum: int | None = None, hint: str = "") -> int:
    """Return `value` as an int if it is an integer in `[minimum, maximum]`, else raise a clear error.

    The one integer check of snrkit: counts, directions, blocks, batch sizes, widths.

    Args:
        value: the value to check; Python and NumPy integers are accepted, bools and floats are not.
        name: the argument's name, used in the message.
        minimum: smallest accepted value.
        maximum: largest accepted value, or `None` for no bound.
        hint: what the number means, appended to the message (e.g. "the number K of probes averaged").

    Returns:
        `int(value)`.

    Raises:
        TypeError: not an integer.
        ValueError: out of range.

    Examples:
        >>> from snrkit.core.validation import check_int
        >>> check_int(0, "num")
        Traceback (most recent call last):
        ...
        ValueError: num must be at least 1, got 0
        >>> check_int(2.0, "num")
        Traceback (most recent call last):
        ...
        TypeError: num must be a positive int, got 2.0
    """
    what = f" ({hint})" if hint else ""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        kind = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise TypeError(f"{name} must be {kind}{what}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}{what}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum}{what}, got {value}")
    return int(value)


def is_positive_int(value: Any) -> bool:
    """Whether `value` is an integer (Python or NumPy, not a bool or a float) of at least 1.

    Examples:
        >>> from snrkit.core.validation import is_positive_int
        >>> is_positive_int(3), is_positive_int(2.0), is_positive_int(True)
        (True, False, False)
    """
    return not isinstance(value, bool) and isinstance(value, int | np.integer) and value >= 1


def check_alpha(alpha: Any, name: str = "alpha") -> float:
    """Return `alpha` as a float if it is a probability strictly between 0 and 1.

    A false-failure rate of 0 would accept any formula, and one of 1 or more would
    refute the exact law itself, so both are refused rather than silently used.

    Args:
        alpha: the significance level (false-failure rate) of a test.
        name: the argument's name, used in the message.

    Returns:
        `float(alpha)`.

    Raises:
        TypeError: not a real number.
        ValueError: not in the open interval (0, 1).

    Examples:
        >>> from snrkit.core.validation import check_alpha
        >>> check_alpha(1e-6)
        1e-06
    """
    if isinstance(alpha, bool) or not isinstance(alpha, int | float | np.integer | np.floating):
        raise TypeError(f"{name} must be a float strictly between 0 and 1 (a false-failure rate, e.g. 1e-6); got {alpha!r}")
    alpha = float(alpha)
    if not (0.0 < alpha < 1.0) or math.isnan(alpha):
        raise ValueError(f"{name} must lie strictly between 0 and 1 (a false-failure rate, e.g. 1e-6); got {alpha!r}")
    return alpha


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
        >>> validate_float_tree(
        ...     {"w": jnp.array([1.0, 2.0])}, "grad"
        ... )  # fine: returns None
        >>> validate_float_tree({"w": jnp.array([1.0, jnp.nan])}, "grad")
        Traceback (most recent call last):
        ...
        ValueError: grad['w'] has 1 non-finite value(s) (NaN or inf); ...
        >>> validate_float_tree(jnp.array([1, 2]), "grad")
        Traceback (most recent call last):
        ...
        TypeError: grad has dtype int32; ...
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
    if check_finite and not is_traced(leaves):
        for path, leaf in zip(leaf_paths(tree), leaves, strict=True):
            finite = np.isfinite(np.asarray(leaf))
            if not finite.all():
                bad = int(finite.size - finite.sum())
                raise ValueError(
                    f"{name}{'' if path == '<root>' else path} has {bad} non-finite value(s) (NaN or inf); "
                    f"the law of an estimator is only defined for a finite gradient. Check the loss "
                    f"for overflow (e.g. log of 0) before computing its gradient."
                )


def check_callback(value: Any, name: str, call: str) -> None:
    """Raise a clear error, before any work, unless `value` is `None` or a function.

    Args:
        value: the argument.
        name: its name, for the message.
        call: how it is called, e.g. `"on_progress(done, total)"`.

    Examples:
        >>> from snrkit.core.validation import check_callback
        >>> check_callback(1, "on_progress", "on_progress(done, total)")
        Traceback (most recent call last):
        ...
        TypeError: on_progress must be a function on_progress(done, total) ...
    """
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be a function {call} or None, got {value!r}")


def check_key(key: Any, name: str = "key") -> jax.Array:
    """Return `key` if it is a JAX PRNG key (typed or raw uint32), else raise a clear TypeError.

    Args:
        key: the value to check.
        name: the argument's name, used in the message.

    Returns:
        `key`, as a JAX array.

    Raises:
        TypeError: `key` is not a typed key nor a raw `uint32` key of shape `(2,)`, or is a
            batch of keys.

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
        if key.shape == ():
            return key
        raise TypeError(
            f"{name} must be one JAX random key, got a batch of keys of shape {key.shape}; snrkit derives "
            f"the key of each sample itself (fold_in), so pass a single key, e.g. jax.random.key(0) or {name}[0]"
        )
    if isinstance(key, jax.Array | np.ndarray) and key.dtype == np.uint32 and key.shape[-1:] == (2,):
        if key.shape == (2,):
            return jnp.asarray(key)
        raise TypeError(
            f"{name} must be one JAX random key, got a batch of raw keys of shape {key.shape}; pass a "
            f"single key, e.g. jax.random.key(0)"
        )
    raise TypeError(
        f"{name} must be a JAX random key, e.g. jax.random.key(0); got {type(key).__name__}"
        f"{'' if not hasattr(key, 'shape') else f' of shape {key.shape}'}. Keys are explicit in snrkit: "
        f"no global seed is used."
    )
