r"""Published claims about what the forward gradient costs, as data, and how they are judged.

The claims ledger ([`snrkit.claims`][snrkit.claims]) judges *laws*: a formula against
samples of the exact estimator, with a distribution-free test of known error rates. A cost
claim is of another nature: a ratio of running times or a difference of memory on some
machine, with the hardware and the implementation as part of the statement. So cost claims
are their own small record, [`CostClaim`][snrkit.claims.costs.CostClaim], judged on the
measurements of [`snrkit.cost.cost_table`][snrkit.cost.cost_table] by
[`judge`][snrkit.claims.costs.judge]; they are not in `CLAIMS` and have no ledger verdict,
because a verdict on timings holds for the machine it was measured on only.

**The rule for a time ratio.** The measured ratio of a method to backprop is the median of
the per-repeat ratios, with its distribution-free 95 % interval $[\ell, h]$
([`median_interval`][snrkit.cost.median_interval]): the timing spread enters through this
interval. The claim states a ratio $\rho$ and is given a tolerance factor $f$
([`TIME_TOLERANCE`][snrkit.claims.costs.TIME_TOLERANCE], 1.25 unless the claim says
otherwise), which makes the band $[\rho/f, \rho f]$:

- **holds** when the whole interval lies inside the band, $\rho/f \le \ell$ and
  $h \le \rho f$;
- **refuted** when the whole interval lies outside it, $h < \rho/f$ or $\ell > \rho f$;
- **not resolved** otherwise: the interval straddles an edge of the band (too few repeats,
  or a machine too noisy to tell), or a measurement is missing; and whatever the interval,
  where backprop's step takes less than [`MIN_STEP_MS`][snrkit.claims.costs.MIN_STEP_MS]
  (1 ms): there a call's fixed cost, not the computation the claims compare, sets the ratio.

Baydin et al.'s ratio, $\rho = 2.46/4.17 \approx 0.59$, gets the band $[0.47, 0.74]$;
Yao's "no significant difference", $\rho = 1$, gets $[0.8, 1.25]$. The bands do not
overlap, so at most one of the two claims can hold on one measurement.

**The rule for a memory saving.** Yao's claim is about a difference that grows with the
batch size. The saving at batch size $B$ is $s(B) = M_\text{bp}(B) - M_\text{fg}(B)$, with
$M$ XLA's temporary memory of the compiled step (exact for the program: no spread). Over
the measured batch sizes $B_1 < \dots < B_m$:

- **holds** when $m \ge 2$, every $s(B_j) > 0$, $s$ increases strictly with $B$, and the
  saving at $B_m$ is at least [`MEMORY_RESOLUTION`][snrkit.claims.costs.MEMORY_RESOLUTION]
  (5 %) of backprop's memory there;
- **refuted** when $m \ge 2$ and the forward gradient saves nothing at the largest batch
  ($s(B_m) \le 0$) or its saving does not grow ($s(B_m) \le s(B_1)$);
- **not resolved** otherwise (one batch size, a missing measurement, or a positive saving
  that grows but not at every step or stays under the resolution).

Examples:
    >>> from snrkit.claims.costs import COST_CLAIMS, judge_ratio
    >>> [c.id for c in COST_CLAIMS]
    ['baydin-time-ratio', 'yao-time', 'yao-memory']
    >>> baydin = COST_CLAIMS[0]
    >>> round(baydin.claimed, 3), [round(x, 3) for x in baydin.band]
    (0.59, [0.472, 0.737])
    >>> judge_ratio(baydin, 0.55, 0.65), judge_ratio(baydin, 0.9, 1.1)
    ('holds', 'refuted')
    >>> judge_ratio(baydin, 0.6, 0.8)  # straddles the band's upper edge
    'not resolved'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from snrkit.claims.bibliography import REFERENCES

TIME_TOLERANCE = 1.25
"""Default tolerance factor $f$ of a time-ratio claim: the band is $[\\rho/f, \\rho f]$."""
MIN_STEP_MS = 1.0
"""Shortest backprop step, in ms, on which a time ratio is judged. A jitted call has a fixed
cost of about 0.1 to 0.2 ms on a CPU (dispatch, arguments, the wait for the result), the
same for every method: on a smaller step it, not the matmuls Baydin's and Yao's claims
compare, sets the ratio."""
MEMORY_RESOLUTION = 0.05
"""Smallest saving, as a fraction of backprop's memory at the largest batch, that counts."""
QUANTITIES = ("time ratio", "memory saving")
"""What a cost claim is about."""
VERDICTS = ("holds", "refuted", "not resolved")
"""The verdicts, as in the ledger."""

