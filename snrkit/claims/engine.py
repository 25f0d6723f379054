"""The verdict engine: look a claim up, check the inputs, and dispatch to its check.

[`verify`][snrkit.claims.verify] validates everything before any sampling (the claim id,
the key, `alpha`, the sample count, whether the check takes a gradient at all), resolves
the problem (yours, or the claim's default real gradient), and runs the claim's check from
[`CHECKS`][snrkit.claims.checks.CHECKS]. [`verify_all`][snrkit.claims.verify_all] runs every
claim under each of its probes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from snrkit.claims.checks import CHECKS, MAX_RESOLUTION, QUICK_FULL_SAMPLES_UP_TO, SCALING_TOLERANCE, Request
from snrkit.claims.records import Claim, Verdict
from snrkit.claims.registry import CLAIMS
from snrkit.core.problem import as_problem
from snrkit.core.validation import MAX_SEED, check_alpha, check_int, check_key
from snrkit.stats import DEFAULT_ALPHA

__all__ = ["verify", "verify_all", "get_claim", "MAX_RESOLUTION", "QUICK_FULL_SAMPLES_UP_TO", "SCALING_TOLERANCE"]


def get_claim(claim_id: str) -> Claim:
    """Look a claim up by id, with a clear error listing the known ids.

    Args:
        claim_id: a key of [`CLAIMS`][snrkit.claims.CLAIMS].

    Returns:
        The [`Claim`][snrkit.claims.records.Claim].

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
    except (KeyError, TypeError):
        raise ValueError(f"unknown claim {claim_id!r}; known claims: {', '.join(CLAIMS)}") from None


