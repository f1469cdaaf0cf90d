"""The training engine and the fast (numba) path of issue 21: kernel gradients against autograd, learning, exact
resume with one thread, the fast generator update against the torch one, the top-k kernel, the NaN guard."""

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from neurips20_common import RunDir, UserError, load_checkpoint
from neurips20_common.errors import NonFiniteError

from sdgar import kernels
from sdgar.config import make_config
from sdgar.data import load_dataset
from sdgar.evaluate import evaluate
from sdgar.models.base import TrainData
from sdgar.models.bpr import bpr_batch_loss
from sdgar.models.generator import DecomposableGenerator
from sdgar.models.mf import MF
from sdgar.models.registry import build_model, get_model
from sdgar.models.sa import sa_weights
from sdgar.models.sdgar import pointwise_loss, snis_weights
from sdgar.sampling import AliasTables
from sdgar.train import train

LR = 1e-6  # float64 parameters in the kernel calls below: the step is −lr·∇ up to O(lr)


def _mf(n_items: int, d: int = 4, seed: int = 0) -> MF:
    torch.manual_seed(seed)
    mf = MF(1, n_items, d)
    with torch.no_grad():
        mf.user.normal_(0, 1.0)
        mf.item.normal_(0, 1.0)
        mf.bias.normal_(0, 0.5)
    return mf


def _grads(mf: MF, loss: torch.Tensor) -> np.ndarray:
    mf.zero_grad()
    loss.backward()
    return np.concatenate([p.grad.numpy().ravel() for p in (mf.user, mf.item, mf.bias)])


