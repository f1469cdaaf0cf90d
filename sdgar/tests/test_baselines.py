"""Baselines (spec §3.4): each sampler / weighting on a crafted case, CML's clipping, and every model learning."""

import copy
import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from sdgar.models.aobpr import FactorRanking, geometric_ranks
from sdgar.models.base import TrainData
from sdgar.models.cml import CML, CMLConfig, clip_rows, covariance_loss
from sdgar.models.dns import dns_pick
from sdgar.models.irgan import IRGAN, IRGANConfig, importance_proposal, reinforce_loss
from sdgar.models.registry import build_model, get_model
from sdgar.models.sa import sa_weights
from sdgar.models.warp import WARP, WARPConfig, harmonic_table, warp_first_violation, warp_weight
from sdgar.sampling import PositiveSet


def test_dns_picks_highest_scoring_candidate() -> None:
    cands = torch.tensor([[7, 3, 9], [4, 5, 6]])
    scores = torch.tensor([[0.1, 2.0, -1.0], [0.3, 0.2, 0.9]])
    assert dns_pick(scores, cands).tolist() == [3, 6]


def test_warp_rank_estimate_and_weight() -> None:
    table = harmonic_table(100)
    assert table[0] == 0 and table[1] == 1 and table[3] == pytest.approx(1 + 1 / 2 + 1 / 3)
    f_pos = torch.tensor([1.0, 1.0, 5.0])
    f_cand = torch.tensor([[-0.5, 0.5, 2.0, 0.1],    # 0.5 > 1 − 1 = 0: violator at the 2nd draw
                           [0.2, -1.0, -1.0, -1.0],  # 1st draw violates
                           [0.0, 1.0, 2.0, 3.9]])    # nothing above 5 − 1 = 4
    first, trials = warp_first_violation(f_pos, f_cand, margin=1.0)
    assert trials.tolist() == [2, 1, 0]
    assert first[:2].tolist() == [1, 0]
    w = warp_weight(trials, n_items=101, table=table)
    assert w[0] == pytest.approx(float(table[50]))   # rank ⌊100/2⌋ = 50
    assert w[1] == pytest.approx(float(table[100]))  # rank ⌊100/1⌋ = 100
    assert w[2] == 0.0


def test_warp_draws_are_sequential_across_growing_blocks() -> None:
    """The t-th draw of a row is the t-th item of its stream, whatever block it falls in (10, 20, 40, ...)."""
    n_items, streams = 200, [[1] * 24 + [7], [7], [1] * 100, [1] * 35 + [7]]  # item 7 is the only violator
    warp = WARP(len(streams), n_items, WARPConfig(dim=2, max_trials=100))
    with torch.no_grad():
        warp.d.user.zero_()
        warp.d.item.zero_()
        warp.d.bias.fill_(-10.0)
        warp.d.bias[7] = 10.0
    pos = {u: 0 for u in range(len(streams))}

    def draw(users: torch.Tensor) -> torch.Tensor:  # each user's next items, in order
        out = []
        for u in users.tolist():
            stream = streams[u]
            out.append(stream[pos[u]] if pos[u] < len(stream) else 1)
            pos[u] += 1
        return torch.tensor(out)

    u = torch.arange(len(streams))
    positives = PositiveSet(torch.tensor([0]), torch.tensor([0]), n_items)
    f_pos = torch.zeros(len(streams))  # f_j > f_i − 1 only for item 7
    j, trials = warp._first_violators(u, warp.d.users(u), f_pos, positives, draw)
    assert trials.tolist() == [25, 1, 0, 36]
    assert j[[0, 1, 3]].tolist() == [7, 7, 7]


