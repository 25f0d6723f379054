r"""The kinds of test a claim can name, as a registry the verdict engine dispatches on.

| check | what is sampled | compared with |
| --- | --- | --- |
| `mean` | $\mathbb E[g]$ (the real `jax.jvp` estimator on a loss problem, else the law) | the claim's mean |
| `bias` | $\mathbb E[g] - \nabla$ (as `mean`) | the claim's bias |
| `entry-variance` | every $\operatorname{Var}[g_i]$ | the claim's per-entry variance |
| `average-variance` | $\frac1n\sum_i\operatorname{Var}[g_i]$ | the claim's average |
| `total-variance` | $\operatorname{tr}\operatorname{Cov}[g]$ | the claim's total |
| `expected-norm` | $\mathbb E\|g\|$ | the claim's expected length |
| `comparison` | the sign of $\operatorname{tr}\operatorname{Cov}[g_1] - \operatorname{tr}\operatorname{Cov}[g_2]$ | "the first is smaller" |
| `snr-scaling` | the log-log slope of the mean entry SNR over MLP widths | $-1$ |

Every check is distribution-free where the law has the closed forms its noise needs
(median of batches, [`snrkit.stats`][snrkit.stats]) and says so in its verdict's setting
(`noise`) where it falls back to sampled moments. A new kind of claim is one function here
and one row of [`CHECKS`][snrkit.claims.checks.CHECKS].
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from snrkit import sweeps
from snrkit.claims.problems import default_problem
from snrkit.claims.records import Claim, Verdict
from snrkit.core.law import Law
from snrkit.core.problem import ProblemBase
from snrkit.core.tree import ravel_host
from snrkit.montecarlo import moments_from_samples, monte_carlo, sample_norms
from snrkit.stats import batch_variance_sd, compare_mean, compare_variance, median_pvalue, t_half_width
from snrkit.stats.comparisons import Comparison, critical_deviation

QUICK_FULL_SAMPLES_UP_TO = 1_000
r"""`quick` keeps the full sample count up to this many entries: there sampling is cheap
(compiling dominates) and fewer samples would lose the power to refute a missing
$2\nabla_i^2$."""
MAX_RESOLUTION = 0.5
"""The default [`Claim.resolution`][snrkit.claims.records.Claim.resolution]: a claim that is not
refuted holds only if the test would have detected a pooled relative error this large (a
factor 2 downwards); otherwise it is "not resolved"."""
SCALING_TOLERANCE = 0.1
r"""$\delta$ of the scaling law: Frye's $O(1/n)$ holds when the fitted exponent $b$ of the
mean entry SNR, $\mathrm{SNR} \propto n^{b}$, satisfies $b \le -1 + \delta$."""


@dataclass(frozen=True)
class Request:
    """Everything a check needs: the claim, the problem (or `None` for the claim's default) and the test's settings."""

    claim: Claim
    problem: ProblemBase | None
    key: jax.Array
    num_samples: int | None
    batches: int
    alpha: float
    probe: str
    quick: bool
    mnist_dir: str | None
    seed: int
    sweep_frame: Any = None

    def resolve(self) -> tuple[ProblemBase, dict[str, Any]]:
        """The problem to judge the claim on, and its setting."""
        if self.problem is not None:
            return self.problem, {"data": "user gradient"}
        return default_problem(self.claim.gradient, seed=self.seed, mnist_dir=self.mnist_dir)

    def estimator(self) -> Any:
        return self.claim.make_estimator(self.probe or None)

    def setting(self, base: dict[str, Any], law: Law, num: int, **extra: Any) -> dict[str, Any]:
        return {**base, "n": law.num_coordinates, "probe": self.probe or "—", "jvps": law.num_jvps,
                "estimator": law.describe()["label"], "samples": num, "batches": self.batches, "alpha": self.alpha,
                **extra}

    def verdict(self, grad: np.ndarray | None, **fields: Any) -> Verdict:
        claim = self.claim
        unmet = claim.conditions.unmet(grad) if claim.conditions is not None and grad is not None else None
        return Verdict(claim.id, claim.source, claim.words, claim.latex, claim.kind, test=claim.test,
                       conditions=f"{claim.conditions.text}; here {unmet}" if unmet else "", **fields)


@dataclass(frozen=True)
class Check:
    """One kind of test.

    Attributes:
        name: the key claims name it by ([`Claim.test`][snrkit.claims.records.Claim.test]).
        description: what is sampled and compared, in words.
        run: `run(request) -> Verdict`.
        takes_gradient: False when the check builds its own problems (a sweep), so a
            gradient passed to [`verify`][snrkit.claims.verify] would be ignored (refused instead).
        uses_sweep: whether the check reads a sweep frame ([`verify`][snrkit.claims.verify]'s
            `sweep_frame`); elsewhere one is refused.
    """

    name: str
    description: str
    run: Callable[[Request], Verdict]
    takes_gradient: bool = True
    uses_sweep: bool = False


def entry_samples(request: Request, n: int, *, average: bool = False) -> int:
    """Default sample count of a per-entry (or average-entry) test on `n` entries."""
    if request.num_samples is not None:
        return request.num_samples
    b = request.batches
    if n > QUICK_FULL_SAMPLES_UP_TO:
        # Enough to resolve a factor 2: the average-entry ratio has batch variance ≈ 2/m
        # whatever n, so it needs few samples even at MNIST scale; per-entry claims pool
        # with a looser (triangle) bound and need more.
        if average:
            return b * 512
        return b * (1024 if request.quick else 2048)
    if n <= 64:
        return b * 4096  # tiny gradients: sampling is nearly free, and power grows like √N
    return b * 2048


def decide(result: Comparison, resolution: float = MAX_RESOLUTION) -> bool | None:
    """Refuted, holds, or not resolved when the test had no power against an error of `resolution`."""
    if not result.holds:
        return False
    return True if result.resolution <= resolution else None


def pooled_ratio(truth: np.ndarray, pred: np.ndarray) -> float:
    """Mean over entries with a positive prediction of truth / prediction."""
    use = pred > 0
    return float(np.mean(truth[use] / pred[use])) if use.any() else math.nan


def correction_terms(measured: np.ndarray, pred: np.ndarray, law: Law) -> dict[str, float]:
    r"""Fit the truth as the claim plus the family's correction terms, by least squares over entries.

    With measured variances $s_i$, claimed ones $c_i$ and the law's basis columns $b_{t,i}$
    ([`Law.correction_terms`][snrkit.core.law.Law.correction_terms]; for iid probes
    $\nabla_i^2/K$ and $\|\nabla_{B(i)}\|^2/K$), the coefficients $a_t$ minimise

    $$
    \sum_i \Big(s_i - c_i - \sum_t a_t b_{t,i}\Big)^2,
    $$

    so a claim that misses the $(\kappa-2)\nabla_i^2$ term of the exact law shows up as
    $a \approx \kappa-2$ on $\nabla_i^2$. This is how a refuted
    [`Verdict`][snrkit.claims.records.Verdict] states its correction.

    Args:
        measured: measured (or exact) per-entry variances $s_i$, flat.
        pred: the claim's per-entry prediction $c_i$, flat.
        law: the law the claim is judged against; its basis names the terms.

    Returns:
        `{"factor": ..., <term>: a_t, ...}`: `factor` is the pooled
        $\frac1m\sum_{i:\,c_i>0} s_i/c_i$; the terms are absent when they cannot be told apart
        (homogeneous entries, one entry) or the family offers none.

    Examples:
        Frye's eq. (1), $4\|\nabla\|^2$, against the Gaussian truth
        $\|\nabla\|^2 + \nabla_i^2$:

        >>> import jax.numpy as jnp, numpy as np, snrkit as sk
        >>> from snrkit.claims import correction_terms
        >>> grad = np.array([3.0, 1.0, 2.0])
        >>> law = sk.ForwardGradient().given(jnp.asarray(grad))
        >>> truth, claim = grad @ grad + grad**2, np.full(3, 4 * grad @ grad)
        >>> {
        ...     name: round(value, 3)
        ...     for name, value in correction_terms(truth, claim, law).items()
        ... }
        {'factor': 0.333, '∇_i²': 1.0, '‖∇‖²': -3.0}
    """
    terms = {"factor": pooled_ratio(measured, pred)}
    columns = law.correction_terms().columns
    if columns:
        basis = np.stack([np.asarray(c, np.float64) for c in columns.values()], axis=1)
        if np.linalg.matrix_rank(basis) == basis.shape[1]:
            coefficients, *_ = np.linalg.lstsq(basis, measured - pred, rcond=None)
            terms.update({name: float(a) for name, a in zip(columns, coefficients)})
    return terms


def correction_text(measured: np.ndarray, pred: np.ndarray, law: Law) -> str:
    """What the samples say the truth is, relative to a per-entry claim, in words."""
    terms = correction_terms(measured, pred, law)
    text = f"truth ≈ {terms.pop('factor'):.3g} × claim"
    if not terms:
        return text
    fitted = " ".join(f"{a:+.2f}·{name}" for name, a in terms.items())
    note = law.correction_terms().note
    return f"{text}; truth − claim ≈ {fitted}{', ' + note if note else ''} (least squares over entries)"


# ----------------------------------------------------------------------------------------
# The checks
# ----------------------------------------------------------------------------------------


def _variance(request: Request, *, average: bool) -> Verdict:
    problem, base = request.resolve()
    law = request.estimator().given(problem)
    grad = ravel_host(law.grad)
    num = entry_samples(request, law.num_coordinates, average=average)
    truth = np.asarray(law.flat_var(), np.float64)
    pred = truth if request.claim.predict is None else np.asarray(request.claim.predict(grad), np.float64)
    moments = monte_carlo(law, request.key, num, batches=request.batches)
    result = compare_variance(moments, pred, law=law, alpha=request.alpha, pooled_only=average)
    if result.holds:
        correction = ""
    elif average:
        correction = f"truth ≈ {float(np.mean(result.measured) / np.mean(pred)):.3g} × claim (average over entries)"
    else:
        correction = correction_text(result.measured, pred, law)
    return request.verdict(
        grad, holds=decide(result, request.claim.resolution), ratio=result.ratio, ratio_ci=result.ratio_ci, p_value=result.p_value,
        exact_ratio=pooled_ratio(truth, pred), correction=correction,
        setting=request.setting(base, law, num, path="law samples", noise=result.noise), resolution=result.resolution,
        entries={"predicted": pred, "measured": result.measured, "exact": truth},
    )


def _mean(request: Request, *, bias: bool = False) -> Verdict:
    """The mean (or the bias), from real JVP estimates when the problem holds a loss and not `quick`, else from the law."""
    problem, base = request.resolve()
    estimator = request.estimator()
    law = estimator.given(problem)
    grad = ravel_host(law.grad)
    jvp = not request.quick and "loss" in problem.provides
    # Real JVP estimates cost a network pass each: 8192 of them resolve a factor 2 in the
    # mean (the projection's variance is ≈ 2/m per batch of m); quick uses law samples.
    num = request.num_samples or (request.batches * 256 if jvp else entry_samples(request, law.num_coordinates))
    if jvp:
        samples = estimator.estimates(request.key, num, problem.loss_fn, problem.params, *problem.args, batch_size=256,
                                      state=problem.state)
        moments = moments_from_samples(samples, batches=request.batches)
        path = "jax.jvp estimates (no backprop)"
    else:
        moments = monte_carlo(law, request.key, num, batches=request.batches)
        path = "law samples"
    exact_mean = np.asarray(law.flat_mean(), np.float64)
    if request.claim.predict is None:  # the claim is the exact law's mean (or bias) itself
        claimed = exact_mean - grad if bias else exact_mean
    else:
        claimed = np.asarray(request.claim.predict(grad), np.float64)
    target = grad + claimed if bias else claimed
    result = compare_mean(moments, target, law=law, alpha=request.alpha)
    # The ratio is measured / claimed along the claim: of the mean, or of the bias E[g] − ∇.
    offset = grad if bias else np.zeros_like(grad)
    norm2 = float(claimed @ claimed)
    if norm2 > 0:
        along = (moments.flat("batch_means") - offset) @ claimed / norm2
        ratio, half = float(np.mean(along)), t_half_width(along)
        exact = float((exact_mean - offset) @ claimed / norm2)
    else:
        ratio = half = exact = math.nan
    what = "E[g] − ∇" if bias else "E[g]"
    correction = "" if result.holds else f"{what} ≈ {ratio:.3g} × the claim, along it"
    return request.verdict(
        grad, holds=decide(result, request.claim.resolution), ratio=ratio, ratio_ci=(ratio - half, ratio + half), p_value=result.p_value,
        exact_ratio=exact, correction=correction, setting=request.setting(base, law, num, path=path, noise=result.noise),
        resolution=result.resolution,
    )


def _batch_traces(law: Law, moments: Any) -> tuple[np.ndarray, np.ndarray, str]:
    """Each batch's sampled trace, its standard deviation (the triangle bound from exact per-entry noise, or
    the batch spread) and which of the two it is."""
    traces = moments.flat("batch_vars").sum(axis=1)
    if law.has("fourth_central_moment"):
        sizes = moments.batch_sizes.astype(float)[:, None]
        var, mu4 = np.asarray(law.flat_var(), float), np.asarray(law.flat_fourth_central_moment(), float)
        return traces, batch_variance_sd(mu4, var, sizes).sum(axis=1), "exact (triangle bound over entries)"
    return traces, np.full(traces.shape, np.std(traces, ddof=1)), "empirical (batch spread)"


def _total_variance(request: Request) -> Verdict:
    r"""The trace $\operatorname{tr}\operatorname{Cov}[g]$ against the claim's total, by the median of batches."""
    problem, base = request.resolve()
    law = request.estimator().given(problem)
    grad = ravel_host(law.grad)
    num = entry_samples(request, law.num_coordinates, average=True)
    exact = float(law.total_variance())
    # No prediction: the claim is the exact law's total.
    predicted = exact if request.claim.predict is None else float(np.sum(request.claim.predict(grad)))
    moments = monte_carlo(law, request.key, num, batches=request.batches)
    traces, sd, noise = _batch_traces(law, moments)
    return _scalar_verdict(request, grad, base, law, num, traces, sd, predicted, exact, noise, what="total variance")


