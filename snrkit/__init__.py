"""snrkit: exact laws of gradient estimators that avoid backpropagation, checked by Monte Carlo.

An estimator's `given(problem)` is its exact law once the problem (the true gradient, or a
loss with its parameters and data) is fixed; `monte_carlo` samples that law, and
`stats.compare_variance` tests a formula against the samples. The estimator families are
registered in [`snrkit.families`][snrkit.families] and exported here by name
(`sk.ForwardGradient`, `sk.Partitioned`, ...).

Examples:
    >>> import jax, jax.numpy as jnp, numpy as np, snrkit as sk
    >>> grad = {"w": jnp.array([3.0, 4.0])}
    >>> law = sk.ForwardGradient(probe="gaussian", directions=4).given(grad)
    >>> np.asarray(
    ...     law.var()["w"]
    ... ).tolist()  # exact (‖∇‖² + ∇ᵢ²)/K, shaped like grad
    [8.5, 10.25]
    >>> m = sk.monte_carlo(law, jax.random.key(0), 4096, batches=32)
    >>> sk.stats.compare_variance(m, law).holds  # does the formula hold?
    True
"""

from snrkit import claims, ondisk, probes, stats
from snrkit.claims import CLAIMS, Verdict, verify
from snrkit.core.estimator import Cost, Estimator
from snrkit.core.law import Law
from snrkit.core.problem import GradientProblem, Problem
from snrkit.families import ESTIMATORS, FAMILIES
from snrkit.families.iid import BlockProbeLaw
from snrkit.montecarlo import Moments, moments_from_samples, monte_carlo

__version__ = "0.1.0"

# Every registered family's estimator is exported by name, so a new family needs no edit here.
globals().update(ESTIMATORS)

__all__ = [
    *ESTIMATORS,
    "Estimator",
    "Cost",
    "Law",
    "BlockProbeLaw",
    "Problem",
    "GradientProblem",
    "FAMILIES",
    "Moments",
    "monte_carlo",
    "moments_from_samples",
    "claims",
    "CLAIMS",
    "Verdict",
    "verify",
    "probes",
    "stats",
    "ondisk",
]