_RATIO = "time relative to backprop"
_STEP_MS = "time per step, median [ms]"
_MEMORY = "XLA temporary memory [MiB]"


@dataclass(frozen=True)
class CostClaim:
    """A published statement about time or memory per training step, against backprop.

    Attributes:
        id: stable identifier, e.g. `"baydin-time-ratio"`.
        source: paper and place, in words.
        reference: key of the paper in
            [`REFERENCES`][snrkit.claims.bibliography.REFERENCES].
        words: the statement in words.
        quantity: one of [`QUANTITIES`][snrkit.claims.costs.QUANTITIES].
        method: the `method` of the cost frame the claim speaks of (compared with backprop).
        claimed: the claimed time ratio $\\rho$ (NaN for a memory claim).
        tolerance: the tolerance factor $f$ of a time ratio.

    Examples:
        >>> from snrkit.claims.costs import COST_CLAIMS
        >>> COST_CLAIMS[1].band
        (0.8, 1.25)
    """

    id: str
    source: str
    reference: str
    words: str
    quantity: str
    method: str = "ForwardGradient(gaussian, K=1)"
    claimed: float = math.nan
    tolerance: float = TIME_TOLERANCE

    def __post_init__(self) -> None:
        if self.quantity not in QUANTITIES:
            raise ValueError(f"quantity must be one of {QUANTITIES}, got {self.quantity!r}")
        if self.reference not in REFERENCES:
            raise ValueError(f"reference {self.reference!r} is not in snrkit.claims.bibliography.REFERENCES")
        if self.quantity == "time ratio" and not (self.claimed > 0 and self.tolerance > 1):
            raise ValueError(f"a time-ratio claim needs a claimed ratio > 0 and a tolerance > 1, got "
                             f"claimed={self.claimed!r}, tolerance={self.tolerance!r}")

    @property
    def band(self) -> tuple[float, float]:
        """$[\\rho/f, \\rho f]$, the ratios that agree with the claim."""
        return (self.claimed / self.tolerance, self.claimed * self.tolerance)


@dataclass(frozen=True)
class CostVerdict:
    """The outcome of judging a cost claim on measurements.

    Attributes:
        id: the claim's id.
        verdict: one of [`VERDICTS`][snrkit.claims.costs.VERDICTS].
        batch_size: the batch size of a time verdict; `None` for a memory verdict (it
            spans every batch size).
        measured: the measured ratio (time), or the saving at the largest batch in MiB.
        low, high: the ratio's 95 % interval (NaN for memory).
        detail: what was compared, in words.
    """

    id: str
    verdict: str
    batch_size: int | None
    measured: float
    low: float
    high: float
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """The verdict as a plain dict (a row of a table)."""
        return {"claim": self.id, "verdict": self.verdict, "batch size": self.batch_size, "measured": self.measured,
                "95% low": self.low, "95% high": self.high, "detail": self.detail}