def _scalar_verdict(request: Request, grad: np.ndarray, base: dict, law: Law, num: int, batch_values: np.ndarray,
                    batch_sd: np.ndarray, predicted: float, exact: float, noise: str, *, what: str) -> Verdict:
    """A scalar claimed value against its per-batch estimates: median-of-batches p-value, ratio and interval."""
    k = request.batches
    ratios = batch_values / predicted
    z = (batch_values - predicted) / np.where(batch_sd > 0, batch_sd, np.inf)
    p_value = float(median_pvalue(np.median(z), k))
    ratio_sd = batch_sd / abs(predicted)
    resolution = 2 * critical_deviation(k, request.alpha) * float(np.median(ratio_sd))
    holds = False if p_value <= request.alpha else (True if resolution <= request.claim.resolution else None)
    ratio = float(np.mean(ratios))
    half = t_half_width(ratios)
    exact_text = f" (exact {exact / predicted:.4g})" if math.isfinite(exact) else ""
    correction = "" if holds is not False else f"the {what} is {ratio:.3g} × the claim{exact_text}"
    return request.verdict(
        grad, holds=holds, ratio=ratio, ratio_ci=(ratio - half, ratio + half), p_value=p_value,
        exact_ratio=exact / predicted if math.isfinite(exact) else math.nan, correction=correction,
        setting=request.setting(base, law, num, path="law samples", noise=noise), resolution=resolution,
    )


