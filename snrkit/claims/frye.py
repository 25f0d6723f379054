"""Claims of Frye (2022), "Unfavorable SNR in forward gradients" (note) and the thread that accompanied it."""

from __future__ import annotations

import numpy as np

from snrkit.claims.records import Claim
from snrkit.families.iid import ForwardGradient

CLAIMS = (
    Claim(
        id="frye-eq1",
        source="Frye (2022), eqs. (1) and (7)",
        reference="frye2022",
        latex=r"\mathbb{V}[g_i] \approx 4\|\nabla\|^2",
        words="Each entry's variance is about four times the squared gradient norm.",
        kind="leading order in n",
        about="forward gradient, Gaussian probe, K = 1",
        test="entry-variance",
        estimator=lambda probe: ForwardGradient(probe=probe),
        predict=lambda g: np.full_like(g, 4 * g @ g),
    ),
    Claim(
        id="frye-eq5",
        source="Frye (2022), eq. (5), its 2∇_i² from the unnumbered line before it",
        reference="frye2022",
        latex=r"\mathbb{V}[g_i] = 2\nabla_i^2 + 4\sum_{j\neq i}\nabla_j^2",
        words="Each entry's variance is 2∇_i² plus four times the other entries' squares.",
        kind="exact identity",
        about="forward gradient, Gaussian probe, K = 1",
        test="entry-variance",
        estimator=lambda probe: ForwardGradient(probe=probe),
        predict=lambda g: 2 * g**2 + 4 * (g @ g - g**2),
    ),
    Claim(
        id="frye-snr",
        source="Frye (2022), eqs. (2) and (8)",
        reference="frye2022",
        latex=r"\nabla_i^2 / \mathbb{V}[g_i] = \mathcal{O}(1/n)",
        words="The per-entry SNR falls like 1/n as the network grows.",
        kind="scaling law",
        about="forward gradient, Gaussian probe, K = 1, MLPs of growing width on digits",
        test="snr-scaling",
        estimator=lambda probe: ForwardGradient(probe=probe),
        gradient="sweep",
        probes=("gaussian",),
    ),
    Claim(
        id="frye-thread",
        source="Frye (2022), thread: the MNIST sanity check (its 'norm' read as the squared norm, the only reading with the right units)",
        reference="frye2022thread",
        latex=r"\frac1n\sum_i \mathbb{V}[g_i] = \|\nabla\|^2",
        words="The average variance of an entry equals the true gradient's squared norm.",
        kind="leading order in n",
        about="forward gradient, Gaussian probe, K = 1, all parameters of an MLP",
        test="average-variance",
        estimator=lambda probe: ForwardGradient(probe=probe),
        predict=lambda g: np.full_like(g, g @ g),
        gradient="network",
        also_on=("mnist",),
    ),
)