def verify(
    claim_id: str,
    grad: Any = None,
    *,
    key: jax.Array,
    num_samples: int | None = None,
    batches: int = 32,
    alpha: float = DEFAULT_ALPHA,
    probe: str | None = None,
    quick: bool = False,
    mnist_dir: str | None = None,
    seed: int = 0,
    sweep_frame: Any = None,
) -> Verdict:
    """Verify a claim on a real gradient with samples of its estimator.

    Per-entry, average-entry, total and comparison claims sample the estimator's exact law
    ([`Law.sample`][snrkit.core.law.Law.sample], which draws the same probes as the
    `jax.jvp` estimator; the test suite checks the two sample by sample); a mean claim on a
    problem that holds a loss (the default network) samples the real `jax.jvp` estimator.
    Samples of the claim's estimator
    ([`Claim.make_estimator`][snrkit.claims.records.Claim.make_estimator]) are compared with
    the claim's prediction by the distribution-free median-of-batches tests of
    [snrkit.stats][]; the ratio, interval and p-value are defined at
    [`Verdict`][snrkit.claims.records.Verdict], and each kind of test at
    [`CHECKS`][snrkit.claims.checks.CHECKS]. A claim judged on a gradient that does not meet
    its stated conditions is still judged, and the verdict says so
    ([`Verdict.conditions`][snrkit.claims.records.Verdict.conditions]).

    Args:
        claim_id: an id of [`CLAIMS`][snrkit.claims.CLAIMS].
        grad: the gradient (any pytree) or a [`Problem`][snrkit.core.problem.Problem];
            `None` uses the claim's default real gradient (see
            [`default_problem`][snrkit.claims.problems.default_problem]). The scaling law
            builds its own gradients and refuses one.
        key: a JAX key.
        num_samples: Monte Carlo samples, at least `2 * batches` (a multiple of `batches` is
            best); default 65,536 (131,072 up to 64 entries; above 1,000 entries, 16,384 for
            the average-entry and total claims and, with `quick`, 32,768 for the others); a
            mean claim on the default network uses 8,192 real JVP estimates (law samples with
            `quick`); a comparison 1,048,576.
        batches: batches of the distribution-free test (32 is near the most powerful).
        alpha: false-verdict rate, strictly between 0 and 1: a true claim is refuted with
            probability at most alpha.
        probe: `"gaussian"` or `"rademacher"`; default the claim's first probe. Claims
            whose estimator has no probe to choose take none.
        quick: fewer samples for gradients of more than 1,000 entries (small ones keep the
            full count, which their power needs) and a smaller sweep for the scaling law.
        mnist_dir: use an MLP on MNIST for the network-level claims (`frye-thread`).
        seed: seed of the default networks' initialisation and training.
        sweep_frame: for the scaling law, a frame of [snrkit.sweeps.snr_sweep][] to reuse.

    Returns:
        A [`Verdict`][snrkit.claims.records.Verdict].

    Raises:
        ValueError: an unknown claim id or probe, a probe for a claim that has none, `alpha`
            not in (0, 1), too few samples, a gradient for a claim that takes none, `mnist_dir`
            or `seed` with your own gradient, a sweep frame for a claim that reads none, or an
            MNIST folder that cannot be read.
        TypeError: `key` is not a JAX key, or a count is not an int.

    Examples:
        Yao's eq. (6) is the Rademacher truth, stated for Gaussian probes:

        >>> import jax, jax.numpy as jnp
        >>> from snrkit.claims import verify
        >>> grad = jnp.array([3.0, -1.0, 0.5, 2.0])
        >>> verify("yao-eq6", grad, key=jax.random.key(0)).verdict
        'refuted'
        >>> verify(
        ...     "yao-eq6", grad, key=jax.random.key(0), probe="rademacher"
        ... ).verdict
        'holds'
    """
    claim = get_claim(claim_id)
    check = CHECKS[claim.test]
    key = check_key(key)
    alpha = check_alpha(alpha)
    batches = check_int(batches, "batches", minimum=2, hint="batches of the median-of-batches test; 32 is a good default")
    seed = check_int(seed, "seed", minimum=0, maximum=MAX_SEED)
    if num_samples is not None:
        num_samples = check_int(num_samples, "num_samples", minimum=2 * batches,
                                hint=f"every one of the {batches} batches needs at least 2 samples")
    probe = _check_probe(claim, probe)
    if grad is not None and not check.takes_gradient:
        raise ValueError(
            f"{claim_id} is verified on MLPs of growing width ({check.description}); it does not take a gradient. "
            f"Call verify({claim_id!r}, key=...) without one."
        )
    if grad is not None and (mnist_dir is not None or seed != 0):
        raise ValueError(
            "mnist_dir and seed choose the default network a claim is judged on; with your own gradient they "
            "would do nothing: drop them, or drop the gradient"
        )
    if sweep_frame is not None and not check.uses_sweep:
        raise ValueError(f"{claim_id} does not read a sweep ({check.description}); drop sweep_frame")
    if mnist_dir is not None:
        from snrkit import data

        data.check_mnist_dir(mnist_dir)
    problem = None if grad is None else as_problem(grad)
    request = Request(claim, problem, key, num_samples, batches, alpha, probe, quick, mnist_dir, seed, sweep_frame)
    return check.run(request)


def _check_probe(claim: Claim, probe: str | None) -> str:
    if not claim.probes:
        if probe is not None:
            raise ValueError(f"{claim.id} has no probe to choose (its tangents are fixed by its estimator); drop probe=")
        return ""
    if probe is None:
        return claim.probes[0]
    if probe not in ("gaussian", "rademacher"):
        raise ValueError(f"probe must be 'gaussian' or 'rademacher', got {probe!r}")
    return probe


