import math

import pytest
import torch

from rd2.decomposition import (
    DecompositionConfig,
    RewardDecomposition,
    decomposition_loss,
    loss_div1,
    loss_div2_corr,
    loss_mini,
    loss_sum,
    loss_value,
    loss_zero,
)
from rd2.torso import NatureCNN


def test_loss_sum_and_zero_by_hand() -> None:
    sub = torch.tensor([[1.0, 2.0], [0.5, -0.5], [3.0, 0.0]])
    r = torch.tensor([3.0, 0.0, 0.0])
    assert loss_sum(sub, r).item() == pytest.approx((0 + 0 + 9) / 3)
    assert loss_zero(sub, r).item() == pytest.approx((0.25 + 0.25 + 9.0) / 2)  # mean over r = 0 rows of Σ_k r̂_k²
    assert loss_zero(sub, torch.ones(3)).item() == 0.0


def test_loss_mini_and_div1_by_hand() -> None:
    m = torch.tensor([[[1.0, 1.0, 0.0], [0.0, 0.5, 1.0]]])  # (B=1, K=2, N=3)
    assert loss_mini(m, eps=0.0).item() == pytest.approx(math.log(2.0) + math.log(1.5))
    # Σ ReLU(m1 − m2) = 1 + 0.5 = 1.5 ; Σ ReLU(m2 − m1) = 1
    assert loss_div1(m, eps=0.0).item() == pytest.approx(-(math.log(1.5) + math.log(1.0)))
    same = torch.tensor([[[0.3, 0.7], [0.3, 0.7]]])
    assert loss_div1(same, eps=1e-7).item() == pytest.approx(-2 * math.log(1e-7), rel=1e-4)  # m_k ⊆ m_j blows up
    batch = torch.cat([m, m.flip(1)])  # batch mean over state-dependent masks
    assert loss_div1(batch, eps=0.0).item() == pytest.approx(-math.log(1.5))


def test_loss_div2_corr() -> None:
    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert loss_div2_corr(torch.stack([a, 2 * a], 1)).item() == pytest.approx(2.0, abs=1e-5)
    assert loss_div2_corr(torch.stack([a, -a], 1)).item() == pytest.approx(2.0, abs=1e-5)
    b = torch.tensor([1.0, -1.0, -1.0, 1.0])
    assert loss_div2_corr(torch.stack([a - a.mean(), b], 1)).item() == pytest.approx(0.0, abs=1e-6)


def test_loss_value_by_hand() -> None:
    r = torch.tensor([1.0, 0.2, 0.0, 1.0, 0.2])
    # separated: each reward value in its own channel (the zero-reward row is ignored)
    sep = torch.tensor([[1.0, 0.0], [0.0, 0.2], [5.0, 7.0], [1.0, 0.0], [0.0, 0.2]])
    assert loss_value(sep, r, eps=0.0).item() == pytest.approx(0.0, abs=1e-6)
    # Gopher's failure: both channels carry a fixed share of every reward -> all of Var(r) is within channels
    mix = torch.stack([0.6 * r, 0.4 * r], 1)
    assert loss_value(mix, r, eps=0.0).item() == pytest.approx(1.0, rel=1e-5)
    one = torch.stack([r, 0 * r], 1)  # one channel takes both values
    assert loss_value(one, r, eps=0.0).item() == pytest.approx(1.0, rel=1e-5)
    # "a base + the excess": channel 0 holds 0.2 of every reward, channel 1 the rest of the +1s
    base = torch.tensor([[0.2, 0.8], [0.2, 0.0]]).repeat(2, 1)
    rb = torch.tensor([1.0, 0.2, 1.0, 0.2])
    # channel 0: shares 0.2 (r = 1) and 1 (r = 0.2): μ = 1/3, within = (0.4·(2/3)² + 2·(2/15)²)/4; Var = 0.16
    within = (2 * 0.2 * (1 - 1 / 3) ** 2 + 2 * 1.0 * (0.2 - 1 / 3) ** 2) / 4
    assert loss_value(base, rb, eps=0.0).item() == pytest.approx(within / 0.16, rel=1e-5)
    # scale- and sign-free: Pong's separated +/− channels score 0; one reward value: nothing to separate
    assert loss_value(-3 * sep, r, eps=0.0).item() == pytest.approx(0.0, abs=1e-6)
    pong = torch.tensor([[1.0, 0.0], [0.0, -1.0]])
    assert loss_value(pong, torch.tensor([1.0, -1.0])).item() == pytest.approx(0.0, abs=1e-2)
    assert loss_value(sep, torch.zeros(5)).item() == 0.0 and loss_value(sep, torch.ones(5)).item() == 0.0
    # the gradient moves a mixed split toward one value per channel, and leaves the sum alone
    x = torch.tensor([[0.6, 0.4], [0.09, 0.11]], requires_grad=True)  # channel 0 holds a bit more of the +1
    loss_value(x, torch.tensor([1.0, 0.2]), eps=0.0).backward()
    assert x.grad[0, 0] < 0 < x.grad[0, 1] and x.grad[1, 0] > 0 > x.grad[1, 1]
    assert float((x.grad * x.detach()).sum()) == pytest.approx(0.0, abs=1e-6)  # no pull on the scale of r̂


