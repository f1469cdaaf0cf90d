import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from sdgar.models.base import TrainData
from sdgar.models.generator import DecomposableGenerator
from sdgar.models.sdgar import SDGAR, SDGARConfig, snis_weights
from sdgar.sampling import AliasTables


def _train_data(n_users: int = 40, n_items: int = 60, seed: int = 0) -> TrainData:
    rng = np.random.default_rng(seed)
    dense = rng.random((n_users, n_items)) < 0.1
    dense[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    return TrainData(sp.csr_matrix(dense.astype(np.float32)))


def test_snis_weights_sum_to_one_and_follow_p_star_over_q() -> None:
    g = torch.Generator().manual_seed(0)
    ell = F.softplus(torch.randn(8, 5, generator=g))
    log_q = torch.log(torch.rand(8, 5, generator=g) / 100)
    w = snis_weights(ell, log_q, 0.5)
    assert torch.allclose(w.sum(1), torch.ones(8), atol=1e-6)
    ratio = torch.exp(ell / 0.5) / torch.exp(log_q)  # unnormalised P*/Q
    assert torch.allclose(w, ratio / ratio.sum(1, keepdim=True), atol=1e-6)
    assert torch.allclose(snis_weights(ell, log_q, 0.5, use_importance=False), torch.full((8, 5), 0.2))


def test_snis_stop_gradient_flag_changes_the_gradient() -> None:
    f = torch.randn(4, 5, requires_grad=True)
    log_q = torch.full((4, 5), -3.0)
    grads = []
    for stop in (False, True):
        g = F.softplus(f)
        (snis_weights(g, log_q, 0.5, stop_grad=stop) * g).sum().backward()
        grads.append(f.grad.clone())
        f.grad = None
    assert not torch.allclose(grads[0], grads[1])


def _naive_update(gen_model: DecomposableGenerator, p: torch.Tensor, q: torch.Tensor, b: torch.Tensor,
                  rng: torch.Generator, temp: float, lam_x: float, lam_y: float, s_c: int, s_i: int):
    """Float64 transcription of spec §1.6 (direct exponentials) drawing the same samples in the same order."""
    n_users, n_items = gen_model.x.shape[0], gen_model.y.shape[0]
    k_n = gen_model.n_components
    x, y = gen_model.x.clone(), gen_model.y.clone()
    p, q, b = p.double(), q.double(), b.double()

    def ell(u, j):
        return F.softplus((p[u] * q[j]).sum(-1) + b[j])

    users = torch.arange(n_users).unsqueeze(1).expand(-1, s_c)
    j = gen_model.sample(users, rng)
    qs = (x[users] * y[j]).sum(-1)
    z = (torch.exp(ell(users, j) / temp) / qs).mean(1)
    j = gen_model.sample(users, rng)
    qs = (x[users] * y[j]).sum(-1)
    l2 = ell(users, j)
    coef = torch.exp(l2 / temp) / z[:, None] * l2 / qs**2
    v = (coef.unsqueeze(-1) * y[j]).mean(1)
    x_new = torch.softmax(v / (lam_x * v.max(1).values.mean()), dim=1)
    pi = AliasTables.build(x_new.T)
    tables = torch.arange(k_n).view(k_n, 1, 1).expand(k_n, n_items, s_i)
    u = pi.sample(tables, rng, torch.int32).long()  # [K, M, S_i]
    items = torch.arange(n_items).view(1, n_items, 1).expand_as(u)
    l3 = ell(u, items)
    q3 = (x_new[u] * y[items]).sum(-1)
    h = torch.exp(l3 / temp) / z[u] * l3 / q3
    s = (h.mean(2) * x_new.sum(0)[:, None]).T  # [M, K]
    y_new = torch.softmax(s / (lam_y * s.max(0).values.mean()), dim=0)
    return x_new, y_new


def test_generator_update_matches_naive_reference_and_keeps_simplex() -> None:
    torch.manual_seed(0)
    n_users, n_items, k_n = 12, 20, 4
    gen_model = DecomposableGenerator(n_users, n_items, k_n)
    p, q, b = torch.randn(n_users, 3) * 0.5, torch.randn(n_items, 3) * 0.5, torch.randn(n_items) * 0.1
    ref_model = DecomposableGenerator(n_users, n_items, k_n)
    ref_model.load_state_dict(gen_model.state_dict())
    for step in range(3):
        seed = 100 + step
        gen_model.update(p, q, b, torch.Generator().manual_seed(seed), 0.5, 0.1, 1.0, 8, 6)
        x_ref, y_ref = _naive_update(ref_model, p, q, b, torch.Generator().manual_seed(seed), 0.5, 0.1, 1.0, 8, 6)
        np.testing.assert_allclose(gen_model.x.numpy(), x_ref.numpy(), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(gen_model.y.numpy(), y_ref.numpy(), rtol=1e-5, atol=1e-7)
        ref_model.x.copy_(x_ref)
        ref_model.y.copy_(y_ref)
        ref_model.rebuild_tables()
        # simplex constraints after every update
        assert torch.allclose(gen_model.x.sum(1), torch.ones(n_users, dtype=torch.float64), atol=1e-6)
        assert torch.allclose(gen_model.y.sum(0), torch.ones(k_n, dtype=torch.float64), atol=1e-6)
        assert (gen_model.x >= 0).all() and (gen_model.y >= 0).all()


def test_partition_estimate_is_unbiased() -> None:
    """ẑ_u = mean_j exp(g/T)/Q(j|u) over j ~ Q estimates Z_u = Σ_j exp(g/T)."""
    torch.manual_seed(1)
    gen_model = DecomposableGenerator(3, 15, 2)
    p, q, b = torch.randn(3, 4), torch.randn(15, 4), torch.zeros(15)
    g_all = F.softplus(p @ q.T + b).double()
    z_exact = torch.exp(g_all / 0.5).sum(1)
    users = torch.arange(3).repeat_interleave(200_000)
    j = gen_model.sample(users, torch.Generator().manual_seed(0))
    est = (torch.exp(g_all[users, j] / 0.5) / gen_model.log_q(users, j).double().exp()).view(3, -1).mean(1)
    assert torch.allclose(est, z_exact, rtol=0.03)


def test_sdgar_schedule_and_ablations() -> None:
    data = _train_data()
    cfg = SDGARConfig(dis_emb_dim=4, gen_emb_dim=3, gen_sample_num_item=5, gen_sample_num_user=5, gen_every=2,
                      batch_size=64)
    torch.manual_seed(0)
    model = SDGAR(data.n_users, data.n_items, cfg)
    g = torch.Generator().manual_seed(0)
    first = model.train_epoch(data, g)
    assert "g_seconds" in first and int(model.gen_updates) == 1  # epoch 0 update, no update after epoch 1
    model.train_epoch(data, g)
    assert int(model.gen_updates) == 2 and int(model.epochs_done) == 2
    assert math.isfinite(first["loss"]) and 1.0 <= first["ess"] <= 5.0
    for flags in ({"use_generator": False}, {"use_importance": False}, {"snis_grad": "stop"},
                  {"optimizer": "lazy_adam"}):
        torch.manual_seed(0)
        m = SDGAR(data.n_users, data.n_items, SDGARConfig(**{**cfg.__dict__, **flags}))
        stats = m.train_epoch(data, torch.Generator().manual_seed(0))
        assert math.isfinite(stats["loss"])
        if flags == {"use_generator": False}:
            assert int(m.gen_updates) == 0
        if flags == {"use_importance": False}:
            assert stats["ess"] == pytest.approx(5.0)


def test_discriminator_loss_matches_official_formula() -> None:
    data = _train_data()
    torch.manual_seed(0)
    model = SDGAR(data.n_users, data.n_items, SDGARConfig(dis_emb_dim=4, batch_size=512, dis_lambda=0.05))
    users, pos = torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5])
    negs = torch.tensor([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10], [0, 1, 2, 3, 4]])
    log_q = torch.full((3, 5), math.log(1 / 60))
    loss, _ = model.batch_loss({"u": users, "i": pos, "j": negs, "log_q": log_q}, torch.Generator())
    pu, w, bias = model.d.user, model.d.item, model.d.bias
    f_pos = (pu[users] * w[pos]).sum(1) + bias[pos]
    f_neg = (pu[users].unsqueeze(1) * w[negs]).sum(2) + bias[negs]
    weights = torch.softmax(F.softplus(f_neg) / 0.5 - log_q, 1)
    data_loss = torch.cat([-F.logsigmoid(f_pos), (weights * F.softplus(f_neg)).sum(1)]).mean()
    reg = 0.05 / 512 * 0.5 * (pu[users].square().sum() + w[pos].square().sum() + w[negs].square().sum() / 5
                              + bias[pos].square().sum() + bias[negs].square().sum() / 5)
    assert loss.item() == pytest.approx((data_loss + reg).item(), rel=1e-6)
    model.config.neg_weight = 3.0  # the issue-10 knob scales only the negative half of the data loss
    weighted, parts = model.batch_loss({"u": users, "i": pos, "j": negs, "log_q": log_q}, torch.Generator())
    assert weighted.item() == pytest.approx((data_loss + reg + 0.5 * 2.0 * parts["neg_loss"]).item(), rel=1e-6)


def test_cosine_score_is_scaled_cosine_in_training_and_in_ranking() -> None:
    """score="cosine": the training logits are scale·cos(p_u, q_j) + b_j, and the factors the evaluator and the
    generator read give the same scores."""
    torch.manual_seed(0)
    model = SDGAR(4, 6, SDGARConfig(dis_emb_dim=3, score="cosine", score_scale=7.0))
    with torch.no_grad():
        model.d.bias.normal_()
    p, q, b = model.d.user.detach(), model.d.item.detach(), model.d.bias.detach()
    cos = (p @ q.T) / (p.norm(dim=1, keepdim=True) * q.norm(dim=1))
    expected = 7.0 * cos + b
    users = torch.arange(4).repeat_interleave(6)
    items = torch.arange(6).repeat(4)
    logits = model.d.logits(model.d.users(users), *model.d.items(items)).view(4, 6)
    torch.testing.assert_close(logits.detach(), expected)
    torch.testing.assert_close(model.scores(torch.arange(4)), expected)
    assert not torch.allclose(SDGAR(4, 6, SDGARConfig(dis_emb_dim=3)).scores(torch.arange(4)), expected)