def verify_all(*, key: jax.Array, quick: bool = False, probes: tuple[str, ...] = ("gaussian", "rademacher"),
               mnist_dir: str | None = None, claim_ids: list[str] | None = None,
               on_claim: Callable[[str, str], None] | None = None, sweep_frame: Any = None,
               seed: int = 0) -> list[Verdict]:
    """Verify every claim (or `claim_ids`) under each of its probes among `probes`.

    Each claim is verified by [`verify`][snrkit.claims.verify] on its default real gradient
    ([`default_problem`][snrkit.claims.problems.default_problem]), with the key
    `fold_in(key, position)` of its position in the ledger. A claim whose probes are fixed
    (the scaling law: Gaussian) is verified under those that are requested; one whose
    estimator has no probe to choose, once.

    Args:
        key: a JAX key.
        quick: fewer samples and a smaller sweep (as in [`verify`][snrkit.claims.verify]).
        probes: the probes to verify each claim under.
        mnist_dir: use an MLP on MNIST for the network-level claims.
        claim_ids: the claims to verify; default all of [`CLAIMS`][snrkit.claims.CLAIMS].
        on_claim: called as `on_claim(claim_id, probe)` before each verification.
        sweep_frame: a frame of [snrkit.sweeps.snr_sweep][] for the scaling law to reuse.
        seed: seed of the default networks.

    Returns:
        One [`Verdict`][snrkit.claims.records.Verdict] per claim and probe, claim by claim.

    Raises:
        ValueError: for an unknown claim id or probe, before anything runs.

    Examples:
        The scaling law on a hand-made sweep frame whose exact SNR is exactly $1/n$:

        >>> import jax, pandas as pd
        >>> from snrkit.claims import verify_all
        >>> frame = pd.DataFrame(
        ...     {
        ...         "label": "ForwardGradient(gaussian, K=1)",
        ...         "source": "exact",
        ...         "dataset": "digits",
        ...         "network": [
        ...             "mlp-64-8-8-10",
        ...             "mlp-64-32-32-10",
        ...             "mlp-64-64-64-10",
        ...         ],
        ...         "metric": "mean_entry_snr",
        ...         "n": [1000, 4000, 16000],
        ...         "value": [1 / 1000, 1 / 4000, 1 / 16000],
        ...         "num_samples": 0,
        ...     }
        ... )
        >>> [
        ...     (v.id, v.verdict, round(v.exact_ratio, 3))
        ...     for v in verify_all(
        ...         key=jax.random.key(0), claim_ids=["frye-snr"], sweep_frame=frame
        ...     )
        ... ]
        [('frye-snr', 'holds', 1.0)]
    """
    key = check_key(key)
    for probe in probes:
        if probe not in ("gaussian", "rademacher"):
            raise ValueError(f"probes must be 'gaussian' or 'rademacher', got {probe!r}")
    ids = list(CLAIMS) if claim_ids is None else list(claim_ids)
    for claim_id in ids:
        get_claim(claim_id)
    position = {claim_id: index for index, claim_id in enumerate(CLAIMS)}
    verdicts = []
    for claim_id in ids:
        claim = CLAIMS[claim_id]
        for probe in claim_probes(claim, probes):
            if on_claim is not None:
                on_claim(claim_id, probe or "—")
            uses_sweep = CHECKS[claim.test].uses_sweep
            verdicts.append(verify(claim_id, key=jax.random.fold_in(key, position[claim_id]), quick=quick,
                                   probe=probe or None, mnist_dir=mnist_dir, seed=seed,
                                   sweep_frame=sweep_frame if uses_sweep else None))
    return verdicts


def claim_probes(claim: Claim, probes: tuple[str, ...]) -> list[str]:
    """The probes `claim` is verified under when `probes` are requested (`[""]` for a probe-free claim).

    Examples:
        >>> from snrkit.claims import CLAIMS
        >>> from snrkit.claims.engine import claim_probes
        >>> (
        ...     claim_probes(CLAIMS["frye-snr"], ("gaussian", "rademacher")),
        ...     claim_probes(CLAIMS["yao-eq6"], ("rademacher",)),
        ... )
        (['gaussian'], ['rademacher'])
    """
    if not claim.probes:
        return [""]
    return [p for p in claim.probes if p in probes]
