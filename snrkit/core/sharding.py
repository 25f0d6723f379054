r"""Samples spread over devices: a 1-D mesh, inputs copied to every device, results read back in device order.

[`monte_carlo`][snrkit.montecarlo.monte_carlo] and
[`Estimator.estimates`][snrkit.core.estimator.Estimator.estimates] hand each device whole
chunks of sample indices, of exactly the shape one device would draw them in. Sample $i$
still uses the probes of `fold_in(key, i)`, and a chunk computed on device $d$ is the same
compiled computation as on one device, so its values do not depend on the number of
devices (XLA may round a sample differently for another chunk *shape*, never for another
device).

The same code runs in one process with several devices and across processes started with
`jax.distributed.initialize` (one per host): every process passes the same host values,
[`replicate`][snrkit.core.sharding.replicate] and [`spread`][snrkit.core.sharding.spread]
build global arrays from them without `jax.device_put` (which refuses devices of other
processes), and [`gather`][snrkit.core.sharding.gather] returns every device's part to
every process.

Examples:
    >>> import jax, numpy as np
    >>> from snrkit.core import sharding
    >>> mesh = sharding.sample_mesh(jax.devices()[:1])
    >>> dict(mesh.shape)
    {'samples': 1}
    >>> x = sharding.spread(np.arange(3.0), mesh)
    >>> sharding.gather(x).tolist()
    [0.0, 1.0, 2.0]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from snrkit.core.tree import PyTree

AXIS = "samples"
"""Name of the mesh axis the samples are spread over."""

Devices = Sequence[jax.Device] | None
"""The devices to spread samples over; `None` means all of them, `jax.devices()`."""


def check_devices(devices: Any, name: str = "devices") -> tuple[jax.Device, ...]:
    """Return `devices` as a tuple of distinct devices of one platform, else raise a clear error.

    Args:
        devices: a sequence of `jax.Device`, e.g. `jax.devices()[:2]`, or `None` for every
            device (`jax.devices()`: in a multi-process run, those of every process).
        name: the argument's name, used in the message.

    Returns:
        The devices, in the order given: device $d$ of the mesh is `devices[d]`.

    Raises:
        TypeError: `devices` is not a sequence of `jax.Device`.
        ValueError: `devices` is empty, names a device twice or mixes platforms.

    Examples:
        >>> import jax
        >>> from snrkit.core.sharding import check_devices
        >>> check_devices(None) == tuple(jax.devices())
        True
        >>> check_devices([])
        Traceback (most recent call last):
        ...
        ValueError: devices is empty; pass at least one device, ...
        >>> check_devices(jax.devices()[0])
        Traceback (most recent call last):
        ...
        TypeError: devices must be a sequence of jax.Device, got one device; ...
    """
    if devices is None:
        return tuple(jax.devices())
    if isinstance(devices, jax.Device):
        raise TypeError(
            f"{name} must be a sequence of jax.Device, got one device; pass {name}=[device] "
            f"(e.g. {name}=jax.devices()[:1])"
        )
    if isinstance(devices, str) or not isinstance(devices, Sequence):
        raise TypeError(
            f"{name} must be a sequence of jax.Device, e.g. {name}=jax.devices()[:2], or None for all "
            f"devices; got {type(devices).__name__}"
        )
    devices = tuple(devices)
    if not devices:
        raise ValueError(
            f"{name} is empty; pass at least one device, e.g. {name}=jax.devices()[:1], "
            f"or {name}=None for all of them"
        )
    for device in devices:
        if not isinstance(device, jax.Device):
            raise TypeError(
                f"{name} must hold jax.Device objects (from jax.devices()), got {type(device).__name__}: "
                f"{device!r}"
            )
    if len(set(devices)) != len(devices):
        raise ValueError(f"{name} names a device more than once; list each device once, e.g. {name}=jax.devices()")
    platforms = sorted({device.platform for device in devices})
    if len(platforms) > 1:
        raise ValueError(
            f"{name} mixes platforms {platforms}; spread the samples over devices of one platform, "
            f"e.g. {name}=jax.devices('{platforms[0]}')"
        )
    return devices


def sample_mesh(devices: Devices = None) -> Mesh:
    """A 1-D mesh, axis [`AXIS`][snrkit.core.sharding.AXIS], over `devices` (checked by `check_devices`).

    Examples:
        >>> import jax
        >>> from snrkit.core.sharding import sample_mesh
        >>> sample_mesh().devices.size == jax.device_count()
        True
    """
    return Mesh(np.array(check_devices(devices), dtype=object), (AXIS,))


def _global(value: np.ndarray, sharding: NamedSharding) -> jax.Array:
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def replicate(tree: PyTree, mesh: Mesh) -> PyTree:
    """Every leaf of `tree` (arrays, typed or raw PRNG keys) copied to every device of `mesh`.

    Each process must pass the same values (a law, a key and parameters built the same way).

    Examples:
        >>> import jax, numpy as np
        >>> from snrkit.core.sharding import replicate, sample_mesh
        >>> mesh = sample_mesh(jax.devices()[:1])
        >>> key = replicate(jax.random.key(0), mesh)
        >>> same = jax.random.key_data(key) == jax.random.key_data(
        ...     jax.random.key(0)
        ... )
        >>> bool(same.all())
        True
    """
    everywhere = NamedSharding(mesh, P())

    def copy(leaf: Any) -> jax.Array:
        if jnp.issubdtype(jnp.result_type(leaf), jax.dtypes.prng_key):
            data = _global(np.asarray(jax.random.key_data(leaf)), everywhere)
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
        return _global(np.asarray(leaf), everywhere)

    return jax.tree_util.tree_map(copy, tree)


def spread(values: np.ndarray, mesh: Mesh) -> jax.Array:
    """A host array split along its leading axis over the devices of `mesh` (device `d` gets block `d`).

    Examples:
        >>> import jax, numpy as np
        >>> from snrkit.core.sharding import sample_mesh, spread
        >>> spread(np.arange(4), sample_mesh(jax.devices()[:1])).shape
        (4,)
    """
    return _global(np.asarray(values), NamedSharding(mesh, P(AXIS)))


def gather(tree: PyTree) -> PyTree:
    """Global arrays as NumPy arrays on every process (an all-gather where another process holds a part).

    Examples:
        >>> import jax, numpy as np
        >>> from snrkit.core.sharding import gather, sample_mesh, spread
        >>> mesh = sample_mesh(jax.devices()[:1])
        >>> gather({"x": spread(np.ones(2), mesh)})["x"].tolist()
        [1.0, 1.0]
    """

    def to_host(leaf: jax.Array) -> np.ndarray:
        if not leaf.is_fully_addressable:
            leaf = jax.jit(lambda x: x, out_shardings=NamedSharding(leaf.sharding.mesh, P()))(leaf)
        return np.asarray(leaf)

    return jax.tree_util.tree_map(to_host, tree)


__all__ = ["AXIS", "Devices", "check_devices", "gather", "replicate", "sample_mesh", "spread"]
