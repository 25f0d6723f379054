"""Estimator families: one module each, collected into a registry.

A family module holds an estimator (a frozen dataclass of hyperparameters), its
[`ProbeSpec`][snrkit.core.spec.ProbeSpec] and its [`Law`][snrkit.core.law.Law], and
declares its registry rows in a module-level `FAMILIES` tuple of
[`Family`][snrkit.families.registry.Family] records. Every module of this package is
imported here and its rows collected into [`FAMILIES`][snrkit.families.FAMILIES], so a new
family is one new module (plus one row in the contract test table and its docs page); the
estimators are exported as `snrkit.<Name>` from the registry. How to add one:
[Contributing a family](../contributing.md).

Examples:
    >>> from snrkit.families import FAMILIES
    >>> list(FAMILIES)[:2]
    ['forward-gradient', 'partitioned']
"""

from __future__ import annotations

import importlib
import pkgutil

from snrkit.families.registry import Family

_NOT_FAMILIES = {"registry"}


def _collect() -> dict[str, Family]:
    rows: list[Family] = []
    for module_info in pkgutil.iter_modules(__path__):
        if module_info.name in _NOT_FAMILIES:
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        rows.extend(module.FAMILIES)
    rows.sort(key=lambda row: (row.order, row.name))
    names = [row.name for row in rows]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise RuntimeError(f"estimator families registered twice: {duplicated}")
    return {row.name: row for row in rows}


FAMILIES: dict[str, Family] = _collect()
"""Every registered family by name, in listing order (see [`Family`][snrkit.families.registry.Family])."""

ESTIMATORS: dict[str, type] = {row.estimator.__name__: row.estimator for row in FAMILIES.values()}
"""Every estimator class by its name (`"ForwardGradient"`, ...), as exported by `snrkit`."""

__all__ = ["FAMILIES", "ESTIMATORS", "Family"]