def _expected_norm(request: Request) -> Verdict:
    r"""$\mathbb E\|g\|$ against the claim's expected length; the noise is the sampled spread of $\|g\|$ (asymptotic)."""
    if request.claim.predict is None:
        raise ValueError(f"{request.claim.id}: an expected-norm claim needs a prediction (no law has E‖g‖ in closed form)")
    problem, base = request.resolve()
    law = request.estimator().given(problem)
    grad = ravel_host(law.grad)
    # The length of a K-tangent aggregate spreads like a χ_K (relative sd ≈ 0.36 at K = 4):
    # 1,024 samples per batch resolve a few percent (quick: 256, which does not).
    num = request.num_samples or request.batches * (256 if request.quick else 1024)
    predicted = float(np.sum(request.claim.predict(grad)))
    norms = sample_norms(law, request.key, num)
    batches = np.array_split(norms, request.batches)
    means = np.array([b.mean() for b in batches])
    sd = np.array([b.std(ddof=1) / math.sqrt(b.size) for b in batches])
    return _scalar_verdict(request, grad, base, law, num, means, sd, predicted, math.nan, "empirical (sampled spread)",
                           what="expected length")


def _comparison(request: Request) -> Verdict:
    """The claim's estimator has a smaller total variance than `compare_with`: the sign of the difference, distribution-free.

    Per batch, D_b = tr(first) − tr(second) from independent samples; its standard
    deviation is at most the sum of the two traces' (each at most the sum of per-entry sds,
    exact from laws with a fourth moment). The median test of E[D_b] = 0 decides:
    significantly negative → holds, significantly positive → refuted, else not resolved.
    """
    problem, base = request.resolve()
    first, second = request.estimator(), request.claim.compare_with(request.probe or "gaussian")
    laws = (first.given(problem), second.given(problem))
    grad = ravel_host(laws[0].grad)
    # The sign of a difference of a few percent needs many samples (quick: a quarter of them).
    num = request.num_samples or (4 if request.quick else 16) * request.batches * 2048
    traces, sds, noises = [], [], []
    for index, law in enumerate(laws):
        moments = monte_carlo(law, jax.random.fold_in(request.key, index), num, batches=request.batches)
        trace, sd, noise = _batch_traces(law, moments)
        traces.append(trace)
        sds.append(sd)
        noises.append(noise)
    z = (traces[0] - traces[1]) / (sds[0] + sds[1])
    p_value = float(median_pvalue(np.median(z), request.batches))
    holds = None if p_value > request.alpha else bool(np.median(z) < 0)
    ratio = float(np.mean(traces[0]) / np.mean(traces[1]))
    half = t_half_width(traces[0] / traces[1])
    exact = float(laws[0].total_variance() / laws[1].total_variance())
    labels = [law.describe()["label"] for law in laws]
    correction = "" if holds is not False else (
        f"the total variance of {labels[0]} is {ratio:.3g} × that of {labels[1]} (exact {exact:.4g})"
    )
    setting = {**request.setting(base, laws[0], num, path="law samples", noise=noises[0]),
               "estimator": f"{labels[0]} vs {labels[1]}"}
    return request.verdict(grad, holds=holds, ratio=ratio, ratio_ci=(ratio - half, ratio + half), p_value=p_value,
                           exact_ratio=exact, correction=correction, setting=setting)


