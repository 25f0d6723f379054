"""The contract table: one row per family setting; every row must pass tests/families/test_contract.py.

A new family adds one row here (its estimator as a function of the gradient's shape, a
small gradient, the bad hyperparameters it must refuse, and whether it is unbiased and
rotation-invariant); its own closed forms go in its own test file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import snrkit as sk
from tests.reference import three_point_probe

# A small, uneven gradient: a few entries dominate, so per-entry errors have power.
SMALL = {"w": jnp.array([[1.5, -0.5, 0.25], [2.0, -1.0, 0.1]]), "b": jnp.array([0.3, -0.05])}


@dataclass(frozen=True)
class FamilyCase:
    """One setting of a family, and what the contract expects of it.

    Attributes:
        id: test id.
        make: `make(tree) -> Estimator`, from a pytree shaped like the gradient (explicit
            block ids must match it).
        bad: `(construct, error type, message regex)` of hyperparameters it must refuse.
        unbiased_invariant: unbiased, with a law that rotates with the gradient: its
            efficiency is at most 1 on every gradient.
    """

    id: str
    make: Callable[[Any], sk.Estimator]
    bad: tuple[tuple[Callable[[], Any], type[Exception], str], ...] = field(default=())
    unbiased_invariant: bool = False


def _size(tree: Any) -> int:
    return sum(int(np.size(leaf)) for leaf in jax.tree_util.tree_leaves(tree))


def _explicit_ids(tree: Any) -> np.ndarray:
    return np.arange(_size(tree)) % 3


def _factor(tree: Any, rank: int, seed: int = 0) -> np.ndarray:
    """A fixed random (n, rank) factor for a gradient shaped like `tree`."""
    return np.random.default_rng(seed).normal(size=(_size(tree), rank)).astype(np.float32)


def _belief(tree: Any) -> np.ndarray:
    """A fixed 'stale gradient': an uneven vector shaped like the flat gradient."""
    return np.random.default_rng(7).normal(size=_size(tree)).astype(np.float32) * np.linspace(0.2, 2.0, _size(tree))


CASES: tuple[FamilyCase, ...] = (
    FamilyCase(
        "forward-gaussian-K1",
        lambda tree: sk.ForwardGradient("gaussian"),
        bad=(
            (lambda: sk.ForwardGradient(directions=0), ValueError, "directions must be at least 1"),
            (lambda: sk.ForwardGradient(directions=2.0), TypeError, "directions must be a positive int"),
            (lambda: sk.ForwardGradient(probe="cauchy"), ValueError, r"unknown probe 'cauchy'; choose one of 'gaussian'"),
            (lambda: sk.ForwardGradient(probe=3), TypeError, "probe must be a name"),
        ),
        unbiased_invariant=True,
    ),
    FamilyCase("forward-rademacher-K4", lambda tree: sk.ForwardGradient("rademacher", directions=4)),
    FamilyCase("forward-three-point-K2", lambda tree: sk.ForwardGradient(three_point_probe(0.25), directions=2)),
    FamilyCase(
        "partitioned-3-blocks",
        lambda tree: sk.Partitioned(blocks=3),
        bad=(
            (lambda: sk.Partitioned(blocks=0), ValueError, "blocks must be at least 1"),
            (lambda: sk.Partitioned(blocks="layers"), ValueError, "blocks='layers' is not understood"),
            (lambda: sk.Partitioned(blocks=np.array([0.5, 1.0])), TypeError, "integer block ids"),
            (lambda: sk.Partitioned(blocks=None), TypeError, "blocks must be an int"),
            (lambda: sk.Partitioned(blocks=2, directions=-1), ValueError, "directions must be at least 1"),
        ),
    ),
    FamilyCase("partitioned-leaves-uniform-K2", lambda tree: sk.Partitioned("leaves", "uniform", directions=2)),
    FamilyCase("partitioned-explicit-rademacher", lambda tree: sk.Partitioned(_explicit_ids(tree), "rademacher")),
    FamilyCase(
        "orthogonal-unbiased-K3",
        lambda tree: sk.OrthogonalFrames(directions=3),
        bad=(
            (lambda: sk.OrthogonalFrames(directions=0), ValueError, "directions must be at least 1"),
            (lambda: sk.OrthogonalFrames(directions=2, scale="exact"), ValueError, "scale must be 'unbiased'"),
            (lambda: sk.OrthogonalFrames(directions=1.5), TypeError, "directions must be a positive int"),
        ),
        unbiased_invariant=True,
    ),
    FamilyCase("orthogonal-projection-K2", lambda tree: sk.OrthogonalFrames(directions=2, scale="projection")),
    FamilyCase(
        "covariance-factor-K2",
        lambda tree: sk.CovarianceProbe(factor=_factor(tree, 3), directions=2),
        bad=(
            (lambda: sk.CovarianceProbe(factor=np.ones(4)), ValueError, r"factor must be a 2-D array of shape \(n, r\)"),
            (lambda: sk.CovarianceProbe(factor=np.full((4, 2), np.nan)), ValueError, "factor has 8 non-finite"),
            (lambda: sk.CovarianceProbe(factor=np.ones((4, 2)), isotropic=-1.0), ValueError, "isotropic must be a finite"),
            (lambda: sk.CovarianceProbe(factor=np.ones((4, 2)), directions=0), ValueError, "directions must be at least 1"),
            (lambda: sk.CovarianceProbe(factor=None), TypeError, "factor must be an"),
            (lambda: sk.CovarianceProbe.prior(np.ones(4), confidence=1.5), ValueError, r"confidence must be a number in \[0, 1\]"),
        ),
    ),
    FamilyCase("covariance-prior-whitened-isotropic", lambda tree: sk.CovarianceProbe.prior(_belief(tree), confidence=0.6, whiten=True)),
    FamilyCase("covariance-prior", lambda tree: sk.CovarianceProbe.prior(_belief(tree), confidence=0.6, directions=3)),
    FamilyCase("covariance-subspace", lambda tree: sk.CovarianceProbe.subspace(_factor(tree, 4, seed=2))),
    FamilyCase(
        "multi-tangent-mean-unit-K3",
        lambda tree: sk.MultiTangent(directions=3, aggregation="mean", tangents="unit"),
        bad=(
            (lambda: sk.MultiTangent(aggregation="median"), ValueError, "aggregation must be one of 'sum', 'mean'"),
            (lambda: sk.MultiTangent(tangents="rademacher"), ValueError, "tangents must be one of 'gaussian', 'unit'"),
            (lambda: sk.MultiTangent(scale=0.0), ValueError, "scale must be a positive number or 'peer'"),
            (lambda: sk.MultiTangent(aggregation="mean", scale="peer"), ValueError, "assumes unit-length tangents"),
        ),
    ),
    FamilyCase("multi-tangent-sum-gaussian-K2", lambda tree: sk.MultiTangent(directions=2, aggregation="sum")),
    FamilyCase("multi-tangent-projection-peer-K3", lambda tree: sk.MultiTangent(directions=3, aggregation="projection", scale="peer")),
)
