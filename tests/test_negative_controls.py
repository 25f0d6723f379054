"""Negative controls: the same comparison that confirms the exact law rejects wrong formulas.

Wrong formulas (docs/papers.md): the variance ×4 (Frye's χ²(2) factor) and the variance missing
its 2∇_i² term (‖∇‖² − ∇_i², the form of Daprato §3.1 and Yao eq. 6, which is the Gaussian
truth minus 2∇_i²). A missing 2∇_i² changes coordinate i by 2∇_i²/(‖∇‖² + ∇_i²) relative:
detectable only where ∇_i carries a good share of ‖∇‖², so the gradients here are
concentrated ones: a synthetic one, and the real output-layer bias gradient of an MLP on
digits (10 entries, a few of which dominate).

Before sampling, each test asserts with snrkit.stats.detection_margin that the design
rejects the wrong formula with probability ≥ 1 − 1e-6; the distribution-free test makes
false failure of the right formula ≤ 1e-6 as well.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import snrkit as sk
from snrkit import data, gradients, nets
from tests.conftest import TEST_ALPHA, pinned_key

BATCHES = 32


def _synthetic():
    return jnp.array([3.0, -1.0, 0.5, 0.2, 0.1, -0.1, 0.05, 0.0])


def _real_output_bias():
    digits = data.load_digits().take(256)
    net = nets.mlp((64, 16, 10))
    params = net.init(pinned_key(4))
    grad = gradients.full_batch_gradient(net, params, digits)
    return grad[-1]["b"]


def _wrong_formulas(law):
    var = np.asarray(law.flat_var(), np.float64)
    grad = np.asarray(law.flat_mean(), np.float64)
    return {"times-4": 4 * var, "missing-2-grad-i-squared": var - 2 * grad**2}


@pytest.mark.parametrize("gradient", [_synthetic, _real_output_bias], ids=["synthetic", "real-output-bias"])
@pytest.mark.parametrize("wrong", ["times-4", "missing-2-grad-i-squared"])
def test_wrong_formula_rejected_and_truth_confirmed(gradient, wrong):
    grad = gradient()
    law = sk.ForwardGradient("gaussian").given(grad)
    wrong_var = _wrong_formulas(law)[wrong]
    alpha = TEST_ALPHA / 2  # two comparisons on the same samples: truth and wrong formula
    num = BATCHES * 2048
    power = sk.stats.detection_margin(law, wrong_var, num_samples=num, batches=BATCHES, alpha=alpha, beta=TEST_ALPHA)
    assert power >= 1.0, f"design too weak to catch {wrong}: margin {power:.2f} < 1; raise num_samples"
    m = sk.monte_carlo(law, pinned_key(21), num, batches=BATCHES)
    truth = sk.stats.compare_variance(m, law, alpha=alpha)
    refuted = sk.stats.compare_variance(m, wrong_var, law=law, alpha=alpha)
    assert truth.holds, str(truth)
    assert not refuted.holds, str(refuted)
    assert refuted.p_value <= alpha


def test_biased_mean_rejected():
    """A mean claim off by a factor (E[g] = 0.8∇, e.g. a forgotten normalisation) is refuted."""
    law = sk.ForwardGradient("rademacher").given(_synthetic())
    m = sk.monte_carlo(law, pinned_key(22), BATCHES * 2048, batches=BATCHES)
    assert sk.stats.compare_mean(m, law).holds
    wrong = sk.stats.compare_mean(m, 0.8 * np.asarray(law.flat_mean()), law=law)
    assert not wrong.holds and wrong.ratio > 1.15, str(wrong)


def test_off_by_one_in_n_rejected():
    """Yao's (n−1)σ²/K is the Rademacher truth for homogeneous entries; nσ²/K (off by one) is refuted.

    n = 8, K = 4: a relative error of 1/7, caught because Rademacher samples have light tails.
    """
    grad = 0.5 * jnp.array([1.0, -1.0, 1.0, 1.0, -1.0, 1.0, -1.0, -1.0])
    law = sk.ForwardGradient("rademacher", directions=4).given(grad)
    n, sigma2 = 8, 0.25
    wrong = np.full(n, n * sigma2 / 4)
    num = BATCHES * 4096
    assert sk.stats.detection_margin(law, wrong, num_samples=num, batches=BATCHES, alpha=TEST_ALPHA / 2) >= 1.0
    m = sk.monte_carlo(law, pinned_key(23), num, batches=BATCHES)
    assert sk.stats.compare_variance(m, np.full(n, (n - 1) * sigma2 / 4), law=law, alpha=TEST_ALPHA / 2).holds
    assert not sk.stats.compare_variance(m, wrong, law=law, alpha=TEST_ALPHA / 2).holds


def test_mean_off_by_half_rejected_on_a_whole_network():
    """At network scale (n = 2410, spread gradient) the pooled mean gate, with the exact variance of
    the projection, refutes E[g] = 0.5∇ and E[g] = 0 cannot pass as ∇; the truth holds."""
    digits = data.load_digits().take(512)
    net = nets.mlp((64, 32, 10))
    grad = gradients.full_batch_gradient(net, net.init(pinned_key(6)), digits)
    law = sk.ForwardGradient("gaussian").given(grad)
    m = sk.monte_carlo(law, pinned_key(24), BATCHES * 128, batches=BATCHES)
    flat = np.asarray(law.flat_mean(), np.float64)
    assert sk.stats.compare_mean(m, law).holds
    half = sk.stats.compare_mean(m, 0.5 * flat, law=law)
    assert not half.holds and 1.7 < half.ratio < 2.3, str(half)