def _snr_scaling(request: Request) -> Verdict:
    r"""Frye's O(1/n): the exponent of the mean entry SNR over MLP widths.

    "SNR is O(1/n)" is an asymptotic statement, not a value a finite sample can reject at
    a stated rate, so this verdict is a deterministic fit: the exponent is fitted to the
    exact SNR of the real gradients at every width (exact given the gradient; the law
    itself is verified by the `snrkit-*` claims), and the claim holds when the SNR falls
    at least like $n^{-(1-\delta)}$ with $\delta$ = `SCALING_TOLERANCE`.
    The exponent fitted to the Monte Carlo points (the sampled variances) is the ratio, with
    its 95 % interval, as a cross-check; the p-value is NaN.
    """
    estimator = request.estimator()
    frame = request.sweep_frame
    num = request.num_samples or request.batches * (32 if request.quick else 256)
    if frame is None:
        targets = sweeps.SWEEP_QUICK_TARGETS if request.quick else sweeps.SWEEP_MC_TARGETS
        frame = sweeps.snr_sweep(
            key=request.key, out_csv=None, targets=targets, mc_targets=targets, num_samples=num,
            batches=request.batches, estimators=[estimator],
        )
    label = estimator.label
    frame = frame[frame["label"] == label]
    exact_slope, _, _ = sweeps.fit_loglog_slope(frame, "mean_entry_snr", label, source="exact")
    mc = frame[(frame["source"] == "monte_carlo") & (frame["metric"] == "mean_entry_snr")]
    if mc["n"].nunique() >= 3:
        slope, lo, hi = sweeps.fit_loglog_slope(frame, "mean_entry_snr", label, source="monte_carlo")
    else:
        slope = lo = hi = math.nan
    holds = exact_slope <= -1.0 + SCALING_TOLERANCE
    exact = frame[(frame["source"] == "exact") & (frame["metric"] == "mean_entry_snr")].sort_values("n")
    networks = exact["network"].tolist()
    setting = {"network": f"{networks[0]} … {networks[-1]}", "data": ", ".join(sorted(set(exact["dataset"]))),
               "probe": request.probe or "—", "estimator": label,
               "samples": int(mc["num_samples"].iloc[0]) if len(mc) else 0, "path": "exact law; law samples as a check",
               "n": [int(n) for n in exact["n"]], "max n·SNR": float((exact["n"] * exact["value"]).max())}
    correction = "" if holds else f"the mean entry SNR falls like n^{exact_slope:.3f}, slower than 1/n"
    return request.verdict(None, holds=bool(holds), ratio=-slope, ratio_ci=(-hi, -lo), p_value=math.nan,
                           exact_ratio=-exact_slope, correction=correction, setting=setting)


CHECKS: dict[str, Check] = {
    check.name: check
    for check in (
        Check("mean", "E[g] against the claimed mean (compare_mean)", _mean),
        Check("bias", "E[g] − ∇ against the claimed bias (compare_mean)", lambda r: _mean(r, bias=True)),
        Check("entry-variance", "every Var[g_i] against the claim (compare_variance)", lambda r: _variance(r, average=False)),
        Check("average-variance", "the mean over entries of Var[g_i] (pooled ratio only)", lambda r: _variance(r, average=True)),
        Check("total-variance", "tr Cov[g] against the claimed total", _total_variance),
        Check("expected-norm", "E‖g‖ against the claimed expected length", _expected_norm),
        Check("comparison", "the sign of tr Cov[first] − tr Cov[second]", _comparison),
        Check("snr-scaling", "the log-log slope of the mean entry SNR over MLP widths", _snr_scaling, takes_gradient=False,
              uses_sweep=True),
    )
}
"""Every kind of test by name (see the table above)."""
