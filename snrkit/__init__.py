"""snrkit: exact variance and SNR of forward-gradient estimators, checked by Monte Carlo.

Typical use::

    import jax, snrkit as sk
    law = sk.ForwardGradient(probe="gaussian", directions=4).given(grad)
    law.var()                                       # exact, shaped like grad
    m = sk.monte_carlo(law, jax.random.key(0), 10_000)
    sk.stats.compare_variance(m, law)               # does the formula hold?
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
