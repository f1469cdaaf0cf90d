import pytest
import torch

from sarigan.config import get_preset
from sarigan.grouping import SimilarityGrouping, group_styles, uniform_assignment
from sarigan.losses import d_logistic, g_nonsaturating, group_loss, mi_loss
from sarigan.networks import Discriminator, Generator

GROUPING_NAMES = ("theta", "theta_beta", "theta_tau")


def _grads(module: torch.nn.Module, loss: torch.Tensor) -> dict[str, bool]:
    module.zero_grad(set_to_none=True)
    loss.backward(retain_graph=True)
    return {n: p.grad is not None and bool(p.grad.abs().sum() > 0) for n, p in module.named_parameters()}


def test_style_formula_against_direct_computation() -> None:
    torch.manual_seed(0)
    b, c, g = 3, 12, 4
    s_c, s_g = torch.randn(b, c, dtype=torch.float64), torch.randn(b, g, dtype=torch.float64)
    index = torch.tensor([0, 1, 2, 0, 0, 1, 3, 3, 2, 1, 0, 3])
    out = group_styles(s_c, s_g, index, eps=0.0)
    for bi in range(b):
        for i in range(c):
            members = [j for j in range(c) if index[j] == index[i]]
            norm = sum(float(s_c[bi, j]) ** 2 for j in members) ** 0.5
            assert out[bi, i].item() == pytest.approx(float(s_g[bi, index[i]]) * float(s_c[bi, i]) / norm, rel=1e-12)


def test_grouping_losses_reach_only_their_parameters() -> None:
    torch.manual_seed(0)
    grouping = SimilarityGrouping(16, 4)
    k = torch.nn.functional.normalize(torch.randn(16, 27), dim=1)
    p = (k @ k.t()).requires_grad_(True)  # even a P that requires grad must not receive any: it is detached
    index, loss_sim, loss_bal = grouping(p)
    got = _grads(grouping, loss_sim)
    assert got == {"theta": True, "theta_beta": True, "theta_tau": False}
    got = _grads(grouping, loss_bal)
    assert got == {"theta": False, "theta_beta": False, "theta_tau": True}
    assert p.grad is None
    # the hard assignment is a true argmax of the soft assignment and is detached
    assert torch.equal(index, grouping.soft_assignment().argmax(0)) and not index.requires_grad


def test_routing_in_the_full_model() -> None:
    """L_sim / L_bal reach only Θ, β / τ; adversarial and MI losses never reach Θ, β, τ."""
    torch.manual_seed(0)
    cfg = get_preset("tiny")
    G, D = Generator(cfg), Discriminator(cfg)
    w = G.mapping(torch.randn(4, cfg.z_dim))
    img, l_sim, l_bal = G.synthesis(w)
    logit, q = D(img)

    def grouping_grads(loss: torch.Tensor) -> set[str]:
        got = _grads(G, loss)
        return {n.rsplit(".", 1)[-1] for n, hit in got.items() if hit and ".grouping." in n}

    def non_grouping_grads(loss: torch.Tensor) -> int:
        got = _grads(G, loss)
        return sum(hit for n, hit in got.items() if ".grouping." not in n)

    assert grouping_grads(l_sim) == {"theta", "theta_beta"} and non_grouping_grads(l_sim) == 0
    assert grouping_grads(l_bal) == {"theta_tau"} and non_grouping_grads(l_bal) == 0
    assert grouping_grads(group_loss(cfg, l_sim, l_bal)) == set(GROUPING_NAMES)
    for loss in (g_nonsaturating(logit), mi_loss(q, w), d_logistic(logit, logit)):
        assert grouping_grads(loss) == set()
        assert non_grouping_grads(loss) > 0


def test_uniform_assignment_is_balanced() -> None:
    idx = uniform_assignment(64, 8)
    assert torch.equal(torch.bincount(idx), torch.full((8,), 8))
    assert torch.all(idx[1:] >= idx[:-1])


def test_balance_loss_moves_threshold_towards_target() -> None:
    torch.manual_seed(0)
    grouping = SimilarityGrouping(32, 4)
    k = torch.nn.functional.normalize(torch.randn(32, 27), dim=1)
    p = k @ k.t()
    opt = torch.optim.Adam([grouping.theta_tau], lr=0.05)
    before = grouping(p)[2].item()
    for _ in range(100):
        opt.zero_grad()
        grouping(p)[2].backward()
        opt.step()
    assert grouping(p)[2].item() < 0.1 * before
