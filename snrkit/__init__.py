"""snrkit: exact variance and SNR of forward-gradient estimators, checked by Monte Carlo.

An estimator's `given(grad)` is its exact law given the true gradient; `monte_carlo`
samples that law, and `stats.compare_variance` tests the formula against the samples.

Examples:
    >>> import jax, jax.numpy as jnp, numpy as np, snrkit as sk
    >>> grad = {"w": jnp.array([3.0, 4.0])}
    >>> law = sk.ForwardGradient(probe="gaussian", directions=4).given(grad)
    >>> np.asarray(law.var()["w"]).tolist()         # exact (‖∇‖² + ∇ᵢ²)/K, shaped like grad
    [8.5, 10.25]
    >>> m = sk.monte_carlo(law, jax.random.key(0), 4096, batches=32)
    >>> sk.stats.compare_variance(m, law).holds     # does the formula hold?
    True
"""

from snrkit import claims, probes, stats
from snrkit.claims import CLAIMS, Verdict, verify
from snrkit.estimators import Estimator, ForwardGradient, Partitioned
from snrkit.laws import BlockProbeLaw, Law
from snrkit.montecarlo import Moments, moments_from_samples, monte_carlo

__version__ = "0.1.0"

__all__ = [
    "Estimator",
    "ForwardGradient",
    "Partitioned",
    "Law",
    "BlockProbeLaw",
    "Moments",
    "monte_carlo",
    "moments_from_samples",
    "claims",
    "CLAIMS",
    "Verdict",
    "verify",
    "probes",
    "stats",
]
