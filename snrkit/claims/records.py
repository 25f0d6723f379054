r"""The records of the claims ledger: a claim (data), the conditions it states, and a verdict.

A [`Claim`][snrkit.claims.records.Claim] names its estimator through a factory (a function
of the probe), its test through the name of a check in
[`CHECKS`][snrkit.claims.checks.CHECKS], and its prediction through a function of the
gradient. Nothing in a claim is code of the verdict engine.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

Kind = Literal["exact identity", "leading order in n", "scaling law", "comparison between estimators"]
"""How exact a claim is meant to be: an identity at every $n$, a statement to leading order
in the number of entries $n$, an asymptotic scaling law, or a comparison of two estimators."""

KINDS: tuple[str, ...] = ("exact identity", "leading order in n", "scaling law", "comparison between estimators")
"""The values of [`Kind`][snrkit.claims.records.Kind]."""

Predict = Callable[[np.ndarray], np.ndarray]
"""`predict(grad) -> prediction`: a claim's prediction from the flat float64 gradient (per
entry for variance and mean claims, one value for a total or a norm)."""


@dataclass(frozen=True)
class Condition:
    """A condition a claim states for itself (e.g. "homogeneous entries"), checked on the gradient it is judged on.

    A claim judged outside its stated conditions is still judged (a formula either
    predicts the truth or not), but the verdict says so.

    Attributes:
        text: the condition in words.
        unmet: `unmet(grad)` returns `None` when the flat gradient meets the condition, else
            how it fails it, in words.

    Examples:
        >>> import numpy as np
        >>> from snrkit.claims import CLAIMS
        >>> condition = CLAIMS["yao-eq8"].conditions
        >>> (
        ...     condition.unmet(np.array([0.1, -0.1])) is None,
        ...     condition.unmet(np.array([1.0, 3.0])),
        ... )
        (True, '∇_i² ranges from 1 to 9 (ratio 9), not one common σ²')
    """

    text: str
    unmet: Callable[[np.ndarray], str | None] = field(compare=False, repr=False)


@dataclass(frozen=True)
class Claim:
    r"""One published (or snrkit's own) statement about a gradient estimator.

    A claim is data: where it was published (`source`), what it says (`latex`, `words`),
    the estimator it speaks of (a factory), the check that tests it and `predict`, which
    turns a gradient into what the claim predicts. [`verify`][snrkit.claims.verify] runs the
    check on a real gradient. The registered claims are [`CLAIMS`][snrkit.claims.CLAIMS];
    the [claims ledger](../claims.md) shows them with their verdicts.

    Examples:
        >>> import numpy as np
        >>> from snrkit.claims import CLAIMS
        >>> claim = CLAIMS["frye-eq5"]
        >>> claim.source
        'Frye (2022), eq. (5), its 2∇_i² from the unnumbered line before it'
        >>> print(claim.latex)
        \mathbb{V}[g_i] = 2\nabla_i^2 + 4\sum_{j\neq i}\nabla_j^2
        >>> claim.predict(np.array([3.0, 1.0])).tolist()  # 2*9 + 4*1, 2*1 + 4*9
        [22.0, 38.0]
        >>> claim.make_estimator("rademacher")
        ForwardGradient(probe='rademacher', directions=1)
    """

    id: str
    """Stable identifier, e.g. `"frye-eq5"`: the key in [`CLAIMS`][snrkit.claims.CLAIMS] and
    the `--claim` value of `snrkit verify`."""
    source: str
    """Paper and equation (or section) the claim comes from, e.g. `"Frye (2022), eq. (5)"`."""
    reference: str
    """Key of the paper in [`REFERENCES`][snrkit.claims.bibliography.REFERENCES]."""
    latex: str
    r"""The statement in LaTeX, in the paper's notation, e.g. `\mathbb{V}[g_i] \approx 4\|\nabla\|^2`."""
    words: str
    """The statement in words."""
    kind: Kind
    """How exact the statement is meant to be (see [`Kind`][snrkit.claims.records.Kind])."""
    about: str
    """The estimator and setting the claim speaks of, in words."""
    test: str
    """The name of the check that tests it, a key of [`CHECKS`][snrkit.claims.checks.CHECKS]."""
    estimator: Callable[[str], Any] = field(repr=False, compare=False)
    """`estimator(probe) -> Estimator`: the estimator the claim speaks of, with the given probe."""
    predict: Predict | None = field(default=None, repr=False, compare=False)
    """The prediction (see [`Predict`][snrkit.claims.records.Predict]); `None` when the
    prediction is snrkit's exact law itself, or the check needs none."""
    compare_with: Callable[[str], Any] | None = field(default=None, repr=False, compare=False)
    """For a comparison: the second estimator, claimed to have the larger total variance."""
    gradient: str = "output-bias"
    """The real gradient the claim is verified on by default (see
    [`default_problem`][snrkit.claims.problems.default_problem]): `"output-bias"`,
    `"network"` or `"homogeneous"`; `"sweep"` for a scaling law over MLP widths."""
    probes: tuple[str, ...] = ("gaussian", "rademacher")
    """The probes the claim is verified under by default; empty when the estimator has no
    probe to choose (its tangents are fixed by its definition)."""
    conditions: Condition | None = None
    """What the claim assumes of the gradient, checked on the gradient it is judged on."""
    also_on: tuple[str, ...] = ()
    """Data sets the report also judges the claim on, besides its main data (e.g.
    `("mnist",)` for Frye's thread, whose check was made on MNIST)."""
    resolution: float = 0.5
    """A claim that is not refuted is declared to hold only if the test would have detected
    a relative error this large; else it is "not resolved". A factor 2 (0.5) for variance
    formulas; a claim about a few percent (an expected length) asks for finer."""

    def make_estimator(self, probe: str | None = None) -> Any:
        """The estimator the claim speaks of, with the given probe (ignored by probe-free claims).

        Args:
            probe: `"gaussian"` or `"rademacher"`; default the claim's first probe.

        Returns:
            An [`Estimator`][snrkit.core.estimator.Estimator].

        Examples:
            >>> from snrkit.claims import CLAIMS
            >>> CLAIMS["yao-eq9"].make_estimator("gaussian")
            Partitioned(blocks=4, probe='gaussian', directions=1)
        """
        return self.estimator(probe or self._default_probe)

    @property
    def _default_probe(self) -> str:
        # A probe-free claim's factories ignore the probe they are given.
        return self.probes[0] if self.probes else "gaussian"

    def fingerprint(self) -> str:
        """A hash of everything the claim states and predicts.

        Covers every field, the estimators' settings and the prediction evaluated on a fixed
        gradient, so a verdict stored with it (the claims ledger in the docs) can tell when
        the claim has changed since it was verified.

        Examples:
            >>> from snrkit.claims import CLAIMS
            >>> len(CLAIMS["frye-eq5"].fingerprint())
            16
            >>> CLAIMS["frye-eq5"].fingerprint() == CLAIMS["frye-eq1"].fingerprint()
            False
        """
        estimators = [self.make_estimator().label]
        if self.compare_with is not None:
            estimators.append(self.compare_with(self._default_probe).label)
        fields = [self.id, self.source, self.reference, self.latex, self.words, self.kind, self.about, self.test,
                  self.gradient, ",".join(self.probes), self.conditions.text if self.conditions else "",
                  ",".join(self.also_on), repr(self.resolution), *estimators]
        digest = hashlib.sha256("\x1f".join(fields).encode())
        if self.predict is not None:
            grad = np.linspace(-1.0, 2.0, 12)
            # rounded, so that the last bit of a platform's libm cannot change the hash
            digest.update(np.round(np.asarray(self.predict(grad), np.float64), 9).tobytes())
        return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Verdict:
    r"""The outcome of verifying one claim.

    For a per-entry variance claim with prediction $c_i$, the $N$ samples are split into $k$
    batches (32 by default); batch $b$ gives the unbiased sample variance
    $\hat\sigma^2_{b,i}$ of each entry, and the pooled ratio of batch $b$ is

    $$
    \begin{aligned}
    R_b &= \frac1m \sum_{i:\,c_i>0} \frac{\hat\sigma^2_{b,i}}{c_i},
    \qquad
    \mathtt{ratio} = \bar R = \frac1k\sum_{b=1}^k R_b,\\
    \mathtt{ratio\_ci} &= \bar R \pm t_{0.975,\,k-1}\,\frac{s_R}{\sqrt k},
    \end{aligned}
    $$

    with $m$ the number of entries with $c_i > 0$ and $s_R$ the standard deviation of the
    $R_b$. The p-value is distribution-free: with the median standardised deviation $u$ of a
    statistic over the batches (its standard deviation exact from snrkit's law where the law
    has a fourth moment),

    $$
    \begin{aligned}
    p(u) &= P\big(\mathrm{Bin}(k, \min(1, u^{-2})) \ge \lceil k/2\rceil\big),\\
    \mathtt{p\_value} &= \min\big(1,\ 2\min(n\,\min_i p_i,\ p_{\text{pooled}})\big),
    \end{aligned}
    $$

    where $p_i$ is the p-value of entry $i$ and $p_{\text{pooled}}$ that of the $R_b$
    ([snrkit.stats.compare_variance][]; the test is snrkit's own, explained in
    [snrkit.stats][]). An average-entry claim is decided on $p_{\text{pooled}}$ alone;
    unbiasedness uses the projections $R_b = \langle\bar g_b, \nabla\rangle/\|\nabla\|^2$
    ([snrkit.stats.compare_mean][]). The other checks are described at
    [`CHECKS`][snrkit.claims.checks.CHECKS].

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from snrkit.claims import verify
        >>> v = verify(
        ...     "frye-eq5", jnp.array([3.0, -1.0, 0.5, 2.0]), key=jax.random.key(0)
        ... )
        >>> v.verdict, v.holds
        ('refuted', False)
        >>> round(v.exact_ratio, 3)  # truth / claim from the exact law
        0.376
        >>> v.setting["n"], v.setting["probe"], v.setting["samples"]
        (4, 'gaussian', 131072)
    """

    id: str
    """Id of the claim ([`Claim.id`][snrkit.claims.records.Claim.id])."""
    source: str
    """Where the claim was published ([`Claim.source`][snrkit.claims.records.Claim.source])."""
    statement: str
    """The claim in words ([`Claim.words`][snrkit.claims.records.Claim.words])."""
    latex: str
    """The claim in LaTeX ([`Claim.latex`][snrkit.claims.records.Claim.latex])."""
    kind: str
    """The claim's [`Kind`][snrkit.claims.records.Kind]."""
    holds: bool | None
    """True (not refuted, and the test could have refuted a claim off by the claim's
    [`resolution`][snrkit.claims.records.Claim.resolution], a factor 2 for variance formulas:
    the verdict's [`resolution`][snrkit.claims.records.Verdict.resolution] is at most that),
    False (refuted: `p_value` below the `alpha` of [`verify`][snrkit.claims.verify]) or None
    (not resolved: not refuted, but the samples could not tell such an error either). A comparison holds or is refuted
    when the sign of the difference is significant and is not resolved otherwise; the
    scaling law is decided by its fit (see
    [`SCALING_TOLERANCE`][snrkit.claims.engine.SCALING_TOLERANCE])."""
    ratio: float
    r"""Measured truth / claim: $\bar R$, pooled over entries. For a mean, the mean
    projection $\langle\bar g,\theta\rangle/\|\theta\|^2$ on the prediction $\theta$; for a
    comparison, the ratio of the two mean traces $\operatorname{tr}\operatorname{Cov}$; for
    a total or a norm, sampled over predicted; for the scaling law, measured slope / claimed
    slope, that is minus the log-log slope fitted to the Monte Carlo SNR."""
    ratio_ci: tuple[float, float]
    r"""95 % batch-means interval of `ratio`, $\bar R \pm t_{0.975,\,k-1}\,s_R/\sqrt k$ (for
    the scaling law, the regression interval of the slope)."""
    p_value: float
    """p-value of the claim (distribution-free median-of-batches test, see above); NaN for
    the scaling law, which is decided by a deterministic fit."""
    exact_ratio: float
    r"""Truth / claim from snrkit's exact law on the same gradient,
    $\frac1m\sum_{i:\,c_i>0}\operatorname{Var}[g_i]/c_i$ (for the comparison, the ratio of
    exact traces; for the scaling law, minus the slope fitted to the exact SNR; NaN where the
    law has no closed form for the claimed quantity)."""
    correction: str
    """When refuted, what the data say the truth is, in words (see
    [`correction_terms`][snrkit.claims.correction_terms]); empty otherwise."""
    setting: dict[str, Any]
    """Where the claim was verified: network, data, layer, `n`, probe, JVPs, estimator,
    samples, batches, alpha, the sampling path and the noise (exact or empirical)."""
    resolution: float = math.nan
    r"""Relative error of `ratio` that the test detects with probability at least
    $1-\alpha$, $(t_{\mathrm{gate}} + t_\alpha)\,\operatorname{median}_b \sigma_{R_b}$ with $t$ the
    critical median deviation ([snrkit.stats.critical_deviation][]) and the gate's level
    $\alpha/2$ where it is combined with the per-entry family (see
    [`Comparison.resolution`][snrkit.stats.Comparison]); a claim is only
    declared to hold when this is at most the claim's
    [`resolution`][snrkit.claims.records.Claim.resolution]. NaN where the test has no pooled
    ratio."""
    entries: dict[str, np.ndarray] | None = field(default=None, repr=False, compare=False)
    """Per-entry `"predicted"` (the claim), `"measured"` (Monte Carlo) and `"exact"`
    (snrkit) variances, flat, for parity plots; None for claims that are not per entry."""
    test: str = ""
    """The check that produced the verdict ([`Claim.test`][snrkit.claims.records.Claim.test])."""
    conditions: str = ""
    """Empty when the gradient meets the claim's stated conditions; otherwise how it fails
    them: the claim was judged outside its own conditions, and a refutation says only that
    the formula does not extend there."""

    def to_dict(self) -> dict[str, Any]:
        """The verdict as a JSON-ready dict, without the per-entry arrays.

        Returns:
            Every field but [`entries`][snrkit.claims.records.Verdict.entries], with `ratio_ci`
            as a list of two floats.

        Examples:
            >>> import jax, jax.numpy as jnp
            >>> from snrkit.claims import verify
            >>> v = verify(
            ...     "snrkit-variance",
            ...     jnp.array([3.0, -1.0, 0.5, 2.0]),
            ...     key=jax.random.key(0),
            ... )
            >>> d = v.to_dict()
            >>> d["id"], d["holds"], "entries" in d
            ('snrkit-variance', True, False)
        """
        out = {k: v for k, v in asdict(self).items() if k != "entries"}
        out["ratio_ci"] = [float(x) for x in self.ratio_ci]
        return out

    @property
    def verdict(self) -> str:
        """[`holds`][snrkit.claims.records.Verdict.holds] in words: `"holds"`, `"refuted"` or `"not resolved"`.

        Examples:
            >>> import jax, jax.numpy as jnp
            >>> from snrkit.claims import verify
            >>> verify(
            ...     "yao-eq6", jnp.array([3.0, -1.0, 0.5, 2.0]), key=jax.random.key(0)
            ... ).verdict
            'refuted'
        """
        return {True: "holds", False: "refuted", None: "not resolved"}[self.holds]

    @property
    def qualified_verdict(self) -> str:
        """The verdict, with "outside its stated conditions" when the gradient does not meet them.

        Examples:
            >>> import jax, jax.numpy as jnp
            >>> from snrkit.claims import verify
            >>> verify(
            ...     "yao-eq8", jnp.array([3.0, -1.0, 0.5, 2.0]), key=jax.random.key(0)
            ... ).qualified_verdict
            'refuted outside its stated conditions'
        """
        return self.verdict + (" outside its stated conditions" if self.conditions else "")
