r"""The claims ledger: published statements about forward-gradient noise, and their verdicts.

Every claim carries its source (paper and equation, numbered as in `shared/papers`), the
statement in LaTeX and in words, its kind, the estimator it speaks of, and the function that
computes its prediction from a gradient. [`verify`][snrkit.claims.verify] runs the real
estimator on a real gradient, compares it with the prediction using
[`snrkit.stats`][snrkit.stats], and returns a [`Verdict`][snrkit.claims.Verdict]. Nothing is
stored: the verdict is recomputed on whatever gradient is given. The
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

Examples:
    >>> import jax, jax.numpy as jnp
    >>> import snrkit as sk
    >>> grad = jnp.array([3.0, -1.0, 0.5, 2.0])
    >>> sk.verify("frye-eq5", grad, key=jax.random.key(0)).verdict
    'refuted'
    >>> sk.verify("snrkit-variance", grad, key=jax.random.key(0)).verdict
    'holds'
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats

from snrkit._tree import PyTree, check_key, ravel_host
from snrkit.estimators import Estimator, ForwardGradient, Partitioned
from snrkit.montecarlo import moments_from_samples, monte_carlo
from snrkit.stats import DEFAULT_ALPHA, compare_mean, compare_variance, median_pvalue

Kind = Literal["exact identity", "leading order in n", "scaling law", "comparison between estimators"]
"""How exact a claim is meant to be: an identity at every $n$, a statement to leading order
in the number of entries $n$, an asymptotic scaling law, or a comparison of two estimators."""

Test = Literal["mean", "entry-variance", "average-variance", "snr-scaling", "partition-vs-directions"]
r"""How [`verify`][snrkit.claims.verify] tests a claim.

- `"mean"`: $\mathbb{E}[g]$ against the prediction ([snrkit.stats.compare_mean][]).
- `"entry-variance"`: every $\operatorname{Var}[g_i]$ against the prediction
  ([snrkit.stats.compare_variance][]).
- `"average-variance"`: only the mean over entries, $\frac1n\sum_i\operatorname{Var}[g_i]$.
- `"snr-scaling"`: the log-log slope of the mean entry SNR over MLP widths
  ([snrkit.sweeps.fit_loglog_slope][]).