COST_CLAIMS: tuple[CostClaim, ...] = (
    CostClaim(
        id="baydin-time-ratio",
        source="Baydin et al. (2022), runtime ratios R_f = 2.46 and R_b = 4.17 of one forward pass",
        reference="baydin2022",
        words="A forward-gradient training step takes 2.46/4.17 ≈ 0.59 of a backprop step's time.",
        quantity="time ratio",
        claimed=2.46 / 4.17,
    ),
    CostClaim(
        id="yao-time",
        source="Yao, §IV.D.1 and Table I",
        reference="yao",
        words="There is no significant difference in running time between the forward gradient and backprop.",
        quantity="time ratio",
        claimed=1.0,
    ),
    CostClaim(
        id="yao-memory",
        source="Yao, §IV.D.2 and Fig. 14",
        reference="yao",
        words="The forward gradient uses less memory than backprop, and the saving grows with the batch size.",
        quantity="memory saving",
    ),
)
"""The cost claims, judged by `snrkit cost` (sources in the bibliography)."""


def judge_ratio(claim: CostClaim, low: float, high: float) -> str:
    """The verdict on a time-ratio claim from the measured ratio's interval (the rule of the module docs).

    Examples:
        >>> from snrkit.claims.costs import COST_CLAIMS, judge_ratio
        >>> yao = COST_CLAIMS[1]
        >>> judge_ratio(yao, 0.95, 1.1), judge_ratio(yao, 0.5, 0.7)
        ('holds', 'refuted')
        >>> judge_ratio(yao, float("nan"), 1.0)
        'not resolved'
    """
    lo, hi = claim.band
    if not (math.isfinite(low) and math.isfinite(high)):
        return "not resolved"
    if lo <= low and high <= hi:
        return "holds"
    if high < lo or low > hi:
        return "refuted"
    return "not resolved"


def judge_saving(batch_sizes: Sequence[int], backprop: Sequence[float], method: Sequence[float]) -> tuple[str, float]:
    """The verdict on a growing memory saving and the saving at the largest batch (the module's rule).

    Args:
        batch_sizes: the batch sizes (any order).
        backprop: backprop's memory at each.
        method: the method's memory at each, in the same unit.

    Returns:
        `(verdict, saving at the largest batch size)`.

    Examples:
        >>> from snrkit.claims.costs import judge_saving
        >>> judge_saving([256, 1024], [10.0, 40.0], [2.0, 2.0])
        ('holds', 38.0)
        >>> judge_saving([256, 1024], [10.0, 40.0], [12.0, 45.0])  # uses more
        ('refuted', -5.0)
        >>> judge_saving([256], [10.0], [2.0])
        ('not resolved', 8.0)
    """
    order = np.argsort(np.asarray(batch_sizes))
    bp = np.asarray(backprop, np.float64)[order]
    saving = bp - np.asarray(method, np.float64)[order]
    if saving.size == 0 or not np.all(np.isfinite(saving)):
        return "not resolved", math.nan
    last = float(saving[-1])
    if saving.size < 2:
        return "not resolved", last
    if last <= 0 or last <= saving[0]:
        return "refuted", last
    if np.all(saving > 0) and np.all(np.diff(saving) > 0) and last >= MEMORY_RESOLUTION * bp[-1]:
        return "holds", last
    return "not resolved", last