def _run_snis(mf: MF, n_items: int, s: int, mode: int, weighting: int, through: bool, seed: int,
              x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:  # mf.score/score_scale pass through
    """−Δθ/lr of one SGD step of the kernel on the positive (user 0, item 0); user 0 has no other positive."""
    p, q, b = (t.detach().double().numpy().copy() for t in (mf.user, mf.item, mf.bias))
    before = np.concatenate([p.ravel(), q.ravel(), b.ravel()])
    ut, it = AliasTables.build(torch.from_numpy(x)), AliasTables.build(torch.from_numpy(y).T)
    x_pack = kernels.pack_alias(ut.prob.numpy(), ut.alias.numpy())
    y_pack = kernels.pack_alias(it.prob.numpy(), it.alias.numpy())
    kernels.snis_epoch(np.zeros(1, np.int64), np.zeros(1, np.int64), np.array([0, 1]),
                       np.zeros(1, np.int64), p, q, b, np.ones_like(p), np.ones_like(q), np.ones_like(b),
                       x.astype(np.float32), y.astype(np.float32), x_pack, y_pack, s, mode, weighting, 0.5, 1.0,
                       through, 1.0, lam, LR, 0, seed, 0, np.zeros((1, 3)), mf.score == "cosine", mf.score_scale)
    return (before - np.concatenate([p.ravel(), q.ravel(), b.ravel()])) / LR


@pytest.mark.parametrize("through,score", [(True, "dot"), (False, "dot"), (True, "cosine")])
def test_snis_kernel_step_is_the_gradient_of_the_sdgar_loss(through: bool, score: str) -> None:
    """Items 1 and 2 are the only non-positives; each seed's step must equal −lr·∇ of the torch loss for one of the
    possible negative sets, and some seed must draw two different items (non-uniform SNIS weights). With
    ``score="cosine"`` (f = scale·cos + b) the torch loss and the kernel both use the cosine score."""
    n_items, s, lam = 3, 2, 0.05
    rng = np.random.default_rng(0)
    x = rng.random((1, 3)) + 0.1
    x /= x.sum(1, keepdims=True)
    y = rng.random((n_items, 3)) + 0.1
    y /= y.sum(0, keepdims=True)
    mf = _mf(n_items)
    mf.score, mf.score_scale = score, 3.0
    xt, yt = torch.from_numpy(x).float(), torch.from_numpy(y).float()
    refs = {}
    for negs in itertools.product([1, 2], repeat=s):
        j = torch.tensor([negs])
        log_q = torch.log((xt[0] * yt[j]).sum(-1))

        def weights(f_neg, g, log_q=log_q):
            return snis_weights(g, log_q, 0.5, stop_grad=not through)

        loss, _ = pointwise_loss(mf, torch.tensor([0]), torch.tensor([0]), j, weights, lam, 1)
        refs[negs] = _grads(mf, loss)
    mixed = False
    for seed in range(8):
        step = _run_snis(mf, n_items, s, 1, 0, through, seed, x, y, lam)
        errs = {k: np.abs(step - g).max() / np.abs(g).max() for k, g in refs.items()}
        best = min(errs, key=errs.get)
        assert errs[best] < 2e-3, errs
        mixed |= len(set(best)) > 1
    assert mixed
    if through:  # the gradient through w matters when the two negatives differ
        assert np.abs(refs[(1, 2)] - _grads_stop(mf, x, y, lam)).max() > 1e-4


def _grads_stop(mf: MF, x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    xt, yt = torch.from_numpy(x).float(), torch.from_numpy(y).float()
    j = torch.tensor([[1, 2]])
    log_q = torch.log((xt[0] * yt[j]).sum(-1))
    loss, _ = pointwise_loss(mf, torch.tensor([0]), torch.tensor([0]), j,
                             lambda f, g: snis_weights(g, log_q, 0.5, stop_grad=True), lam, 1)
    return _grads(mf, loss)


def test_sa_kernel_step_is_the_gradient_of_the_sa_loss() -> None:
    n_items, s, lam = 2, 3, 0.01  # the only non-positive is item 1
    mf = _mf(n_items, seed=1)
    j = torch.ones(1, s, dtype=torch.long)
    loss, _ = pointwise_loss(mf, torch.tensor([0]), torch.tensor([0]), j, lambda f, g: sa_weights(f, 1.0), lam, 1)
    ref = _grads(mf, loss)
    dummy_f, dummy_t = np.zeros((1, 1), np.float32), np.zeros((1, 1), np.uint64)
    p, q, b = (t.detach().double().numpy().copy() for t in (mf.user, mf.item, mf.bias))
    before = np.concatenate([p.ravel(), q.ravel(), b.ravel()])
    kernels.snis_epoch(np.zeros(1, np.int64), np.zeros(1, np.int64), np.array([0, 1]),
                       np.zeros(1, np.int64), p, q, b, np.ones_like(p), np.ones_like(q), np.ones_like(b), dummy_f,
                       dummy_f, dummy_t, dummy_t, s, 0, 1, 0.5, 1.0, False, 1.0, lam, LR, 0, 0, 0, np.zeros((1, 3)))
    step = (before - np.concatenate([p.ravel(), q.ravel(), b.ravel()])) / LR
    np.testing.assert_allclose(step, ref, rtol=2e-3, atol=2e-4)


def test_bpr_kernel_step_is_the_gradient_of_the_bpr_loss() -> None:
    mf = _mf(2, seed=2)
    ref = _grads(mf, bpr_batch_loss(mf, 0.05, 1, torch.tensor([0]), torch.tensor([0]), torch.tensor([1])))
    p, q, b = (t.detach().double().numpy().copy() for t in (mf.user, mf.item, mf.bias))
    before = np.concatenate([p.ravel(), q.ravel(), b.ravel()])
    out = np.zeros((1, 2))
    kernels.bpr_epoch(np.zeros(1, np.int64), np.zeros(1, np.int64), np.array([0, 1]),
                      np.zeros(1, np.int64), p, q, b, np.ones_like(p), np.ones_like(q), np.ones_like(b), 1, 0.05, LR,
                      0, 0, 0, out)
    step = (before - np.concatenate([p.ravel(), q.ravel(), b.ravel()])) / LR
    np.testing.assert_allclose(step, ref, rtol=1e-3, atol=1e-5)
    assert out[0, 0] == pytest.approx(float(bpr_batch_loss(mf, 0.05, 1, torch.tensor([0]), torch.tensor([0]),
                                                           torch.tensor([1])).detach()), rel=1e-5)


def _blocks(seed: int = 1) -> tuple[TrainData, sp.csr_matrix]:
    rng = np.random.default_rng(seed)
    n_users, n_items = 90, 60
    block = (np.arange(n_users)[:, None] % 3) == (np.arange(n_items)[None, :] % 3)
    observed = block & (rng.random((n_users, n_items)) < 0.6)
    held = observed & (rng.random((n_users, n_items)) < 0.3)
    return TrainData(sp.csr_matrix((observed & ~held).astype(np.float32))), sp.csr_matrix(held.astype(np.float32))


FAST = {"sdgar": {"dis_emb_dim": 8, "gen_emb_dim": 4, "gen_sample_num_item": 16, "gen_sample_num_user": 16,
                  "gen_every": 2},
        "bpr": {"dim": 8}, "dns": {"dim": 8}, "sa": {"dim": 8}}
FAST_LR = 0.3


@pytest.mark.parametrize("name", sorted(FAST))
def test_fast_engine_learns_planted_blocks(name: str) -> None:
    train_data, test = _blocks()
    _, cfg_cls = get_model(name)
    torch.manual_seed(0)
    config = cfg_cls(**FAST[name], engine="fast", fast_lr=FAST_LR)
    model = build_model(name, train_data.n_users, train_data.n_items, config)
    gen = torch.Generator().manual_seed(0)
    kernels.set_threads(1)
    before = evaluate(model.scores, train_data.matrix, test, (10,))["NDCG@10"]
    for _ in range(8):
        stats = model.train_epoch(train_data, gen)
        assert all(math.isfinite(v) for v in stats.values()), stats
    after = evaluate(model.scores, train_data.matrix, test, (10,))["NDCG@10"]
    assert after > max(2 * before, 0.5), (before, after)


@pytest.mark.parametrize("name", sorted(FAST))
def test_fast_epoch_compiles_before_its_first_rows_and_reports_every_row(name: str) -> None:
    """The first progress report of a fast epoch is (0 rows, nan): the kernel has run on an empty slice (compiled)
    and nothing has trained yet; the bar's clock restarts there, so the first time estimate leaves compilation out."""
    from sdgar.train import RunProgress

    train_data, _ = _blocks()
    _, cfg_cls = get_model(name)
    model = build_model(name, train_data.n_users, train_data.n_items, cfg_cls(**FAST[name], engine="fast"))
    kernels.set_threads(1)
    gen = torch.Generator().manual_seed(0)
    model.train_epoch(train_data, gen)  # epoch 1 of SD-GAR also draws; the next epoch is the one reported
    calls: list[tuple[int, float]] = []
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def report(rows: int, loss: float) -> None:
        if not calls:  # at the set-up report no parameter has moved yet
            assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
        calls.append((rows, loss))

    model.progress_cb = report
    model.train_epoch(train_data, gen)
    assert calls[0][0] == 0 and math.isnan(calls[0][1]), calls[:2]
    assert sum(rows for rows, _ in calls) == train_data.n_interactions
    assert all(rows > 0 for rows, _ in calls[1:])
    bar = RunProgress(3, 0, train_data.n_interactions, echo=lambda s: None)
    bar.start_epoch()
    t0 = bar.t_epoch
    bar.report(0, float("nan"))
    assert bar.t_epoch >= t0 and bar.epoch_rows == 0
    bar.close()


def _config(epochs: int, **over):
    model = {"dis_emb_dim": 8, "gen_emb_dim": 4, "gen_sample_num_item": 8, "gen_sample_num_user": 8, "gen_every": 2,
             "engine": "fast", **over}
    return make_config("sdgar", None, {"data": "synthetic", "synthetic_size": "tiny"},
                       {"epochs": epochs, "eval_every": 2, "threads": 1, "device": "cpu"}, model)


def test_fast_engine_resume_is_bit_identical_with_one_thread(tmp_path: Path) -> None:
    data = load_dataset(_config(4).data)
    straight = RunDir.create(tmp_path, "straight")
    train(_config(4), data, straight, echo=lambda s: None)
    split = RunDir.create(tmp_path, "split")
    train(_config(2), data, split, echo=lambda s: None)
    train(_config(4), data, split, resume=True, echo=lambda s: None)
    cols = [c for c in pd.read_csv(straight.path / "metrics.csv").columns if not c.endswith("seconds")]
    pd.testing.assert_frame_equal(pd.read_csv(straight.path / "metrics.csv")[cols],
                                  pd.read_csv(split.path / "metrics.csv")[cols])
    a = load_checkpoint(straight.checkpoints / "ckpt-000000004.pt")
    b = load_checkpoint(split.checkpoints / "ckpt-000000004.pt")
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for key, value in a["extra"]["fast_acc"].items():
        assert torch.equal(value, b["extra"]["fast_acc"][key]), key


def test_nonfinite_training_stops_and_marks_nothing_best(tmp_path: Path) -> None:
    cfg = _config(4, fast_optimizer="sgd", fast_lr=1e30)
    run = RunDir.create(tmp_path, "nan")
    with pytest.raises(NonFiniteError):
        train(cfg, load_dataset(cfg.data), run, echo=lambda s: None)
    assert not (run.checkpoints / "best.pt").exists()


def test_fast_engine_is_refused_where_it_does_not_exist(tmp_path: Path) -> None:
    cfg = make_config("cml", None, {"data": "synthetic", "synthetic_size": "tiny"}, {"epochs": 1, "device": "cpu"})
    cfg.model.engine = "fast"  # CML has no fast kernel
    with pytest.raises(UserError, match="engine fast"):
        train(cfg, load_dataset(cfg.data), RunDir.create(tmp_path, "r"), echo=lambda s: None)


def test_fast_generator_update_agrees_with_the_torch_update() -> None:
    """Same three steps, independent draws: with many samples both land on the same x and y."""
    torch.manual_seed(0)
    n_users, n_items, k = 20, 30, 3
    p, q, b = torch.randn(n_users, 5), torch.randn(n_items, 5), torch.randn(n_items) * 0.1
    out = []
    for fast in (False, True):
        torch.manual_seed(1)
        g = DecomposableGenerator(n_users, n_items, k)
        update = g.update_fast if fast else g.update
        update(p, q, b, torch.Generator().manual_seed(0), 0.5, 0.1, 1.0, 3000, 3000)
        torch.testing.assert_close(g.x.sum(1), torch.ones(n_users, dtype=torch.float64))
        torch.testing.assert_close(g.y.sum(0), torch.ones(k, dtype=torch.float64))
        out.append((g.x, g.y))
    assert float((out[0][0] - out[1][0]).abs().max()) < 0.15
    assert float((out[0][1] - out[1][1]).abs().max()) < 0.2 * float(out[0][1].max())


_M64 = (1 << 64) - 1


def _mix(z: int) -> int:  # splitmix64's finaliser, as kernels._mix
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def _draw(state: int, table: np.ndarray, t: int) -> tuple[int, int]:  # kernels._draw_packed in plain Python
    state = (state + 0x9E3779B97F4A7C15) & _M64
    r = _mix(state)
    b = ((r >> 32) * table.shape[1]) >> 32
    e = int(table[t, b])
    return state, b if (r & 0xFFFFFFFF) < (e >> 31) else e & 0x7FFFFFFF


def _item_step(p: torch.Tensor, q: torch.Tensor, b: torch.Tensor, g: DecomposableGenerator, log_z: np.ndarray,
               s: int, temp: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step 3 (``kernels.gen_item_step``) on the generator's x / y: s_log, the packed π_k tables it drew from, and
    log Σ_u x_uk."""
    pi = AliasTables.build(g.x.T)
    pi_pack = kernels.pack_alias(pi.prob.numpy(), pi.alias.numpy())
    log_mass = torch.log(g.x.sum(0)).numpy()
    s_log = np.empty(tuple(g.y.shape))
    kernels.gen_item_step(p.numpy(), q.numpy(), b.numpy(), g.x.float().numpy(), g.y.float().numpy(), pi_pack,
                          log_mass, log_z, s, temp, seed, s_log)
    return s_log, pi_pack, log_mass


def test_generator_kernels_compute_the_reference_formulas_on_their_draws() -> None:
    """Replaying the kernels' random streams in Python gives their exact draws; on those draws the reference
    formulas of spec §1.6 (steps 1–3, written here with torch in float64) must give the kernels' outputs."""
    torch.manual_seed(0)
    n_users, n_items, n_comp, s, temp, seed = 3, 5, 2, 4, 0.5, 12345
    p, q, b = torch.randn(n_users, 4), torch.randn(n_items, 4), torch.randn(n_items) * 0.1
    g = DecomposableGenerator(n_users, n_items, n_comp)
    x32, y32 = g.x.float(), g.y.float()
    x_pack, y_pack = g.packed_tables()
    log_z, v = np.empty(n_users), np.empty((n_users, n_comp))
    kernels.gen_user_steps(p.numpy(), q.numpy(), b.numpy(), x32.numpy(), y32.numpy(), x_pack, y_pack, s, temp,
                           seed, log_z, v)

    def gval(u: int, j: list[int]) -> torch.Tensor:
        return torch.nn.functional.softplus((q[j] @ p[u] + b[j]).double())

    def log_qv(u: int, j: list[int]) -> torch.Tensor:
        return torch.log((x32[u] * y32[j]).sum(1).double())

    state = _mix((seed * 0x9E3779B97F4A7C15 + 0 + 1) & _M64)  # stream of chunk 0 (all users)
    for u in range(n_users):
        draws = []
        for _ in range(2 * s):
            state, k = _draw(state, x_pack, u)
            state, j = _draw(state, y_pack, k)
            draws.append(j)
        j1, j2 = draws[:s], draws[s:]
        lz = torch.logsumexp(gval(u, j1) / temp - log_qv(u, j1), 0) - math.log(s)
        assert log_z[u] == pytest.approx(float(lz), rel=1e-6)
        w = torch.exp(gval(u, j2) / temp - lz + torch.log(gval(u, j2)) - 2 * log_qv(u, j2))
        np.testing.assert_allclose(v[u], (w[:, None] * g.y[j2]).mean(0).numpy(), rtol=1e-5)

    s_log, pi_pack, log_mass = _item_step(p, q, b, g, log_z, s, temp, seed)
    state = _mix((seed * 0x9E3779B97F4A7C15 + 0 + 1) & _M64)  # chunk 0 holds all items
    for k in range(n_comp):
        for i in range(n_items):
            users = []
            for _ in range(s):
                state, u = _draw(state, pi_pack, k)
                users.append(u)
            gi = torch.stack([gval(u, [i])[0] for u in users])
            lq = torch.stack([log_qv(u, [i])[0] for u in users])
            h = gi / temp + torch.log(gi) - lq - torch.from_numpy(log_z[users])
            assert s_log[i, k] == pytest.approx(float(torch.logsumexp(h, 0) - math.log(s) + log_mass[k]), rel=1e-6)


@pytest.mark.parametrize("temp, scale", [(0.5, 1.0), (0.01, 4.0)])
def test_generator_item_step_over_tiles_and_user_blocks(temp: float, scale: float) -> None:
    """Step 3 with several tiles, 64-item chunks (the last one partial) and 64-user blocks: on the replayed draws
    (stream of chunk c, component by component, item by item) s_log is the reference logsumexp formula of spec §1.6.
    T 0.01 with scores × 4 puts g/T − log ẑ beyond ±500, so those tiles take the log-space sum."""
    torch.manual_seed(1)
    n_users, n_items, n_comp, s, seed = 150, 300, 3, 4, 777
    p, q, b = torch.randn(n_users, 8) * scale, torch.randn(n_items, 8), torch.randn(n_items) * 0.1
    g = DecomposableGenerator(n_users, n_items, n_comp)
    x32, y32 = g.x.float(), g.y.float()
    log_z = np.random.default_rng(0).normal(size=n_users)
    s_log, pi_pack, log_mass = _item_step(p, q, b, g, log_z, s, temp, seed)
    users = np.empty((n_items, n_comp, s), np.int64)
    for c in range(0, n_items, 64):
        state = _mix((seed * 0x9E3779B97F4A7C15 + c // 64 + 1) & _M64)
        for k in range(n_comp):
            for i in range(c, min(n_items, c + 64)):
                for r in range(s):
                    state, users[i, k, r] = _draw(state, pi_pack, k)
    u = torch.from_numpy(users)
    i = torch.arange(n_items).view(-1, 1, 1).expand_as(u)
    gi = torch.nn.functional.softplus(((p[u] * q[i]).sum(-1) + b[i]).double())
    lq = torch.log((x32[u] * y32[i]).sum(-1).double())
    h = gi / temp + torch.log(gi) - lq - torch.from_numpy(log_z)[u]
    ref = torch.logsumexp(h, 2) - math.log(s) + torch.from_numpy(log_mass)
    if scale > 1:
        assert float((gi / temp - torch.from_numpy(log_z)[u]).abs().max()) > 500  # the log-space path ran
    # f is a float32 dot (summed in another order than torch's); at T 0.01 its rounding is × 100 in s_log
    np.testing.assert_allclose(s_log, ref.numpy(), rtol=1e-6, atol=1e-7 / temp)


def test_topk_kernel_masks_train_items_and_orders_scores() -> None:
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((7, 50)).astype(np.float32)
    train_m = sp.csr_matrix((rng.random((7, 50)) < 0.3).astype(np.float32))
    ref = np.where(train_m.toarray() > 0, -np.inf, scores)
    out = np.empty((7, 10), np.int64)
    kernels.topk_masked(scores.copy(), np.arange(7), train_m.indptr.astype(np.int64),
                        train_m.indices.astype(np.int64), 10, out)
    np.testing.assert_array_equal(out, np.argsort(-ref, axis=1, kind="stable")[:, :10])
