"""The claims ledger: every claim is registered, and its verdict is computed on fresh gradients.

Expected verdicts come from the mathematics (docs/derivations.md), not from running the code:
Var[g_i] = ‖∇‖² + (κ−2)∇_i² for one direction, so under Gaussian probes (κ = 3) the
Σ_{j≠i}∇_j² formulas (Daprato, Yao) miss 2∇_i², Frye's χ²(2) step gives 4× the norm; under
Rademacher probes (κ = 1) Σ_{j≠i}∇_j² is exact. The gradients here are fresh: an MLP with
another width and seed than the defaults, and random homogeneous signs.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import snrkit as sk
from snrkit import claims, data, gradients, nets
from snrkit.claims.bibliography import REFERENCES
from tests.conftest import TEST_ALPHA, pinned_key

ISSUE_IDS = {
    "baydin-unbiased", "frye-eq1", "frye-eq5", "frye-snr", "frye-thread", "daprato-variance",
    "yao-eq6", "yao-eq7", "yao-eq8", "yao-eq9", "yao-partition-beats-directions",
}
NUM, BATCHES = 32 * 2048, 32


@pytest.fixture(scope="module")
def fresh_output_bias():
    """Output-layer bias gradient of a 64-20-10 MLP after 50 Adam steps (seed 123): never seen by the defaults."""
    _, grad = gradients.gradient_at(pinned_key(123), nets.mlp((64, 20, 10)), data.load_digits(), step=50)
    return grad[-1]["b"]


def test_every_claim_is_registered_with_its_source():
    assert ISSUE_IDS <= set(claims.CLAIMS)
    kinds = {"exact identity", "leading order in n", "scaling law", "comparison between estimators"}
    for claim in claims.CLAIMS.values():
        assert claim.source and claim.latex and claim.words and claim.about
        assert claim.kind in kinds and claim.test in claims.CHECKS
        assert claim.reference in REFERENCES
        assert isinstance(claim.make_estimator(), sk.Estimator)
        assert (claim.compare_with is not None) == (claim.test == "comparison")
        # No prediction: the claim is the exact law itself (its variance, mean or bias), or needs none.
        assert claim.predict is not None or claim.test in ("snr-scaling", "comparison", "entry-variance", "mean", "bias")


@pytest.mark.parametrize(
    ("claim_id", "probe", "expected"),
    [
        ("snrkit-variance", "gaussian", True),
        ("snrkit-variance", "rademacher", True),
        ("frye-eq1", "gaussian", False),
        ("frye-eq5", "gaussian", False),
        ("frye-eq5", "rademacher", False),
        ("daprato-variance", "gaussian", False),
        ("daprato-variance", "rademacher", True),
        ("yao-eq6", "gaussian", False),
        ("yao-eq7", "gaussian", False),
        ("yao-eq7", "rademacher", True),
    ],
)
def test_entry_claims_on_a_fresh_gradient(fresh_output_bias, claim_id, probe, expected):
    claim = claims.get_claim(claim_id)
    if expected is False:
        # The design must be able to refute: assert its power before trusting a "holds".
        law = claim.make_estimator(probe).given(fresh_output_bias)
        wrong = claim.predict(np.asarray(law.flat_mean(), np.float64))
        assert sk.stats.detection_margin(law, wrong, num_samples=NUM, batches=BATCHES, alpha=TEST_ALPHA) >= 1
    v = claims.verify(claim_id, fresh_output_bias, key=pinned_key(7), num_samples=NUM, probe=probe, alpha=TEST_ALPHA)
    assert v.holds is expected, v
    assert (v.correction == "") is expected
    lo, hi = v.ratio_ci
    assert lo <= v.ratio <= hi
    if not expected:
        assert v.p_value <= TEST_ALPHA


@pytest.mark.parametrize(
    ("claim_id", "a", "b"),
    [("daprato-variance", 2.0, 0.0), ("frye-eq1", 1.0, -3.0), ("frye-eq5", 3.0, -3.0)],
)
def test_correction_recovers_the_missing_terms(fresh_output_bias, claim_id, a, b):
    """Fed the exact Gaussian truth, the correction fit gives truth − claim exactly (hand-derived a, b)."""
    claim = claims.get_claim(claim_id)
    g = np.asarray(fresh_output_bias, np.float64)
    truth = g @ g + g**2
    terms = claims.correction_terms(truth, claim.predict(g), sk.ForwardGradient().given(fresh_output_bias))
    assert terms["∇_i²"] == pytest.approx(a, abs=1e-9)
    assert terms["‖∇‖²"] == pytest.approx(b, abs=1e-9)


@pytest.mark.parametrize(("claim_id", "probe", "expected"), [("yao-eq8", "gaussian", False), ("yao-eq8", "rademacher", True),
                                                             ("yao-eq9", "gaussian", False), ("yao-eq9", "rademacher", True)])
def test_homogeneous_claims(claim_id, probe, expected):
    signs = np.where(np.random.default_rng(5).random(8) < 0.5, -1.0, 1.0)
    grad = jnp.asarray(0.3 * signs, jnp.float32)
    if expected is False:
        claim = claims.get_claim(claim_id)
        law = claim.make_estimator(probe).given(grad)
        wrong = claim.predict(np.asarray(law.flat_mean(), np.float64))
        assert sk.stats.detection_margin(law, wrong, num_samples=2 * NUM, batches=BATCHES, alpha=TEST_ALPHA) >= 1
    v = claims.verify(claim_id, grad, key=pinned_key(9), num_samples=2 * NUM, probe=probe, alpha=TEST_ALPHA)
    assert v.holds is expected, v


@pytest.mark.parametrize(("probe", "expected"), [("gaussian", False), ("rademacher", True)])
def test_partition_vs_directions(fresh_output_bias, probe, expected):
    """Σ_B(|B|+κ−2)‖∇_B‖² vs (n+κ−2)‖∇‖²/K with n=10, K=2: 6 vs 5.5 (Gaussian), 4 vs 4.5 (Rademacher)."""
    v = claims.verify("yao-partition-beats-directions", fresh_output_bias, key=pinned_key(10), probe=probe, alpha=TEST_ALPHA)
    assert v.holds is expected, v
    assert v.exact_ratio == pytest.approx(6 / 5.5 if probe == "gaussian" else 4 / 4.5, rel=1e-5)


def test_thread_claim_holds_to_leading_order():
    """mean_i Var[g_i] = ‖∇‖²(1 + 1/n) under Gaussian probes: at n = 2410 the claim holds at this
    precision, and the same pooled test refutes an average off by a factor 2 (negative control)."""
    _, grad = gradients.gradient_at(pinned_key(31), nets.mlp((64, 32, 10)), data.load_digits(), step=20)
    v = claims.verify("frye-thread", grad, key=pinned_key(11), quick=True, alpha=TEST_ALPHA)
    assert v.holds is True and v.resolution < 0.5
    n = v.setting["n"]
    assert v.exact_ratio == pytest.approx(1 + 1 / n, rel=1e-5)
    law = sk.ForwardGradient().given(grad)
    m = sk.monte_carlo(law, pinned_key(11), BATCHES * 128, batches=BATCHES)
    flat = np.asarray(law.flat_mean(), np.float64)
    wrong = sk.stats.compare_variance(m, np.full(n, 0.5 * flat @ flat), law=law, alpha=TEST_ALPHA, pooled_only=True)
    assert not wrong.holds, str(wrong)


def test_scaling_law_verdict():
    """Frye's O(1/n) on the quick sweep: the exact exponent is within 0.1 of −1 and n·SNR ≤ 1."""
    v = claims.verify("frye-snr", key=pinned_key(13), quick=True)
    assert v.holds is True and abs(v.exact_ratio - 1) < 0.1 and v.setting["max n·SNR"] <= 1