- `"partition-vs-directions"`: the sign of the difference of two total variances.
"""

Predict = Callable[[np.ndarray, np.ndarray, int], np.ndarray]
"""`predict(grad, block_ids, K) -> prediction`: a claim's per-entry prediction from the flat
float64 gradient, the block of each entry (all 0 without a partition) and $K$."""


@dataclass(frozen=True)
class Claim:
    r"""One published (or snrkit's own) statement about a gradient estimator.

    A claim is data: where it was published (`source`), what it says (`latex`, `words`), the
    estimator it speaks of, and `predict`, which turns a gradient into the per-entry value
    the claim predicts. [`verify`][snrkit.claims.verify] tests that prediction against
    samples of the claim's estimator on a real gradient. The registered claims are [`CLAIMS`][snrkit.claims.CLAIMS]; the
    [claims ledger](../claims.md) shows them with their verdicts.

    Examples:
        >>> import numpy as np
        >>> from snrkit.claims import CLAIMS
        >>> claim = CLAIMS["frye-eq5"]
        >>> claim.source
        'Frye (2022), eq. (5), its 2∇_i² from the unnumbered line before it'
        >>> print(claim.latex)
        \mathbb{V}[g_i] = 2\nabla_i^2 + 4\sum_{j\neq i}\nabla_j^2
        >>> grad = np.array([3.0, 1.0])
        >>> claim.predict(grad, np.zeros(2, int), 1).tolist()   # 2*9 + 4*1, 2*1 + 4*9
        [22.0, 38.0]
    """

    id: str
    """Stable identifier, e.g. `"frye-eq5"`: the key in [`CLAIMS`][snrkit.claims.CLAIMS] and
    the `--claim` value of `snrkit verify`."""
    source: str
    """Paper and equation (or section) the claim comes from, e.g. `"Frye (2022), eq. (5)"`."""
    latex: str
    r"""The statement in LaTeX, in the paper's notation, e.g. `\mathbb{V}[g_i] \approx 4\|\nabla\|^2`."""
    words: str
    """The statement in words."""
    kind: Kind
    """How exact the statement is meant to be (see [`Kind`][snrkit.claims.Kind])."""
    estimator: str
    """The estimator and setting the claim speaks of, in words."""
    test: Test
    """How [`verify`][snrkit.claims.verify] tests it (see [`Test`][snrkit.claims.Test])."""
    directions: int = 1
    """$K$: the number of averaged directions, or of blocks when `partition` is true."""
    partition: bool = False
    """True when the estimator is a $K$-block [`Partitioned`][snrkit.estimators.Partitioned]
    probe rather than $K$ averaged directions."""
    gradient: str = "output-bias"
    """The real gradient the claim is verified on by default (see
    [`default_gradient`][snrkit.claims.default_gradient]): `"output-bias"` (a concentrated
    layer), `"network"` (all parameters) or `"homogeneous"` (equal-magnitude entries, the
    setting the claim assumes); `"sweep"` for the scaling law, which uses MLPs of growing
    width."""
    predict: Predict | None = field(default=None, repr=False, compare=False)
    """`predict(grad, block_ids, K)`: the per-entry prediction (flat, float64; see
    [`Predict`][snrkit.claims.Predict]). `None` when the prediction is snrkit's exact law
    itself, or the claim is not about single entries."""

    def make_estimator(self, probe: str) -> Estimator:
        """The estimator the claim speaks of, with the given probe.

        Args:
            probe: `"gaussian"` or `"rademacher"`.

        Returns:
            A [`Partitioned`][snrkit.estimators.Partitioned] estimator with
            [`directions`][snrkit.claims.Claim.directions] blocks when
            [`partition`][snrkit.claims.Claim.partition] is true, else a
            [`ForwardGradient`][snrkit.estimators.ForwardGradient] averaging that many
            directions.

        Examples:
            >>> from snrkit.claims import CLAIMS
            >>> CLAIMS["yao-eq9"].make_estimator("gaussian")
            Partitioned(blocks=4, probe='gaussian', directions=1)
            >>> CLAIMS["yao-eq7"].make_estimator("rademacher")
            ForwardGradient(probe='rademacher', directions=4)
        """
        if self.partition:
            return Partitioned(blocks=self.directions, probe=probe)
        return ForwardGradient(probe=probe, directions=self.directions)

    def fingerprint(self) -> str:
        """A hash of everything the claim states and predicts.

        Covers every field and the prediction evaluated on a fixed gradient, so a verdict
        stored with it (the claims ledger in the docs) can tell when the claim has changed
        since it was verified.

        Examples:
            >>> from snrkit.claims import CLAIMS
            >>> len(CLAIMS["frye-eq5"].fingerprint())
            16
            >>> CLAIMS["frye-eq5"].fingerprint() == CLAIMS["frye-eq1"].fingerprint()
            False
        """
        fields = [self.id, self.source, self.latex, self.words, self.kind, self.estimator, self.test,
                  str(self.directions), str(self.partition), self.gradient]
        digest = hashlib.sha256("\x1f".join(fields).encode())
        if self.predict is not None:
            grad = np.linspace(-1.0, 2.0, 12)
            ids, _ = self.make_estimator("gaussian").block_assignment(grad, grad.size)
            ids = np.zeros(grad.size, np.int64) if ids is None else ids  # as verify passes them
            # rounded, so that the last bit of a platform's libm cannot change the hash
            digest.update(np.round(np.asarray(self.predict(grad, ids, self.directions), np.float64), 9).tobytes())
        return digest.hexdigest()[:16]


def _block_norms(grad: np.ndarray, ids: np.ndarray) -> np.ndarray:
    return np.bincount(ids, weights=grad**2)[ids]


def _sum_of_others(grad: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    r"""$\sum_{j\ne i}\nabla_j^2$: the Rademacher truth, stated by Daprato and Yao for Gaussians."""
    return grad @ grad - grad**2


def _homogeneous_sigma2(grad: np.ndarray) -> float:
    """σ² of 'homogeneous entries' (Yao eqs. 8-9), read as the mean squared entry."""
    return float(np.mean(grad**2))


CLAIMS: dict[str, Claim] = {
    c.id: c
    for c in [
        Claim(
            "baydin-unbiased",
            "Baydin et al. (2022), Thm 1; restated by Frye, Daprato §1 and Yao eq. (5)",
            r"\mathbb{E}[g] = \nabla",
            "The forward gradient is an unbiased estimate of the gradient.",
            "exact identity",
            "forward gradient computed with jax.jvp (the real estimator), K = 1",
            "mean",
            gradient="network",
            predict=lambda g, ids, k: g,
        ),
        Claim(
            "snrkit-variance",
            "snrkit (derivation in the docs); DESIGN.md",
            r"\operatorname{Var}[g_i] = \big(\|\nabla\|^2 + (\kappa-2)\nabla_i^2\big)/K",
            "Each entry's variance is the squared norm plus (κ−2) times its own square, over K.",
            "exact identity",
            "forward gradient, iid probe of kurtosis κ, K directions",
            "entry-variance",
            predict=None,  # the law itself
        ),
        Claim(
            "snrkit-partition-variance",
            "snrkit (derivation in the docs); DESIGN.md",
            r"\operatorname{Var}[g_i] = \|\nabla_{B(i)}\|^2 + (\kappa-2)\nabla_i^2",
            "With a partitioned probe, the norm is that of the entry's own block.",
            "exact identity",
            "partitioned probe, K = 4 blocks",
            "entry-variance",
            directions=4,
            partition=True,
            gradient="network",
            predict=None,
        ),
        Claim(
            "frye-eq1",
            "Frye (2022), eqs. (1) and (7)",
            r"\mathbb{V}[g_i] \approx 4\|\nabla\|^2",
            "Each entry's variance is about four times the squared gradient norm.",
            "leading order in n",
            "forward gradient, Gaussian probe, K = 1",
            "entry-variance",
            predict=lambda g, ids, k: np.full_like(g, 4 * g @ g),
        ),
        Claim(
            "frye-eq5",
            "Frye (2022), eq. (5), its 2∇_i² from the unnumbered line before it",
            r"\mathbb{V}[g_i] = 2\nabla_i^2 + 4\sum_{j\neq i}\nabla_j^2",
            "Each entry's variance is 2∇_i² plus four times the other entries' squares.",
            "exact identity",
            "forward gradient, Gaussian probe, K = 1",
            "entry-variance",
            predict=lambda g, ids, k: 2 * g**2 + 4 * (g @ g - g**2),
        ),
        Claim(
            "frye-snr",
            "Frye (2022), eqs. (2) and (8)",
            r"\nabla_i^2 / \mathbb{V}[g_i] = \mathcal{O}(1/n)",
            "The per-entry SNR falls like 1/n as the network grows.",
            "scaling law",
            "forward gradient, Gaussian probe, K = 1, MLPs of growing width on digits",
            "snr-scaling",
            gradient="sweep",
        ),
        Claim(
            "frye-thread",
            "Frye (2022), thread: the MNIST sanity check (its 'norm' read as the squared norm, the only reading with the right units)",
            r"\frac1n\sum_i \mathbb{V}[g_i] = \|\nabla\|^2",
            "The average variance of an entry equals the true gradient's squared norm.",
            "leading order in n",
            "forward gradient, Gaussian probe, K = 1, all parameters of an MLP",
            "average-variance",
            gradient="network",
            predict=lambda g, ids, k: np.full_like(g, g @ g),
        ),
        Claim(
            "daprato-variance",
            "Daprato, Jain, Hung, §3.1",
            r"\operatorname{Var}[g_k] = \sum_{j\neq k}\nabla_j^2",
            "Each entry's variance is the sum of the other entries' squares.",
            "exact identity",
            "forward gradient, Gaussian probe, K = 1",
            "entry-variance",
            predict=_sum_of_others,
        ),
        Claim(
            "yao-eq6",
            "Yao, eq. (6)",
            r"\operatorname{Var}[\hat g_i] = \sum_{j\neq i} g_j^2",
            "Each entry's variance is the sum of the other entries' squares.",
            "exact identity",
            "forward gradient, Gaussian probe, K = 1",
            "entry-variance",
            predict=_sum_of_others,
        ),
        Claim(
            "yao-eq7",
            "Yao, eq. (7)",
            r"\operatorname{Var}[\hat g_i^{avg}] = \frac1K\sum_{j\neq i} g_j^2",
            "Averaging K directions divides eq. (6) by K.",
            "exact identity",
            "forward gradient, Gaussian probe, K = 4 directions",
            "entry-variance",
            directions=4,
            predict=lambda g, ids, k: _sum_of_others(g, ids, k) / k,
        ),
        Claim(
            "yao-eq8",
            "Yao, eq. (8)",
            r"\operatorname{Var}[\hat g_i^{avg}] = \frac{n-1}{K}\sigma^2",
            "K directions, homogeneous entries (∇_i² = σ²): (n−1)σ²/K.",
            "exact identity",
            "forward gradient, Gaussian probe, K = 4 directions, homogeneous entries",
            "entry-variance",
            directions=4,
            gradient="homogeneous",
            predict=lambda g, ids, k: np.full_like(g, (g.size - 1) * _homogeneous_sigma2(g) / k),
        ),
        Claim(
            "yao-eq9",
            "Yao, eq. (9)",
            r"\operatorname{Var}[\hat g_i^{sum}] = \frac{n-K}{K}\sigma^2",
            "A K-block partition, homogeneous entries: (n−K)σ²/K.",
            "exact identity",
            "partitioned probe, Gaussian, K = 4 blocks, homogeneous entries",
            "entry-variance",
            directions=4,
            partition=True,
            gradient="homogeneous",
            predict=lambda g, ids, k: np.full_like(g, (g.size - k) * _homogeneous_sigma2(g) / k),
        ),
        Claim(
            "yao-partition-beats-directions",
            "Yao, §III.C",
            r"\operatorname{tr}\operatorname{Cov}[\hat g^{sum}_{K\,\mathrm{blocks}}] < \operatorname{tr}\operatorname{Cov}[\hat g^{avg}_{K\,\mathrm{directions}}]",
            "A K-block partition has lower variance than averaging K directions (same K JVPs).",
            "comparison between estimators",
            "partitioned probe with K = 2 blocks vs K = 2 averaged directions, Gaussian",
            "partition-vs-directions",
            directions=2,
        ),
    ]
}
r"""Every registered claim, by id, in ledger order.

What each claim's `predict` computes from the gradient $\nabla$ ($n$ entries, $K$
directions or blocks); the statements as published are on the
[claims ledger](../claims.md):

- `baydin-unbiased` (Baydin et al. (2022), Thm 1): $\mathbb{E}[g] = \nabla$.
- `snrkit-variance`, `snrkit-partition-variance` (snrkit; derived in the docs:
  [Derivations](../derivations.md)): snrkit's exact law,
  $(\|\nabla_{B(i)}\|^2 + (\kappa-2)\nabla_i^2)/K$.
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
  $\sigma^2 = \frac1n\sum_j\nabla_j^2$.
- `yao-partition-beats-directions` (Yao, §III.C): a $K$-block partition has a smaller
  $\operatorname{tr}\operatorname{Cov}[g]$ than $K$ averaged directions (no per-entry
  prediction).

Examples:
    >>> from snrkit.claims import CLAIMS
    >>> len(CLAIMS)
    13
    >>> [claim_id for claim_id in CLAIMS if claim_id.startswith("yao")]
    ['yao-eq6', 'yao-eq7', 'yao-eq8', 'yao-eq9', 'yao-partition-beats-directions']
"""


@dataclass(frozen=True)
class Verdict:
    r"""The outcome of verifying one claim.

    For a per-entry variance claim with prediction $c_i$, the $N$ samples are split into $k$
    batches (32 by default); batch $b$ gives the unbiased sample variance
    $\hat\sigma^2_{b,i}$ of each entry, and the pooled ratio of batch $b$ is

    $$
    R_b = \frac1m \sum_{i:\,c_i>0} \frac{\hat\sigma^2_{b,i}}{c_i},
    \qquad
    \mathtt{ratio} = \bar R = \frac1k\sum_{b=1}^k R_b,
    \qquad
    \mathtt{ratio\_ci} = \bar R \pm t_{0.975,\,k-1}\,\frac{s_R}{\sqrt k},
    $$

    with $m$ the number of entries with $c_i > 0$ and $s_R$ the standard deviation of the
    $R_b$. The p-value is distribution-free: with the median standardised deviation $u$ of a
    statistic over the batches (its standard deviation exact from snrkit's law),

    $$
    p(u) = P\big(\mathrm{Bin}(k, \min(1, u^{-2})) \ge \lceil k/2\rceil\big),
    \qquad
    \mathtt{p\_value} = \min\big(1,\ 2\min(n\,\min_i p_i,\ p_{\text{pooled}})\big),
    $$

    where $p_i$ is the p-value of entry $i$ and $p_{\text{pooled}}$ that of the $R_b$
    ([snrkit.stats.compare_variance][]; the test is snrkit's own, explained in
    [snrkit.stats][]). An average-entry claim is decided on $p_{\text{pooled}}$ alone;
    unbiasedness uses the projections $R_b = \langle\bar g_b, \nabla\rangle/\|\nabla\|^2$
    ([snrkit.stats.compare_mean][]).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from snrkit.claims import verify
        >>> v = verify("frye-eq5", jnp.array([3.0, -1.0, 0.5, 2.0]), key=jax.random.key(0))
        >>> v.verdict, v.holds
        ('refuted', False)
        >>> round(v.exact_ratio, 3)   # truth / claim from the exact law
        0.376
        >>> v.setting["n"], v.setting["probe"], v.setting["samples"]
        (4, 'gaussian', 131072)
    """

    id: str
    """Id of the claim ([`Claim.id`][snrkit.claims.Claim.id])."""
    source: str
    """Where the claim was published ([`Claim.source`][snrkit.claims.Claim.source])."""
    statement: str
    """The claim in words ([`Claim.words`][snrkit.claims.Claim.words])."""
    latex: str
    """The claim in LaTeX ([`Claim.latex`][snrkit.claims.Claim.latex])."""
    kind: str
    """The claim's [`Kind`][snrkit.claims.Kind]."""
    holds: bool | None
    """True (not refuted, and the test could have refuted a claim off by a factor 2: the
    [`resolution`][snrkit.claims.Verdict.resolution] is at most
    [`MAX_RESOLUTION`][snrkit.claims.MAX_RESOLUTION]), False (refuted: `p_value` below the
    `alpha` of [`verify`][snrkit.claims.verify]) or None (not resolved: not refuted, but the
    samples could not tell a factor-2 error either). The partition comparison holds or is
    refuted when the sign of the difference is significant and is not resolved otherwise;
    the scaling law is decided by its fit (see
    [`SCALING_TOLERANCE`][snrkit.claims.SCALING_TOLERANCE])."""
    ratio: float
    r"""Measured truth / claim: $\bar R$, pooled over entries. For unbiasedness, the mean
    projection $\langle\bar g,\nabla\rangle/\|\nabla\|^2$; for the partition comparison, the
    ratio of the two mean traces $\operatorname{tr}\operatorname{Cov}$; for the scaling law,
    measured slope / claimed slope, that is minus the log-log slope fitted to the Monte Carlo
    SNR."""
    ratio_ci: tuple[float, float]
    r"""95 % batch-means interval of `ratio`, $\bar R \pm t_{0.975,\,k-1}\,s_R/\sqrt k$ (for
    the scaling law, the regression interval of the slope)."""
    p_value: float
    """p-value of the claim (distribution-free median-of-batches test, see above); NaN for
    the scaling law, which is decided by a deterministic fit."""
    exact_ratio: float
    r"""Truth / claim from snrkit's exact law on the same gradient,
    $\frac1m\sum_{i:\,c_i>0}\operatorname{Var}[g_i]/c_i$ (for the comparison, the ratio of
    exact traces; for the scaling law, minus the slope fitted to the exact SNR)."""
    correction: str
    """When refuted, what the data say the truth is, in words (see
    [`correction_terms`][snrkit.claims.correction_terms]); empty otherwise."""
    setting: dict[str, Any]
    """Where the claim was verified: network, data, layer, `n`, probe, `K`, estimator,
    samples, batches, alpha and the sampling path."""
    resolution: float = math.nan
    r"""Relative error of `ratio` that the test detects with probability at least
    $1-\alpha$, $2\,t_\alpha\,\operatorname{median}_b \sigma_{R_b}$ with $t_\alpha$ the
    critical median deviation ([snrkit.stats.critical_deviation][]); a claim is only
    declared to hold when this is at most [`MAX_RESOLUTION`][snrkit.claims.MAX_RESOLUTION].
    NaN where the test has no pooled ratio."""
    entries: dict[str, np.ndarray] | None = field(default=None, repr=False, compare=False)
    """Per-entry `"predicted"` (the claim), `"measured"` (Monte Carlo) and `"exact"`
    (snrkit) variances, flat, for parity plots; None for claims that are not per entry."""

    def to_dict(self) -> dict[str, Any]:
        """The verdict as a JSON-ready dict, without the per-entry arrays.

        Returns:
            Every field but [`entries`][snrkit.claims.Verdict.entries], with `ratio_ci` as a
            list of two floats.

        Examples:
            >>> import jax, jax.numpy as jnp
            >>> from snrkit.claims import verify
            >>> v = verify("snrkit-variance", jnp.array([3.0, -1.0, 0.5, 2.0]), key=jax.random.key(0))
            >>> d = v.to_dict()
            >>> d["id"], d["holds"], "entries" in d
            ('snrkit-variance', True, False)
        """
        out = {k: v for k, v in asdict(self).items() if k != "entries"}
        out["ratio_ci"] = [float(x) for x in self.ratio_ci]
        return out

    @property
    def verdict(self) -> str:
        """[`holds`][snrkit.claims.Verdict.holds] in words: `"holds"`, `"refuted"` or `"not resolved"`.

        Examples:
            >>> import jax, jax.numpy as jnp
            >>> from snrkit.claims import verify
            >>> verify("yao-eq6", jnp.array([3.0, -1.0, 0.5, 2.0]), key=jax.random.key(0)).verdict
            'refuted'
        """
        return {True: "holds", False: "refuted", None: "not resolved"}[self.holds]


# ----------------------------------------------------------------------------------------
# Default real gradients
# ----------------------------------------------------------------------------------------

DEFAULT_WIDTHS = (64, 32, 10)
"""Layer widths of the MLP behind the default gradients: 64 inputs (8x8 digits; the data's
input width for MNIST), one hidden layer of 32, 10 classes."""
TRAIN_STEPS = 100
"""Adam steps the default MLP is trained for before its gradient is taken (see
[snrkit.gradients.gradient_at][])."""
QUICK_FULL_SAMPLES_UP_TO = 1_000
r"""`quick` keeps the full sample count up to this many entries: there sampling is cheap
(compiling dominates) and fewer samples would lose the power to refute a missing
$2\nabla_i^2$."""
MAX_RESOLUTION = 0.5
"""A claim that is not refuted is declared to hold only if the test would have detected a
pooled relative error this large (a factor 2 downwards); otherwise it is "not resolved"."""
SCALING_TOLERANCE = 0.1
r"""$\delta$ of the scaling law: Frye's $O(1/n)$ holds when the fitted exponent $b$ of the
mean entry SNR, $\mathrm{SNR} \propto n^{b}$, satisfies $b \le -1 + \delta$."""


@functools.lru_cache(maxsize=8)
def _digits_problem(seed: int, mnist_dir: str | None = None):
    """An MLP trained for 100 Adam steps on digits (or MNIST), its loss, data and gradient."""
    from snrkit import data, gradients, nets

    dataset = data.load_mnist(mnist_dir) if mnist_dir else data.load_digits()
    network = nets.mlp((dataset.input_dim, *DEFAULT_WIDTHS[1:]))
    params, grad = gradients.gradient_at(jax.random.key(seed), network, dataset, step=TRAIN_STEPS)
    x, y = jnp.asarray(dataset.flat()), jnp.asarray(dataset.labels)
    setting = {"network": network.name, "data": dataset.name, "train_steps": TRAIN_STEPS}
    return network, params, grad, (x, y), setting


def default_gradient(kind: str, seed: int = 0, mnist_dir: str | None = None) -> tuple[PyTree, dict[str, Any]]:
    r"""The real gradient a claim is verified on by default, with its setting.

    - `"network"`: all parameters of an MLP 64-32-10 after 100 Adam steps on digits.
    - `"output-bias"`: the output-layer bias of that MLP (10 entries). Its gradient is
      concentrated (a few classes dominate), so a missing $2\nabla_i^2$ is a large
      relative error there and the comparison has power to see it.
    - `"homogeneous"`: 8 entries of magnitude 0.1 with the signs of the network
      gradient's first 8 entries: the setting Yao's eqs. (8)-(9) assume. A missing
      $2\sigma^2$ is a relative error of $2/(n+1)$, so $n$ is kept small for power.

    The MLP is trained once per process (several seconds on a CPU) and cached.

    Args:
        kind: `"network"`, `"output-bias"` or `"homogeneous"`.
        seed: seed of the MLP's initialisation and training.
        mnist_dir: folder of the MNIST IDX files; when given, the MLP (784-32-10) is
            trained on MNIST instead of digits.

    Returns:
        `(grad, setting)`: the gradient pytree and a dict describing it (network, data,
        training steps, layer).

    Raises:
        ValueError: for an unknown `kind`.

    Examples:
        >>> import numpy as np
        >>> from snrkit.claims import default_gradient
        >>> grad, setting = default_gradient("output-bias")  # doctest: +SKIP
        >>> np.asarray(grad).shape, setting["layer"]  # doctest: +SKIP
        ((10,), 'output-layer bias')
    """
    _, _, grad, _, setting = _digits_problem(seed, mnist_dir)
    if kind == "network":
        return grad, {**setting, "layer": "all parameters"}
    if kind == "output-bias":
        return grad[-1]["b"], {**setting, "layer": "output-layer bias"}
    if kind == "homogeneous":
        signs = np.sign(ravel_host(grad)[:8])
        signs[signs == 0] = 1.0
        return jnp.asarray(0.1 * signs, jnp.float32), {"data": "synthetic", "layer": "8 entries of magnitude 0.1"}
    raise ValueError(f"unknown default gradient {kind!r}; choose 'network', 'output-bias' or 'homogeneous'")


# ----------------------------------------------------------------------------------------
# The verdict engine
# ----------------------------------------------------------------------------------------


def get_claim(claim_id: str) -> Claim:
    """Look a claim up by id, with a clear error listing the known ids.

    Args:
        claim_id: a key of [`CLAIMS`][snrkit.claims.CLAIMS].

    Returns:
        The [`Claim`][snrkit.claims.Claim].

    Raises:
        ValueError: for an unknown id; the message lists the known ones.

    Examples:
        >>> from snrkit.claims import get_claim
        >>> get_claim("yao-eq7").source
        'Yao, eq. (7)'
        >>> get_claim("yao-eq99")
        Traceback (most recent call last):
        ...
        ValueError: unknown claim 'yao-eq99'; known claims: baydin-unbiased, ...
    """
    try:
        return CLAIMS[claim_id]
    except KeyError:
        raise ValueError(f"unknown claim {claim_id!r}; known claims: {', '.join(CLAIMS)}") from None


def verify(
    claim_id: str,
    grad: PyTree | None = None,
    *,
    key: jax.Array,
    num_samples: int | None = None,
    batches: int = 32,
    alpha: float = DEFAULT_ALPHA,
    probe: str = "gaussian",
    quick: bool = False,
    mnist_dir: str | None = None,
    sweep_frame: Any = None,
) -> Verdict:
    """Verify a claim on a real gradient with samples of its estimator.

    Per-entry, average-entry and comparison claims sample the estimator's exact law
    ([`BlockProbeLaw.sample`][snrkit.laws.BlockProbeLaw.sample], which draws the same probes
    as the `jax.jvp` estimator; the test suite checks the two sample by sample);
    `baydin-unbiased` on the default network samples the real `jax.jvp` estimator. Samples of the claim's estimator ([`Claim.make_estimator`][snrkit.claims.Claim.make_estimator])
    on `grad` are compared with the claim's prediction by the distribution-free
    median-of-batches test of [snrkit.stats.compare_variance][] (or
    [snrkit.stats.compare_mean][] for unbiasedness); the ratio, interval and p-value are
    defined at [`Verdict`][snrkit.claims.Verdict]. The scaling law `frye-snr` is decided by
    a log-log fit over MLP widths ([snrkit.sweeps.snr_sweep][]), and
    `yao-partition-beats-directions` by the sign of the difference of the two estimators'
    sampled total variances.

    Args:
        claim_id: an id of [`CLAIMS`][snrkit.claims.CLAIMS].
        grad: the gradient (any pytree) for per-entry and average claims; `None` uses
            the claim's default real gradient (see
            [`default_gradient`][snrkit.claims.default_gradient]).
        key: a JAX key.
        num_samples: Monte Carlo samples (a multiple of `batches` is best); default
            65,536 (131,072 up to 64 entries; above 1,000 entries, 16,384 for the
            average-entry claim and, with `quick`, 32,768 for the others);
            `baydin-unbiased` on the default network uses 8,192 real JVP estimates
            (law samples with `quick`).
        batches: batches of the distribution-free test (32 is near the most powerful).
        alpha: false-verdict rate: a true claim is refuted with probability at most alpha.
        probe: `"gaussian"` (what the papers assume) or `"rademacher"`.
        quick: fewer samples for gradients of more than 1,000 entries (small ones keep the
            full count, which their power needs) and a smaller sweep for the scaling law.
        mnist_dir: use an MLP on MNIST for the network-level claims (`frye-thread`).
        sweep_frame: for `frye-snr`, a frame of [snrkit.sweeps.snr_sweep][] to reuse.

    Returns:
        A [`Verdict`][snrkit.claims.Verdict].

    Raises:
        ValueError: for an unknown claim id.

    Examples:
        Yao's eq. (6) is the Rademacher truth, stated for Gaussian probes:

        >>> import jax, jax.numpy as jnp
        >>> from snrkit.claims import verify
        >>> grad = jnp.array([3.0, -1.0, 0.5, 2.0])
        >>> verify("yao-eq6", grad, key=jax.random.key(0)).verdict
        'refuted'
        >>> verify("yao-eq6", grad, key=jax.random.key(0), probe="rademacher").verdict
        'holds'
    """
    claim = get_claim(claim_id)
    key = check_key(key)
    num = num_samples or batches * 2048
    if claim.test == "snr-scaling":
        num = num_samples or batches * (32 if quick else 256)
        return _verify_scaling(claim, key, num, batches, probe, quick, sweep_frame)
    if claim.test == "partition-vs-directions":
        g, setting = (grad, {"data": "user gradient"}) if grad is not None else default_gradient("output-bias")
        # The sign of a trace difference of a few percent needs more samples than an entry claim.
        return _verify_comparison(claim, g, setting, key, num_samples or 16 * num, batches, alpha, probe)
    if grad is None:
        grad, setting = default_gradient(claim.gradient, mnist_dir=mnist_dir)
    else:
        setting = {"data": "user gradient"}
    estimator = claim.make_estimator(probe)
    law = estimator.given(grad)
    if num_samples is None and law.num_coordinates > QUICK_FULL_SAMPLES_UP_TO:
        # Enough to resolve a factor 2: the average-entry ratio has batch variance ≈ 2/m
        # whatever n, so it needs few samples even at MNIST scale; per-entry claims pool
        # with a looser (triangle) bound and need more.
        if claim.test == "average-variance":
            num = batches * 512
        elif quick:
            num = batches * 1024
    elif num_samples is None and law.num_coordinates <= 64:
        num = batches * 4096  # tiny gradients: sampling is nearly free, and power grows like √N
    setting = {**setting, "n": law.num_coordinates, "probe": probe, "K": claim.directions,
               "estimator": str(estimator), "samples": num, "batches": batches, "alpha": alpha}
    if claim.test == "mean":
        # Real JVP estimates cost a network pass each: 8192 of them resolve a factor 2 in the
        # mean (the projection's variance is ≈ 2/m per batch of m); quick uses law samples.
        jvp = not quick and setting.get("layer") == "all parameters"
        num = num_samples or (batches * 256 if jvp else num)
        setting["samples"] = num
        return _verify_mean(claim, estimator, law, setting, key, num, batches, alpha, mnist_dir, jvp)
    flat = np.asarray(law.flat_mean(), np.float64)
    ids = np.zeros(flat.size, int) if law.block_ids is None else np.asarray(law.block_ids)
    truth = np.asarray(law.flat_var(), np.float64)
    pred = truth if claim.predict is None else claim.predict(flat, ids, claim.directions)
    moments = monte_carlo(law, key, num, batches=batches)
    pooled = claim.test == "average-variance"
    result = compare_variance(moments, pred, law=law, alpha=alpha, pooled_only=pooled)
    exact_ratio = _pooled_ratio(truth, pred)
    correction = "" if result.holds else _correction(result.measured, pred, flat, ids, claim.directions, pooled)
    return Verdict(
        claim.id, claim.source, claim.words, claim.latex, claim.kind, _decide(result), result.ratio,
        result.ratio_ci, result.p_value, exact_ratio, correction, {**setting, "path": "law samples"},
        resolution=result.resolution, entries={"predicted": pred, "measured": result.measured, "exact": truth},
    )


def _decide(result) -> bool | None:
    """Refuted, holds, or not resolved when the test had no power against a factor-2 error."""
    if not result.holds:
        return False
    return True if result.resolution <= MAX_RESOLUTION else None


def _pooled_ratio(truth: np.ndarray, pred: np.ndarray) -> float:
    use = pred > 0
    return float(np.mean(truth[use] / pred[use])) if use.any() else math.nan


def correction_terms(measured: np.ndarray, pred: np.ndarray, grad: np.ndarray, ids: np.ndarray, k: int) -> dict[str, float]:
    r"""Fit the truth as the claim plus $(a\nabla_i^2 + b\|\nabla_{B(i)}\|^2)/K$ by least squares over entries.

    With measured variances $s_i$ and claimed ones $c_i$, $(a, b)$ minimise

    $$
    \sum_i \Big(s_i - c_i - \frac{a\nabla_i^2 + b\|\nabla_{B(i)}\|^2}{K}\Big)^2,
    $$

    so a claim that misses the $(\kappa-2)\nabla_i^2$ term of the exact law shows up as
    $a \approx \kappa-2$. This is how a refuted [`Verdict`][snrkit.claims.Verdict] states
    its correction.

    Args:
        measured: measured (or exact) per-entry variances $s_i$, flat.
        pred: the claim's per-entry prediction $c_i$, flat.
        grad: the flat gradient $\nabla$.
        ids: the block of each entry (all 0 without a partition).
        k: $K$, the number of averaged directions.

    Returns:
        `{"factor": ..., "grad_i_sq": a, "block_norm_sq": b}`, where `factor` is the
        pooled $\frac1m\sum_{i:\,c_i>0} s_i/c_i$. `a` and `b` are NaN when the two terms
        cannot be told apart (homogeneous entries, one entry).

    Examples:
        Frye's eq. (1), $4\|\nabla\|^2$, against the Gaussian truth
        $\|\nabla\|^2 + \nabla_i^2$:

        >>> import numpy as np
        >>> from snrkit.claims import correction_terms
        >>> grad = np.array([3.0, 1.0, 2.0])
        >>> truth, claim = grad @ grad + grad**2, np.full(3, 4 * grad @ grad)
        >>> terms = correction_terms(truth, claim, grad, np.zeros(3, int), 1)
        >>> {name: round(value, 3) for name, value in terms.items()}
        {'factor': 0.333, 'grad_i_sq': 1.0, 'block_norm_sq': -3.0}
    """
    terms = {"factor": _pooled_ratio(measured, pred), "grad_i_sq": math.nan, "block_norm_sq": math.nan}
    basis = np.stack([grad**2, _block_norms(grad, ids)], axis=1) / k
    if np.linalg.matrix_rank(basis) == 2:
        (a, b), *_ = np.linalg.lstsq(basis, measured - pred, rcond=None)
        terms.update(grad_i_sq=float(a), block_norm_sq=float(b))
    return terms


def _correction(measured, pred, grad, ids, k, pooled) -> str:
    """What the samples say the truth is, relative to the claim, in words."""
    if pooled:
        return f"truth ≈ {float(np.mean(measured) / np.mean(pred)):.3g} × claim (average over entries)"
    terms = correction_terms(measured, pred, grad, ids, k)
    text = f"truth ≈ {terms['factor']:.3g} × claim"
    if math.isnan(terms["grad_i_sq"]):
        return text
    where = "‖∇‖²" if ids.max() == 0 else "‖∇_B(i)‖²"
    per_k = "" if k == 1 else f", all over K={k}"
    return f"{text}; truth − claim ≈ {terms['grad_i_sq']:+.2f}·∇_i² {terms['block_norm_sq']:+.2f}·{where}{per_k} (least squares over entries)"


def _verify_mean(claim, estimator, law, setting, key, num, batches, alpha, mnist_dir, jvp) -> Verdict:
    """Unbiasedness, from real JVP estimates when `jvp` (the default network), else from the law."""
    if jvp:
        network, params, _, (x, y), _ = _digits_problem(0, mnist_dir)
        estimate = jax.jit(jax.vmap(lambda k: estimator.estimate(k, network.loss, params, x, y)))
        keys = jax.random.split(key, num)
        chunks = [estimate(keys[i : i + 256]) for i in range(0, num, 256)]
        samples = jax.tree_util.tree_map(lambda *xs: np.concatenate(xs), *chunks)
        moments = moments_from_samples(samples, batches=batches)
        setting = {**setting, "path": "jax.jvp estimates (no backprop)"}
    else:
        moments = monte_carlo(law, key, num, batches=batches)
        setting = {**setting, "path": "law samples"}
    result = compare_mean(moments, law.flat_mean(), law=law, alpha=alpha)
    correction = "" if result.holds else f"E[g] ≈ {result.ratio:.3g} × ∇ along ∇"
    return Verdict(
        claim.id, claim.source, claim.words, claim.latex, claim.kind, _decide(result), result.ratio,
        result.ratio_ci, result.p_value, 1.0, correction, setting, resolution=result.resolution,
    )


def _verify_comparison(claim, grad, setting, key, num, batches, alpha, probe) -> Verdict:
    """Partition vs directions: the sign of the difference of total variances, distribution-free.

    Per batch, D_b = tr(part) − tr(dirs) from independent samples; its standard deviation is
    at most the sum of the two traces' (each at most the sum of per-entry sds, exact from
    the laws). The median test of E[D_b] = 0 decides: significantly negative → holds,
    significantly positive → refuted, else not resolved.
    """
    k = claim.directions
    part = Partitioned(blocks=k, probe=probe).given(grad)
    dirs = ForwardGradient(probe=probe, directions=k).given(grad)
    traces, sds = [], []
    for index, law in enumerate((part, dirs)):
        m = monte_carlo(law, jax.random.fold_in(key, index), num, batches=batches)
        size = m.batch_sizes.astype(float)[:, None]
        var, mu4 = np.asarray(law.flat_var(), float), np.asarray(law.flat_fourth_central_moment(), float)
        traces.append(m.flat("batch_vars").sum(axis=1))
        sds.append(np.sqrt(np.maximum(mu4 / size - var**2 * (size - 3) / (size * (size - 1)), 0)).sum(axis=1))
    diff = traces[0] - traces[1]
    z = diff / (sds[0] + sds[1])
    p_value = float(median_pvalue(np.median(z), batches))
    holds = None if p_value > alpha else bool(np.median(z) < 0)
    ratios = traces[0] / traces[1]
    ratio = float(np.mean(traces[0]) / np.mean(traces[1]))
    half = float(scipy.stats.t.ppf(0.975, batches - 1) * np.std(ratios, ddof=1) / math.sqrt(batches))
    exact = float(part.total_variance() / dirs.total_variance())
    correction = "" if holds is not False else (
        f"the partition's total variance is {ratio:.3g} × that of {k} averaged directions "
        f"(exact {exact:.4g}): Σ_B(|B|+κ−2)‖∇_B‖² vs (n+κ−2)‖∇‖²/K"
    )
    setting = {**setting, "n": part.num_coordinates, "probe": probe, "K": k, "samples": num, "batches": batches,
               "alpha": alpha, "estimator": f"{Partitioned(blocks=k, probe=probe)} vs {ForwardGradient(probe, k)}",
               "path": "law samples"}
    return Verdict(
        claim.id, claim.source, claim.words, claim.latex, claim.kind, holds, ratio,
        (ratio - half, ratio + half), p_value, exact, correction, setting,
    )


def _verify_scaling(claim, key, num, batches, probe, quick, sweep_frame=None) -> Verdict:
    r"""Frye's O(1/n): the exponent of the mean entry SNR over MLP widths.

    "SNR is O(1/n)" is an asymptotic statement, not a value a finite sample can reject at
    a stated rate, so this verdict is a deterministic fit: the exponent is fitted to the
    exact SNR of the real gradients at every width (exact given the gradient; the law
    itself is verified by the `snrkit-*` claims), and the claim holds when the SNR falls
    at least like $n^{-(1-\delta)}$ with $\delta$ = `SCALING_TOLERANCE`.
    The exponent fitted to the Monte Carlo points (the sampled variances) is the ratio, with
    its 95 % interval, as a cross-check; the p-value is NaN.
    """
    from snrkit import sweeps

    estimator = ForwardGradient(probe)
    frame = sweep_frame
    if frame is None:
        targets = sweeps.SWEEP_QUICK_TARGETS if quick else sweeps.SWEEP_MC_TARGETS
        frame = sweeps.snr_sweep(
            key=key, out_csv=None, targets=targets, mc_targets=targets, num_samples=num, batches=batches,
            estimators=[estimator],
        )
    label = sweeps.describe(estimator)["label"]
    frame = frame[frame["label"] == label]
    exact_slope, _, _ = sweeps.fit_loglog_slope(frame, "mean_entry_snr", label, source="exact")
    mc = frame[(frame["source"] == "monte_carlo") & (frame["metric"] == "mean_entry_snr")]
    if mc["n"].nunique() >= 3:
        slope, lo, hi = sweeps.fit_loglog_slope(frame, "mean_entry_snr", label, source="monte_carlo")
    else:
        slope = lo = hi = math.nan
    holds = exact_slope <= -1.0 + SCALING_TOLERANCE
    exact = frame[(frame["source"] == "exact") & (frame["metric"] == "mean_entry_snr")]
    setting = {"network": "MLP 64-h-h-10", "data": "digits", "probe": probe, "K": 1,
               "samples": int(mc["num_samples"].iloc[0]) if len(mc) else 0, "path": "exact law; law samples as a check",
               "n": sorted(int(n) for n in exact["n"].unique()),
               "max n·SNR": float((exact["n"] * exact["value"]).max())}
    correction = "" if holds else f"the mean entry SNR falls like n^{exact_slope:.3f}, slower than 1/n"
    return Verdict(
        claim.id, claim.source, claim.words, claim.latex, claim.kind, bool(holds), -slope,
        (-hi, -lo), math.nan, -exact_slope, correction, setting,
    )


def verify_all(*, key: jax.Array, quick: bool = False, probes: tuple[str, ...] = ("gaussian", "rademacher"),
               mnist_dir: str | None = None, claim_ids: list[str] | None = None,
               on_claim: Callable[[str, str], None] | None = None, sweep_frame: Any = None) -> list[Verdict]:
    """Verify every claim (or `claim_ids`) under each probe; the scaling law once, under the first probe.

    Each claim is verified by [`verify`][snrkit.claims.verify] on its default real gradient
    ([`default_gradient`][snrkit.claims.default_gradient]), with the key
    `fold_in(key, index)` of its position in the list.

    Args:
        key: a JAX key.
        quick: fewer samples and a smaller sweep (as in [`verify`][snrkit.claims.verify]).
        probes: the probes to verify each claim under.
        mnist_dir: use an MLP on MNIST for the network-level claims.
        claim_ids: the claims to verify; default all of [`CLAIMS`][snrkit.claims.CLAIMS].
        on_claim: called as `on_claim(claim_id, probe)` before each verification.
        sweep_frame: a frame of [snrkit.sweeps.snr_sweep][] for the scaling law to reuse.

    Returns:
        One [`Verdict`][snrkit.claims.Verdict] per claim and probe, claim by claim.

    Raises:
        ValueError: for an unknown claim id.

    Examples:
        The scaling law on a hand-made sweep frame whose exact SNR is exactly $1/n$:

        >>> import jax, pandas as pd
        >>> from snrkit.claims import verify_all
        >>> frame = pd.DataFrame({
        ...     "label": "ForwardGradient(gaussian, K=1)", "source": "exact",
        ...     "metric": "mean_entry_snr", "n": [1000, 4000, 16000],
        ...     "value": [1 / 1000, 1 / 4000, 1 / 16000], "num_samples": 0})
        >>> [(v.id, v.verdict, round(v.exact_ratio, 3))
        ...  for v in verify_all(key=jax.random.key(0), claim_ids=["frye-snr"], sweep_frame=frame)]
        [('frye-snr', 'holds', 1.0)]
    """
    verdicts = []
    for index, claim_id in enumerate(claim_ids or list(CLAIMS)):
        claim = get_claim(claim_id)
        for probe in probes if claim.test != "snr-scaling" else probes[:1]:
            if on_claim is not None:
                on_claim(claim_id, probe)
            verdicts.append(verify(claim_id, key=jax.random.fold_in(key, index), quick=quick, probe=probe,
                                   mnist_dir=mnist_dir, sweep_frame=sweep_frame))
    return verdicts


__all__ = ["CLAIMS", "Claim", "Verdict", "verify", "verify_all", "default_gradient", "get_claim"]