def test_aobpr_rank_draw_is_truncated_geometric() -> None:
    n_items, lam, n = 20, 4.0, 200_000
    r = geometric_ranks(n, n_items, lam, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert int(r.min()) >= 0 and int(r.max()) <= n_items - 1
    counts = torch.bincount(r, minlength=n_items).double()
    # bucket r of the floor of a truncated Exp(1/λ): p(r) ∝ exp(−r/λ)
    p = torch.exp(-torch.arange(n_items, dtype=torch.float64) / lam)
    p /= p.sum()
    chi2 = float(((counts - n * p) ** 2 / (n * p)).sum())
    assert chi2 < 50.0  # 19 dof: p ≈ 1e-4 at 50


def test_aobpr_picks_item_by_factor_rank_and_sign() -> None:
    item = torch.tensor([[0.0, 0.3], [0.0, -0.9], [0.0, 0.7], [0.0, 0.1]])  # factor 0 has no spread (σ = 0)
    ranking = FactorRanking(item)
    assert ranking.order[:, 1].tolist() == [2, 0, 3, 1]
    gen = torch.Generator().manual_seed(0)
    pos_user = torch.tensor([[5.0, 2.0]] * 2000)
    neg_user = torch.tensor([[5.0, -2.0]] * 2000)
    # λ tiny → rank 0 always; σ_0 = 0 → factor 1 always (despite |p_u0| > |p_u1|)
    assert set(ranking.draw(pos_user, 1e-3, gen).tolist()) == {2}   # largest q_·1 for p_u1 > 0
    assert set(ranking.draw(neg_user, 1e-3, gen).tolist()) == {1}   # smallest q_·1 for p_u1 < 0


def test_sa_weights_detached_and_normalised() -> None:
    f = torch.tensor([[0.0, 1.0, 2.0], [3.0, 3.0, 3.0]], requires_grad=True)
    w = sa_weights(f, alpha=2.0)
    assert not w.requires_grad
    torch.testing.assert_close(w.sum(1), torch.ones(2))
    torch.testing.assert_close(w[1], torch.full((3,), 1 / 3))
    assert w[0, 2] / w[0, 1] == pytest.approx(math.exp(2.0))


def test_irgan_importance_weights() -> None:
    prob = torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]])
    rows, cols = torch.tensor([0, 1, 1]), torch.tensor([2, 0, 1])  # user 0 likes item 2; user 1 items 0 and 1
    n_pos = torch.tensor([1, 2])
    pn = importance_proposal(prob, rows, cols, n_pos, lam=0.2)
    torch.testing.assert_close(pn, torch.tensor([[0.4, 0.2, 0.4], [0.18, 0.18, 0.64]]))
    torch.testing.assert_close(pn.sum(1), torch.ones(2))
    w = prob / pn
    torch.testing.assert_close(w[0], torch.tensor([1.25, 1.25, 0.625]))
    f = torch.tensor([1.0, -2.0, 3.0])  # E_pn[w f] = E_p[f]: the correction is unbiased
    torch.testing.assert_close((pn * w * f).sum(1), (prob * f).sum(1))


def test_irgan_reinforce_raises_log_prob_of_rewarded_items() -> None:
    logits = torch.zeros(1, 4, requires_grad=True)
    log_prob = torch.log_softmax(logits, 1)
    j = torch.tensor([[0, 1]])
    loss = reinforce_loss(log_prob.gather(1, j), d_logits=torch.tensor([[5.0, -5.0]]), weight=torch.ones(1, 2),
                          mask=torch.ones(1, 2))
    loss.backward()
    assert logits.grad[0, 0] < 0 < logits.grad[0, 1]  # descent raises item 0 (reward > 0), lowers item 1


def _blocks(n_users: int = 60, n_items: int = 50, seed: int = 0) -> TrainData:
    rng = np.random.default_rng(seed)
    block = (np.arange(n_users)[:, None] % 3) == (np.arange(n_items)[None, :] % 3)
    return TrainData(sp.csr_matrix((block & (rng.random((n_users, n_items)) < 0.5)).astype(np.float32)))


def test_irgan_generates_as_many_d_negatives_as_positives_from_g() -> None:
    data = _blocks()
    torch.manual_seed(0)
    model = IRGAN(data.n_users, data.n_items, IRGANConfig(dim=4, temperature=1e-4))
    with torch.no_grad():  # well-separated scores, so that G's top item is unambiguous
        model.g.user.copy_(torch.randn(data.n_users, 4) * 5)
        model.g.item.copy_(torch.randn(data.n_items, 4) * 5)
    negs = model.generate_for_d(data, torch.Generator().manual_seed(0), chunk=7)
    assert negs.shape == (data.n_interactions,)
    users, _ = data.pairs()
    user, item, bias = model.g.factors()
    best = (user @ item.T + bias).argmax(1)  # τ → 0: the softmax puts all mass on G's top item
    assert torch.equal(negs, best[torch.from_numpy(users)])