def judge(claim: CostClaim, frame: pd.DataFrame) -> list[CostVerdict]:
    """Judge one cost claim on a cost frame: one verdict per batch size for a time ratio, one in all for memory.

    Args:
        claim: the claim.
        frame: a frame of [`cost_table`][snrkit.cost.cost_table] (or its CSV read back);
            only the columns `batch size`, `method`, the time ratio and its interval, and
            `XLA temporary memory [MiB]` are read.

    Returns:
        The verdicts ("not resolved" with the reason in `detail` when the frame lacks the
        claim's method or backprop).

    Examples:
        >>> import pandas as pd
        >>> from snrkit.claims.costs import COST_CLAIMS, judge
        >>> fg = "ForwardGradient(gaussian, K=1)"
        >>> frame = pd.DataFrame({
        ...     "batch size": [256, 256], "method": ["backprop", fg],
        ...     "time relative to backprop": [1.0, 1.02],
        ...     "time relative to backprop, 95% low": [1.0, 0.97],
        ...     "time relative to backprop, 95% high": [1.0, 1.08],
        ...     "XLA temporary memory [MiB]": [40.0, 5.0]})
        >>> [v.verdict for v in judge(COST_CLAIMS[1], frame)]
        ['holds']
        >>> judge(COST_CLAIMS[2], frame)[0].verdict  # one batch size
        'not resolved'
    """
    rows = frame[frame["method"] == claim.method]
    base = frame[frame["method"] == "backprop"]
    if rows.empty or base.empty:
        missing = claim.method if rows.empty else "backprop"
        return [CostVerdict(claim.id, "not resolved", None, math.nan, math.nan, math.nan,
                            f"the measurements have no rows of {missing}")]
    if claim.quantity == "time ratio":
        out = []
        step_ms = dict(zip(base["batch size"], base[_STEP_MS], strict=True)) if _STEP_MS in base else {}
        for _, row in rows.sort_values("batch size").iterrows():
            ratio, low, high = (float(row[_RATIO]), float(row[f"{_RATIO}, 95% low"]), float(row[f"{_RATIO}, 95% high"]))
            lo, hi = claim.band
            detail = (f"{claim.method} / backprop, median of paired ratios {ratio:.3g} "
                      f"[{low:.3g}, {high:.3g}] against the band [{lo:.3g}, {hi:.3g}]")
            verdict = judge_ratio(claim, low, high)
            backprop_ms = float(step_ms.get(row["batch size"], math.nan))
            if backprop_ms < MIN_STEP_MS:
                verdict, detail = "not resolved", (f"not judged: backprop's step takes {backprop_ms:.2g} ms, under "
                                                   f"{MIN_STEP_MS:g} ms, where a call's fixed cost sets the ratio; {detail}")
            out.append(CostVerdict(claim.id, verdict, int(row["batch size"]), ratio, low, high, detail))
        return out
    both = rows.merge(base, on="batch size", suffixes=("", " bp"))
    verdict, saving = judge_saving(both["batch size"].tolist(), both[f"{_MEMORY} bp"].tolist(), both[_MEMORY].tolist())
    sizes = ", ".join(str(b) for b in sorted(both["batch size"]))
    return [CostVerdict(claim.id, verdict, None, saving, math.nan, math.nan,
                        f"backprop's minus {claim.method}'s XLA temporary memory at batch sizes {sizes}; "
                        f"{saving:.3g} MiB at the largest")]


def judge_all(frame: pd.DataFrame, claims: Sequence[CostClaim] = COST_CLAIMS) -> list[CostVerdict]:
    """Every cost claim judged on one cost frame, in the order of `claims`.

    Examples:
        >>> import pandas as pd
        >>> from snrkit.claims.costs import judge_all
        >>> empty = pd.DataFrame(columns=["batch size", "method"])
        >>> {v.verdict for v in judge_all(empty)}
        {'not resolved'}
    """
    return [verdict for claim in claims for verdict in judge(claim, frame)]


def verdict_frame(verdicts: Sequence[CostVerdict]) -> pd.DataFrame:
    """The verdicts as a tidy frame (one row each), for a CSV.

    Examples:
        >>> import pandas as pd
        >>> from snrkit.claims.costs import judge_all, verdict_frame
        >>> empty = pd.DataFrame(columns=["batch size", "method"])
        >>> list(verdict_frame(judge_all(empty)).columns)[:3]
        ['claim', 'verdict', 'batch size']
    """
    return pd.DataFrame([v.to_dict() for v in verdicts],
                        columns=["claim", "verdict", "batch size", "measured", "95% low", "95% high", "detail"])


__all__ = [
    "COST_CLAIMS",
    "MEMORY_RESOLUTION",
    "MIN_STEP_MS",
    "QUANTITIES",
    "TIME_TOLERANCE",
    "VERDICTS",
    "CostClaim",
    "CostVerdict",
    "judge",
    "judge_all",
    "judge_ratio",
    "judge_saving",
    "verdict_frame",
]
