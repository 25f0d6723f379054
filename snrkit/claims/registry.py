"""Every registered claim, in ledger order: the claim modules' `CLAIMS`, one module per paper.

The ledger order fixes each claim's random key (`fold_in(key, position)` in
[`verify_all`][snrkit.claims.verify_all]), so modules are listed in the order their claims
were registered and new claims come last.
"""

from __future__ import annotations

from snrkit.claims import baydin, daprato, flugel, frye, snrkit_families, snrkit_laws, yao
from snrkit.claims.records import Claim

_MODULES = (baydin, snrkit_laws, frye, daprato, yao, snrkit_families, flugel)

CLAIMS: dict[str, Claim] = {}
"""Every registered claim by id, in ledger order (see the module docs and the [claims ledger](../claims.md))."""
for _module in _MODULES:
    for _claim in _module.CLAIMS:
        if _claim.id in CLAIMS:
            raise RuntimeError(f"claim {_claim.id!r} is registered twice")
        CLAIMS[_claim.id] = _claim