def test_unknown_claim():
    with pytest.raises(ValueError, match="unknown claim 'frye-eq99'; known claims: baydin-unbiased"):
        claims.verify("frye-eq99", key=pinned_key(0))


def test_verdict_json_fields(fresh_output_bias):
    v = claims.verify("frye-eq1", fresh_output_bias, key=pinned_key(1), quick=True)
    d = json.loads(json.dumps(v.to_dict()))
    for field in ("id", "source", "statement", "holds", "ratio", "ratio_ci", "p_value", "setting"):
        assert field in d
    assert d["setting"]["probe"] == "gaussian" and d["setting"]["n"] == 10


@pytest.mark.slow
def test_unbiasedness_from_real_jvp_estimates():
    """Baydin's claim on the default network, from jax.jvp estimates (no backprop)."""
    v = claims.verify("baydin-unbiased", key=pinned_key(12))
    assert v.holds is True and v.setting["path"].startswith("jax.jvp") and v.resolution <= 0.5


# -- the claims of the families beyond iid probes, on fresh gradients ---------------------------


def test_floor_and_orthogonal_frames_hold_on_a_fresh_gradient(fresh_output_bias):
    for claim_id in ("snrkit-floor", "snrkit-orthogonal-variance"):
        v = claims.verify(claim_id, fresh_output_bias, key=pinned_key(60), alpha=TEST_ALPHA)
        assert v.holds is True and v.setting["probe"] == "—", v
        assert v.exact_ratio == pytest.approx(1.0, rel=1e-5)