def test_cml_clipping() -> None:
    w = torch.nn.Parameter(torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 2.0]]))
    clip_rows(w, torch.tensor([0, 1, 1]), 1.0)
    torch.testing.assert_close(w.data, torch.tensor([[0.6, 0.8], [0.3, 0.4], [0.0, 2.0]]))  # row 2 untouched
    data = _blocks()
    torch.manual_seed(0)
    model = CML(data.n_users, data.n_items, CMLConfig(dim=8, learning_rate=0.5, batch_size=64))
    assert float(model.user.detach().norm(dim=1).max()) <= 1.0 + 1e-6
    model.train_epoch(data, torch.Generator().manual_seed(0))  # a huge lr pushes rows out; clipping pulls back
    assert float(model.user.detach().norm(dim=1).max()) <= 1.0 + 1e-5
    assert float(model.item.detach().norm(dim=1).max()) <= 1.0 + 1e-5


def test_cml_covariance_loss_is_zero_for_uncorrelated_dims() -> None:
    x = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    assert float(covariance_loss(x)) == pytest.approx(0.0)
    y = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
    assert float(covariance_loss(y)) > 0


def _ndcg_at_10(model, train: TrainData, test: np.ndarray) -> float:
    from sdgar.evaluate import evaluate
    return float(evaluate(model.scores, train.matrix, sp.csr_matrix(test.astype(np.float32)), (10,))["NDCG@10"])


FAST = {"irgan": {"d_epochs": 2, "g_epochs": 2, "d_regen_every": 1, "dim": 8, "learning_rate": 0.02, "g_user_batch": 8,
                  "pretrain_dns_epochs": 0},
        "dns": {"dim": 8, "learning_rate": 0.02}, "warp": {"dim": 8, "learning_rate": 0.02},
        "aobpr": {"dim": 8, "learning_rate": 0.02, "rank_lambda": 5.0},
        "sa": {"dim": 8, "learning_rate": 0.02}, "cml": {"dim": 8, "learning_rate": 0.02},
        "als": {"factors": 8}}


@pytest.mark.parametrize("name", sorted(FAST))
def test_every_baseline_learns_planted_blocks(name: str) -> None:
    rng = np.random.default_rng(1)
    n_users, n_items = 90, 60
    block = (np.arange(n_users)[:, None] % 3) == (np.arange(n_items)[None, :] % 3)
    observed = block & (rng.random((n_users, n_items)) < 0.6)
    held = observed & (rng.random((n_users, n_items)) < 0.3)
    train = TrainData(sp.csr_matrix((observed & ~held).astype(np.float32)))
    _, cfg_cls = get_model(name)
    torch.manual_seed(0)
    model = build_model(name, n_users, n_items, cfg_cls(**{"batch_size": 64, **FAST[name]}
                                                        if name != "als" else FAST[name]))
    before = _ndcg_at_10(model, train, held)
    gen = torch.Generator().manual_seed(0)
    for _ in range(16 if name == "irgan" else 8):  # IRGAN: half of its epochs train D only
        stats = model.train_epoch(train, gen)
        assert all(math.isfinite(v) for v in stats.values())
    after = _ndcg_at_10(model, train, held)
    assert after > max(2 * before, 0.4 if name == "irgan" else 0.5), (before, after)  # G learns only via D


def test_irgan_resume_is_exact() -> None:
    """D's generated negatives and both optimisers are part of the checkpointed state."""
    data = _blocks()
    cfg = IRGANConfig(dim=4, d_epochs=3, g_epochs=2, d_regen_every=2, batch_size=32, g_user_batch=16,
                      pretrain_dns_epochs=0)
    torch.manual_seed(0)
    a = IRGAN(data.n_users, data.n_items, cfg)
    gen = torch.Generator().manual_seed(1)
    for _ in range(2):
        a.train_epoch(data, gen)
    # deep copies stand in for a checkpoint file (optimizer.load_state_dict keeps same-device tensors as they are)
    state, extra, rng = copy.deepcopy(a.state_dict()), copy.deepcopy(a.extra_state_dict()), gen.get_state()
    b = IRGAN(data.n_users, data.n_items, cfg)
    b.load_state_dict(state)
    b.load_extra_state_dict(extra)
    gen_b = torch.Generator()
    gen_b.set_state(rng)
    for _ in range(4):  # crosses a regeneration of D data, a D→G switch and a new cycle
        a.train_epoch(data, gen)
        b.train_epoch(data, gen_b)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(va, vb, msg=k)
