"""Naive reference implementations, written from the definition of the estimator only.

Exact moments by enumerating every probe of a finite-support distribution: no formula
from snrkit is used, so agreement is a proof on these inputs, not a statistical check.
"""

from __future__ import annotations

import itertools
import math

import jax.numpy as jnp
import numpy as np

from snrkit.probes import Probe


def three_point_probe(p: float) -> Probe:
    """Entries ``±1/sqrt(p)`` with probability ``p/2`` each and ``0`` otherwise: kurtosis ``1/p``."""
    import jax

    c = 1.0 / math.sqrt(p)

    def sampler(key, shape, dtype):
        u = jax.random.uniform(key, shape, jnp.float32)
        return jnp.where(u < p / 2, -c, jnp.where(u < p, c, 0.0)).astype(dtype)

    return Probe(f"three-point-{p:g}", 1 / p, 1 / p**2, 1 / p**3, sampler)


def support(probe_name: str, p: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Values and probabilities of one probe entry."""
    if probe_name == "rademacher":
        return np.array([-1.0, 1.0]), np.array([0.5, 0.5])
    c = 1.0 / math.sqrt(p)
    return np.array([-c, 0.0, c]), np.array([p / 2, 1 - p, p / 2])


def estimate(grad: np.ndarray, probes: np.ndarray, block_ids: np.ndarray) -> np.ndarray:
    """``g = mean_k sum_B (grad_B . v_kB) v_kB`` from probes of shape ``(K, n)``, straight from the definition."""
    g = np.zeros_like(grad)
    for v in probes:
        for b in np.unique(block_ids):
            mask = block_ids == b
            g[mask] += (grad[mask] @ v[mask]) * v[mask]
    return g / probes.shape[0]


def exact_moments(grad, directions, block_ids, values, probs):
    """Exact mean, covariance and fourth central moments by enumerating every probe."""
    grad = np.asarray(grad, np.float64)
    n = grad.size
    outcomes, weights = [], []
    for combo in itertools.product(range(values.size), repeat=n * directions):
        idx = np.array(combo)
        outcomes.append(estimate(grad, values[idx].reshape(directions, n), block_ids))
        weights.append(np.prod(probs[idx]))
    g, w = np.array(outcomes), np.array(weights)
    mean = w @ g
    d = g - mean
    cov = (d * w[:, None]).T @ d
    fourth = w @ d**4
    return mean, cov, fourth