def test_covariance_probe_claims_hold_with_a_fresh_stale_gradient():
    """A 64-20-10 MLP trained 50 steps: its output-bias gradient, with the gradient of step 40 as the prior."""
    digits = data.load_digits()
    net = nets.mlp((64, 20, 10))
    stale, now = gradients.train(pinned_key(123), net, digits, steps=50, batch_size=128, learning_rate=1e-3,
                                 checkpoints=(40, 50), metrics=False)
    grad = gradients.full_batch_gradient(net, now.params, digits)[-1]["b"]
    stale_grad = gradients.full_batch_gradient(net, stale.params, digits)[-1]["b"]
    problem = sk.GradientProblem(grad, state={"stale_gradient": stale_grad})
    for claim_id in ("snrkit-covariance-variance", "snrkit-covariance-bias"):
        v = claims.verify(claim_id, problem, key=pinned_key(61), alpha=TEST_ALPHA)
        assert v.holds is True, v
    with pytest.raises(ValueError, match="carries no state 'stale_gradient'"):
        claims.verify("snrkit-covariance-variance", grad, key=pinned_key(61))


@pytest.mark.slow
def test_peer_lengths_on_a_fresh_network_gradient():
    """The projection's factor restores the length (holds, resolved to 10 %); the unit-mean one misses by ~5 % (refuted)."""
    _, grad = gradients.gradient_at(pinned_key(124), nets.mlp((64, 24, 10)), data.load_digits(), step=30)
    holds = claims.verify("flugel-projection-length", grad, key=pinned_key(62), alpha=TEST_ALPHA)
    refuted = claims.verify("flugel-mean-length", grad, key=pinned_key(63), alpha=TEST_ALPHA)
    assert holds.holds is True and holds.ratio_ci[0] <= 1.0 <= holds.ratio_ci[1], holds
    assert refuted.holds is False and refuted.ratio_ci[0] > 1.02, refuted  # large-n limit √5 E χ_4 / 4 = 1.051


# -- what verify refuses, and what it says ------------------------------------------------------


def test_verify_refuses_inputs_it_would_ignore_or_misuse(fresh_output_bias):
    with pytest.raises(ValueError, match="frye-snr is verified on MLPs of growing width.*does not take a gradient"):
        claims.verify("frye-snr", fresh_output_bias, key=pinned_key(0))
    with pytest.raises(ValueError, match="num_samples must be at least 64"):
        claims.verify("frye-eq1", fresh_output_bias, key=pinned_key(0), num_samples=0)
    for alpha in (0, 1.5):
        with pytest.raises(ValueError, match="alpha must lie strictly between 0 and 1"):
            claims.verify("frye-eq1", fresh_output_bias, key=pinned_key(0), alpha=alpha)
    with pytest.raises(ValueError, match="probe must be 'gaussian' or 'rademacher'"):
        claims.verify("frye-eq1", fresh_output_bias, key=pinned_key(0), probe="cauchy")
    with pytest.raises(ValueError, match="seed must be at most 4294967295"):
        claims.verify("frye-eq1", key=pinned_key(0), seed=2**32)
    with pytest.raises(ValueError, match="snrkit-floor has no probe to choose"):
        claims.verify("snrkit-floor", fresh_output_bias, key=pinned_key(0), probe="gaussian")
    with pytest.raises(ValueError, match="with your own gradient they would do nothing"):
        claims.verify("frye-eq1", fresh_output_bias, key=pinned_key(0), seed=3)
    with pytest.raises(ValueError, match="with your own gradient they would do nothing"):
        claims.verify("frye-eq1", fresh_output_bias, key=pinned_key(0), mnist_dir="/somewhere")
    with pytest.raises(ValueError, match="frye-eq1 does not read a sweep"):
        claims.verify("frye-eq1", fresh_output_bias, key=pinned_key(0), sweep_frame=object())


