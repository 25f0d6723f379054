"""The registry record of an estimator family: what it needs, whether it is biased, what it costs.

Each family module declares its rows in a module-level `FAMILIES` tuple;
[`snrkit.families`][snrkit.families] collects them, and the docs page
[Estimator families](../families/index.md) is generated from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Family:
    """One estimator family of the registry.

    Attributes:
        name: registry name, e.g. `"forward-gradient"` (the estimator's `family`).
        title: its name in words, e.g. `"Forward gradient"` (the docs page's title).
        estimator: the estimator class.
        summary: one sentence on what the estimator does.
        law: its mean and variance in LaTeX, short.
        bias: `"unbiased"`, `"biased"`, or on what it depends (e.g. a scale option).
        cost: JVPs (and backward passes) per estimate, in words.
        source: where the estimator comes from (paper and section).
        docs: the docs page of the family, relative to `docs/`.
        order: position in listings and in the default SNR sweep.
        sweep: settings the default SNR sweep evaluates ([snrkit.sweeps.SWEEP_ESTIMATORS][]).
        timed: settings [`snrkit cost`][snrkit.cost.default_methods] times besides the
            `sweep`'s: those that read a state the SNR sweep's problems do not carry (a
            prior built from the stale gradient of a training loop).

    Examples:
        >>> from snrkit.families import FAMILIES
        >>> row = FAMILIES["forward-gradient"]
        >>> row.cost, sorted(row.needs)
        ('K JVPs', ['gradient'])
    """

    name: str
    title: str
    estimator: type
    summary: str
    law: str
    bias: str
    cost: str
    source: str
    docs: str
    order: int = 100
    sweep: tuple[Any, ...] = field(default=(), repr=False)
    timed: tuple[Any, ...] = field(default=(), repr=False)

    @property
    def needs(self) -> frozenset[str]:
        """What the family's law needs of a problem (the estimator's `needs`)."""
        return self.estimator.needs