def test_total_loss_weights() -> None:
    cfg = DecompositionConfig(K=2, mask_type="const", lambda_mini=0.1, lambda_div1=0.2, lambda_zero=0.5, eps=0.0)
    m = torch.tensor([[[1.0, 1.0, 0.0], [0.0, 0.5, 1.0]]]).expand(3, -1, -1)
    sub = torch.tensor([[1.0, 2.0], [0.5, -0.5], [3.0, 0.0]])
    r = torch.tensor([3.0, 0.0, 0.0])
    total, logs = decomposition_loss({"sub_rewards": sub, "masks": m}, r, cfg)
    expected = 3.0 + 0.1 * (math.log(2) + math.log(1.5)) + 0.2 * -math.log(1.5) + 0.5 * 4.75
    assert total.item() == pytest.approx(expected, rel=1e-5)
    assert set(logs) >= {"L_sum", "L_mini", "L_div1", "L_zero", "mask_size"}


@pytest.mark.parametrize("gate", ["product", "shuffle"])
def test_masks_gate_what_each_head_sees(gate: str) -> None:
    torch.manual_seed(0)
    cfg = DecompositionConfig(K=2, mask_type="const", hidden=16, mask_gate=gate)
    model = RewardDecomposition(cfg, n_features=4)
    with torch.no_grad():  # channel 0 sees features {0, 1}, channel 1 sees {1, 2, 3}
        model.masks.logits.copy_(torch.tensor([[1e4, 1e4, -1e4, -1e4], [-1e4, 1e4, 1e4, 1e4]]))
    model.eval()
    x = torch.rand(5, 4, requires_grad=True)
    sub = model(x)["sub_rewards"]
    (g0,) = torch.autograd.grad(sub[:, 0].sum(), x, retain_graph=True)
    (g1,) = torch.autograd.grad(sub[:, 1].sum(), x)
    assert (g0[:, 2:] == 0).all() and g0[:, :2].abs().sum() > 0
    assert (g1[:, 0] == 0).all() and g1[:, 1:].abs().sum() > 0
    x2 = x.detach().clone()
    x2[:, 2:] = torch.rand(5, 2)  # changing features outside channel 0's mask leaves r̂_0 unchanged
    out2 = model(x2)["sub_rewards"]
    torch.testing.assert_close(out2[:, 0], sub[:, 0].detach())
    assert not torch.allclose(out2[:, 1], sub[:, 1].detach())


def test_shuffle_gate_train_mode_hides_closed_features() -> None:
    torch.manual_seed(0)
    cfg = DecompositionConfig(K=1, mask_type="const", hidden=16, mask_gate="shuffle")
    model = RewardDecomposition(cfg, n_features=2)
    with torch.no_grad():
        model.masks.logits.copy_(torch.tensor([[1e4, -1e4]]))
    x = torch.rand(64, 2, requires_grad=True)
    (g,) = torch.autograd.grad(model(x)["sub_rewards"].sum(), x)
    assert (g[:, 1] == 0).all()  # the shuffled fill is detached: no gradient path through a closed feature