def test_a_claim_judged_outside_its_conditions_says_so(fresh_output_bias):
    """Yao's eq. (8) assumes homogeneous entries: on a real, uneven gradient the verdict says it is outside them."""
    v = claims.verify("yao-eq8", fresh_output_bias, key=pinned_key(3), probe="rademacher", quick=True)
    assert v.conditions.startswith("homogeneous entries: ∇_i² = σ² for every i; here ∇_i² ranges from")
    assert v.qualified_verdict.endswith("outside its stated conditions")
    inside = claims.verify("yao-eq8", jnp.full(8, 0.3), key=pinned_key(3), probe="rademacher", quick=True)
    assert inside.conditions == "" and inside.qualified_verdict == inside.verdict


def test_the_correction_of_a_partition_claim_has_no_spurious_k():
    """yao-eq9 is one direction with 4 blocks: the fitted correction must not be 'all over K=4'."""
    grad = jnp.array([3.0, -1.0, 0.5, 2.0, 0.1, -0.7, 1.2, 0.4])
    v = claims.verify("yao-eq9", grad, key=pinned_key(4), quick=True)
    assert v.holds is False and "K=4" not in v.correction and "‖∇_B(i)‖²" in v.correction


def test_the_seed_reaches_the_default_gradients():
    a, _ = claims.default_gradient("output-bias", seed=0)
    b, _ = claims.default_gradient("output-bias", seed=1)
    assert not np.allclose(np.asarray(a), np.asarray(b))


# ---- citations: every reference resolves for a reader with only the package and the site ----

ROOT = Path(__file__).resolve().parents[1]
# What a reader is given: the package, the docs (with the committed ledger), the notebooks, the README.
SHIPPED = [
    *ROOT.joinpath("snrkit").rglob("*.py"),
    *(p for p in ROOT.joinpath("docs").rglob("*") if p.suffix in (".md", ".py", ".csv", ".json")),
    *ROOT.joinpath("notebooks").glob("*.ipynb"),
    *ROOT.joinpath("notebooks").glob("*.md"),
    ROOT / "README.md",
]
BIBLIOGRAPHY_LINK = re.compile(r"bibliography\.md#([\w-]+)")


def test_every_reference_can_be_followed():
    """Authors, title and a link, or a note that says why there is none (and none for a missing year)."""
    for key, ref in REFERENCES.items():
        assert ref.authors and ref.title, key
        assert ref.url.startswith("https://") or (not ref.url and ref.note), f"{key}: no link and no note saying why"
        assert ref.year is not None or ref.note, f"{key}: no year and no note saying why"


def test_no_citation_of_files_a_reader_does_not_have():
    """The source papers' text files and the design notes stay in the repository's workspace, not in citations."""
    private = ("shared" + "/papers", "DESIGN" + ".md", "DESIGN" + "'s")
    found = [
        f"{path.relative_to(ROOT)}: {word}"
        for path in SHIPPED
        for word in private
        if word in path.read_text(encoding="utf-8", errors="replace")
    ]
    assert not found, found


def test_docs_cite_by_existing_keys_and_every_work_is_cited():
    """Each `bibliography.md#key` link names an entry; each entry is cited by a claim or a page."""
    linked = {key for path in SHIPPED for key in BIBLIOGRAPHY_LINK.findall(path.read_text(encoding="utf-8"))}
    assert linked, "no docs page links to the bibliography: the pattern is out of date"
    assert linked <= set(REFERENCES), sorted(linked - set(REFERENCES))
    cited = linked | {claim.reference for claim in claims.CLAIMS.values()}
    # or by name and year in the text (a docstring cannot link into a generated page)
    text = "\n".join(path.read_text(encoding="utf-8") for path in SHIPPED)
    cited |= {
        key for key, ref in REFERENCES.items()
        if ref.year and re.search(rf"{re.escape(ref.authors.split(',')[0])}[^\n]{{0,12}}{ref.year}", text)
    }
    assert set(REFERENCES) <= cited, f"entries nothing cites: {sorted(set(REFERENCES) - cited)}"


def test_bibliography_page_has_an_anchor_per_work_and_lists_its_claims():
    spec = importlib.util.spec_from_file_location("docs_hook_bibliography", ROOT / "docs" / "hooks" / "bibliography.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    page = hook.render()
    for key, ref in REFERENCES.items():
        assert f"{{ #{key} }}" in page and ref.markdown() in page, key
    for claim_id, claim in claims.CLAIMS.items():
        section = page.split(f"{{ #{claim.reference} }}")[1].split("\n## ")[0]
        assert f"(claims.md#{claim_id})" in section, claim_id
