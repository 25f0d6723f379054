r"""The claims ledger: published statements about gradient-estimator noise, and their verdicts.

Every claim carries its source (paper and equation, see
[`bibliography`][snrkit.claims.bibliography]), the statement in LaTeX and in words, its
kind, a factory of the estimator it speaks of, the name of the check that tests it, and the
function that computes its prediction from a gradient. The claims are data, one module per
paper ([`registry`][snrkit.claims.registry]); the kinds of test are a registry too
([`CHECKS`][snrkit.claims.checks.CHECKS]). [`verify`][snrkit.claims.verify] runs the claim's
check on a real gradient and returns a [`Verdict`][snrkit.claims.records.Verdict]. Nothing
is stored: the verdict is recomputed on whatever gradient is given. The
[claims ledger](../claims.md) shows every claim with the verdicts of the latest run.

The truth for iid probes of kurtosis $\kappa = \mathbb{E}[v^4]$ (Gaussian 3, Rademacher 1),
averaged over $K$ directions, is

$$
\operatorname{Var}[g_i] = \frac{\|\nabla_{B(i)}\|^2 + (\kappa-2)\nabla_i^2}{K},
$$

where $B(i)$ is the block of a partitioned probe that holds entry $i$ (all entries when the
probe is not partitioned); it is derived in the docs: [Derivations](../derivations.md).
Several claims are the Rademacher truth stated for Gaussian probes, so each per-entry claim
can be verified under both probes (`probe="rademacher"`).

What each claim's `predict` computes from the gradient $\nabla$ ($n$ entries, $K$
directions or blocks); the statements as published are on the
[claims ledger](../claims.md):

- `baydin-unbiased` (Baydin et al. (2022), Thm 1): $\mathbb{E}[g] = \nabla$.
- `snrkit-variance`, `snrkit-partition-variance` (snrkit; derived in the docs):
  snrkit's exact law, $(\|\nabla_{B(i)}\|^2 + (\kappa-2)\nabla_i^2)/K$.
- `frye-eq1` (Frye (2022), eqs. (1) and (7)): $4\|\nabla\|^2$.
- `frye-eq5` (Frye (2022), eq. (5)): $2\nabla_i^2 + 4\sum_{j\neq i}\nabla_j^2$.
- `frye-snr` (Frye (2022), eqs. (2) and (8)): a mean entry SNR falling like $1/n$ (no
  per-entry prediction).
- `frye-thread` (Frye (2022), thread): $\|\nabla\|^2$ for the mean over entries.
- `daprato-variance` (Daprato, Jain, Hung, §3.1) and `yao-eq6` (Yao, eq. (6)):
  $\sum_{j\neq i}\nabla_j^2$.
- `yao-eq7` (Yao, eq. (7)): $\frac1K\sum_{j\neq i}\nabla_j^2$.
- `yao-eq8` (Yao, eq. (8)): $(n-1)\sigma^2/K$ and `yao-eq9` (Yao, eq. (9)):
  $(n-K)\sigma^2/K$, with the homogeneous entry size read as
  $\sigma^2 = \frac1n\sum_j\nabla_j^2$ (both state homogeneous entries as their condition).
- `yao-partition-beats-directions` (Yao, §III.C): a $K$-block partition has a smaller
  $\operatorname{tr}\operatorname{Cov}[g]$ than $K$ averaged directions.

Examples:
    >>> import jax, jax.numpy as jnp
    >>> import snrkit as sk
    >>> grad = jnp.array([3.0, -1.0, 0.5, 2.0])
    >>> sk.verify("frye-eq5", grad, key=jax.random.key(0)).verdict
    'refuted'
    >>> sk.verify("snrkit-variance", grad, key=jax.random.key(0)).verdict
    'holds'
"""

from snrkit.claims.bibliography import REFERENCES, Reference
from snrkit.claims.checks import CHECKS, MAX_RESOLUTION, QUICK_FULL_SAMPLES_UP_TO, SCALING_TOLERANCE, correction_terms
from snrkit.claims.engine import get_claim, verify, verify_all
from snrkit.claims.problems import DEFAULT_WIDTHS, TRAIN_STEPS, default_gradient, default_problem
from snrkit.claims.records import KINDS, Claim, Condition, Kind, Verdict
from snrkit.claims.registry import CLAIMS

__all__ = [
    "CLAIMS",
    "REFERENCES",
    "Reference",
    "CHECKS",
    "Claim",
    "Condition",
    "Kind",
    "KINDS",
    "Verdict",
    "verify",
    "verify_all",
    "get_claim",
    "correction_terms",
    "default_problem",
    "default_gradient",
    "DEFAULT_WIDTHS",
    "TRAIN_STEPS",
    "MAX_RESOLUTION",
    "QUICK_FULL_SAMPLES_UP_TO",
    "SCALING_TOLERANCE",
]