def test_state_masks_on_atari_features_and_action_input() -> None:
    cfg = DecompositionConfig(K=3, mask_type="state", hidden=32, action_input=True)
    model = RewardDecomposition(cfg, n_features=3136, n_actions=6, torso=NatureCNN(), fmap_channels=64)
    obs = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    out = model(obs, torch.tensor([0, 5]))
    assert out["sub_rewards"].shape == (2, 3) and out["masks"].shape == (2, 3, 3136)
    assert ((out["masks"] > 0) & (out["masks"] < 1)).all()
    with pytest.raises(ValueError):
        model(obs)


def test_unmasked_regressor_has_no_mask_losses() -> None:
    cfg = DecompositionConfig(K=2, mask_type="none", hidden=8)
    model = RewardDecomposition(cfg, n_features=3)
    out = model(torch.rand(4, 3))
    _, logs = decomposition_loss(out, torch.zeros(4), cfg)
    assert "L_mini" not in logs and (out["masks"] == 1).all()


@pytest.mark.parametrize("fn", ["relu", "softplus"])
def test_sign_constrained_heads(fn: str) -> None:
    torch.manual_seed(0)
    cfg = DecompositionConfig(K=3, mask_type="const", hidden=8, head_signs="+,-,0", sign_fn=fn)
    out = RewardDecomposition(cfg, n_features=3)(torch.randn(256, 3) * 10)["sub_rewards"]
    assert (out[:, 0] >= 0).all() and (out[:, 1] <= 0).all()
    assert (out[:, 2] < 0).any() and (out[:, 2] > 0).any()
    with pytest.raises(ValueError):
        RewardDecomposition(DecompositionConfig(K=2, head_signs="+"), n_features=3)


def test_sign_penalty_by_hand() -> None:
    """L_sign = mean_B Σ_k ReLU(−s_k·r̂_k)²: only wrong-signed outputs of signed channels cost."""
    from rd2.decomposition import loss_sign

    sub = torch.tensor([[-1.0, 2.0, -3.0], [0.5, -0.5, 4.0]])
    # row 1: channel 0 (+) is −1 → 1; channel 1 (−) is +2 → 4; channel 2 unsigned.  row 2: nothing wrong.
    assert math.isclose(float(loss_sign(sub, ["+", "-", "0"])), (1 + 4) / 2)
    cfg = DecompositionConfig(K=3, mask_type="none", hidden=8, head_signs="+,-,0", lambda_zero=0.0)
    model = RewardDecomposition(cfg, n_features=3)
    out = model(torch.randn(64, 3) * 10)
    total, logs = decomposition_loss(out, torch.zeros(64), cfg)
    assert math.isclose(float(total.detach()), logs["L_sum"] + logs["L_sign"], rel_tol=1e-5)
    # the penalty variant leaves the head outputs free (a wrong sign is possible, and costs)
    assert logs["L_sign"] > 0


def test_mask_losses_do_not_reach_the_torso_by_default() -> None:
    """L_mini / L_div1 train the mask network only; with mask_grad_to_torso=True they also reach the torso."""
    import dataclasses

    from rd2.config import atari_decomposition
    from rd2.decomposition import RewardDecomposition, loss_div1, loss_mini
    from rd2.torso import NatureCNN

    obs = torch.randint(0, 255, (4, 4, 84, 84), dtype=torch.uint8)
    for through in (False, True):
        cfg = dataclasses.replace(atari_decomposition(), mask_grad_to_torso=through, head_signs="+,-")
        model = RewardDecomposition(cfg, n_features=3136, n_actions=6, torso=NatureCNN(), fmap_channels=64)
        out = model(obs)
        (loss_mini(out["masks"]) + loss_div1(out["masks"])).backward()
        torso_grad = sum(float(p.grad.abs().sum()) for p in model.torso.parameters() if p.grad is not None)
        mask_grad = sum(float(p.grad.abs().sum()) for p in model.masks.parameters() if p.grad is not None)
        assert mask_grad > 0
        assert (torso_grad > 0) == through
