"""DuSSS's losses: 2-Wasserstein distance, semantic-similarity supervision, InfoNCE, dual contrastive learning."""

import math

import numpy as np
import pytest
import torch
from scipy.linalg import sqrtm

from vessa.losses.contrastive import DualContrastiveLoss, gaussian_w2, info_nce, sss_similarity, text_mask_loss


def _bures_w2(mu1, cov1, mu2, cov2) -> float:
    """W2 between N(mu1, cov1) and N(mu2, cov2) by the general closed form (any covariances)."""
    root2 = sqrtm(cov2)
    cross = sqrtm(root2 @ cov1 @ root2)
    return math.sqrt(float(np.sum((mu1 - mu2) ** 2) + np.trace(cov1 + cov2 - 2 * cross.real)))


def test_w2_of_two_gaussians_matches_the_closed_form():
    # one dimension: N(0, 1) and N(3, 4): W2^2 = 3^2 + (1 - 2)^2 = 10
    d = gaussian_w2(torch.tensor([[0.0]]), torch.tensor([[1.0]]), torch.tensor([[3.0]]), torch.tensor([[4.0]]))
    assert d.item() == pytest.approx(math.sqrt(10), abs=1e-4)
    # diagonal covariances against the general Bures formula
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    var1, var2 = rng.uniform(0.1, 3, size=5), rng.uniform(0.1, 3, size=5)
    got = gaussian_w2(*(torch.tensor(v, dtype=torch.float64)[None] for v in (mu1, var1, mu2, var2)))
    assert got.item() == pytest.approx(_bures_w2(mu1, np.diag(var1), mu2, np.diag(var2)), abs=1e-4)


def test_w2_is_pairwise_and_zero_for_equal_gaussians():
    mu, var = torch.randn(3, 4), torch.rand(3, 4)
    d = gaussian_w2(mu, var, mu, var)
    assert d.shape == (3, 3)
    assert torch.allclose(d.diagonal(), torch.zeros(3), atol=1e-3)
    assert torch.allclose(d, d.t(), atol=1e-5)


def test_info_nce_gives_the_hand_computed_value():
    sim = torch.tensor([[1.0, 0.0], [0.5, 0.2]])
    loss = info_nce(sim, torch.eye(2, dtype=torch.bool), temperature=1.0)
    # row 0: log(1 + e^-1); row 1: log(1 + e^0.3)
    expected = 0.5 * (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(0.3)))
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_semantic_similarity_supervision_softens_the_cosine_by_the_relative_w2():
    mu_a, mu_b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    zero = torch.zeros(1, 2)
    # cos = 0; one pair, so D_u / D_s = 1 and the weight is exp(-lambda)
    sim = sss_similarity(mu_a, zero, mu_b, zero, lam=0.5)
    assert sim.item() == pytest.approx(1 - math.exp(-0.5), abs=1e-4)
    assert sss_similarity(mu_a, zero, mu_b, zero, lam=0.0).item() == pytest.approx(0.0, abs=1e-6)
    # the more uncertain (farther in W2) of two pairs gets the smaller weight, so its similarity moves further towards 1
    mu_c = torch.tensor([[-3.0, 0.0]])
    two = sss_similarity(mu_a, zero[:1], torch.cat([mu_b, mu_c]), torch.zeros(2, 2), lam=0.5)
    cos = torch.tensor([0.0, -1.0])
    weights = (1 - two[0]) / (1 - cos)
    assert 0 < weights[1] < weights[0] < 1


def test_dual_contrastive_loss_is_safe_at_zero_variance_and_zero_distance():
    loss_fn = DualContrastiveLoss()
    mu = torch.ones(4, 8, requires_grad=True)  # identical embeddings: every W2 distance is 0
    var = torch.zeros(4, 8, requires_grad=True)
    t_mu = torch.ones(3, 8, requires_grad=True)
    t_var = torch.zeros(3, 8, requires_grad=True)
    out = loss_fn((mu, var, torch.tensor([0, 1, 0, 1])), (t_mu, t_var, torch.tensor([0, 1, 1])), view_of=torch.tensor([0, 0, 1, 1]))
    assert all(torch.isfinite(v) for v in out.values())
    out["loss"].backward()
    for p in (mu, var, t_mu, t_var):
        assert torch.isfinite(p.grad).all()


def test_dual_contrastive_loss_decreases_on_a_toy_batch():
    torch.manual_seed(0)
    r_cls = torch.tensor([0, 1, 2, 0, 1, 2])
    t_cls = torch.tensor([0, 0, 1, 1, 2, 2])
    params = [torch.randn(6, 16, requires_grad=True), torch.zeros(6, 16, requires_grad=True), torch.randn(6, 16, requires_grad=True), torch.zeros(6, 16, requires_grad=True)]
    loss_fn = DualContrastiveLoss()
    opt = torch.optim.Adam(params, lr=0.05)

    def loss():
        r_mu, r_raw, t_mu, t_raw = params
        regions = (r_mu, torch.nn.functional.softplus(r_raw), r_cls)
        texts = (t_mu, torch.nn.functional.softplus(t_raw), t_cls)
        return loss_fn(regions, texts, view_of=torch.tensor([0, 0, 0, 1, 1, 1]))

    first = {k: v.item() for k, v in loss().items()}
    for _ in range(60):
        opt.zero_grad()
        loss()["loss"].backward()
        opt.step()
    last = {k: v.item() for k, v in loss().items()}
    for term in ("cross", "image", "text", "loss"):
        assert last[term] < 0.5 * first[term], (term, first[term], last[term])


def test_info_nce_without_positives_is_zero_and_keeps_the_graph():
    sim = torch.randn(2, 3, requires_grad=True)
    loss = info_nce(sim, torch.zeros(2, 3, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()


def test_text_mask_loss_is_low_for_the_right_mask():
    target = torch.zeros(1, 2, 8, 8)
    target[0, 0, :4] = 1
    target[0, 1, 4:] = 1
    right = (target * 2 - 1) * 10
    assert text_mask_loss(right, target) < 0.01 < text_mask_loss(-right, target)
