import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from neurips20_common import load_checkpoint, save_checkpoint

from sarigan.config import get_preset
from sarigan.data import load_shapes
from sarigan.losses import path_length_penalty
from sarigan.networks import Generator
from sarigan.train import Trainer


@pytest.fixture(scope="module")
def shapes8():
    return load_shapes(8, n=256)


@pytest.mark.parametrize("grouping", ["uniform", "none", "learned"])
def test_groupings_build_and_step(shapes8, grouping: str) -> None:
    cfg = get_preset("tiny").replace(grouping=grouping)
    tr = Trainer(cfg, shapes8, seed=0)
    before = {k: v.clone() for k, v in tr.G.state_dict().items()}
    for _ in range(2):
        stats = tr.train_step()
    assert all(torch.isfinite(torch.tensor(v)) for v in stats.values())
    changed = [k for k, v in tr.G.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("convs.") for k in changed) and any(k.startswith("mapping.") for k in changed)
    assert ("l_sim" in stats) == (grouping == "learned")
    assert tr.nimg == 2 * cfg.batch and tr.step == 2


def test_path_length_double_backward_on_cpu() -> None:
    torch.manual_seed(0)
    cfg = get_preset("tiny")
    G = Generator(cfg)
    w = G.mapping(torch.randn(4, cfg.z_dim))
    ws = w[:, None].expand(-1, G.n_latent, -1)
    img, _, _ = G.synthesis(ws)
    penalty, new_mean, length = path_length_penalty(img, ws, torch.zeros(()), 0.01)
    penalty.backward()
    assert length > 0 and torch.isclose(new_mean, 0.01 * length)
    grads = {n: p.grad for n, p in G.named_parameters()}
    assert grads["convs.0.conv.weight"] is not None and grads["convs.0.conv.weight"].abs().sum() > 0
    assert grads["mapping.net.1.weight"].abs().sum() > 0  # through W+ back into the mapping network
    assert all(g is None or torch.isfinite(g).all() for g in grads.values())


def test_mixing_swap_and_mi_targets(shapes8) -> None:
    d = get_preset("tiny").w_dim
    tr = Trainer(get_preset("tiny").replace(mixing=1.0, swap_prob=1.0), shapes8)
    ws, target, w1 = tr.sample_ws(3)
    assert torch.allclose(target[:, :d], w1[:, :d]) and not torch.allclose(target[:, d:], w1[:, d:])
    assert torch.allclose(ws[:, 0], target) and torch.allclose(ws[:, -1], target)
    tr = Trainer(get_preset("tiny").replace(mixing=1.0), shapes8)
    ws, target, w1 = tr.sample_ws(3)
    assert target is None and torch.allclose(ws[:, 0], w1) and not torch.allclose(ws[:, -1], w1)
    tr = Trainer(get_preset("tiny").replace(mixing=1.0, mi_on_mixed=True), shapes8)
    ws, target, _ = tr.sample_ws(3)
    assert torch.allclose(target, ws.mean(1))
    tr = Trainer(get_preset("tiny").replace(mixing=0.0), shapes8)
    ws, target, w1 = tr.sample_ws(3)
    assert torch.equal(target, w1)


def test_resume_is_exact(shapes8, tmp_path: Path) -> None:
    cfg = get_preset("tiny").replace(mixing=0.5, d_reg_every=2, g_reg_every=2)
    a = Trainer(cfg, shapes8, seed=3)
    for _ in range(3):
        a.train_step()
    save_checkpoint(tmp_path / "c.pt", a.state_dict())
    for _ in range(4):
        a.train_step()
    b = Trainer(cfg, shapes8, seed=99)  # different init and RNG: everything must come from the checkpoint
    b.load_state_dict(load_checkpoint(tmp_path / "c.pt"))
    for _ in range(4):
        b.train_step()
    for name in ("G", "D", "G_ema"):
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), f"{name}.{k} differs after resume"
    assert a.step == b.step and a.nimg == b.nimg and torch.equal(a.pl_mean, b.pl_mean)
    ea, eb = a.opt_g.state_dict()["state"], b.opt_g.state_dict()["state"]
    assert all(torch.equal(ea[k]["exp_avg_sq"], eb[k]["exp_avg_sq"]) for k in ea)
    assert not torch.equal(a.G.w_avg, torch.zeros_like(a.G.w_avg))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        cfg = get_preset("tiny").replace(d_reg_every=2, g_reg_every=2)
        tr = Trainer(cfg, load_shapes(8, n=256), seed=0)
        first = tr.sampler.next()
        for _ in range(3):
            tr.train_step()
        flat = torch.cat([p.detach().flatten() for p in [*tr.G.parameters(), *tr.D.parameters()]])
        state = tr.state_dict()  # gathers every rank's RNG state
        torch.save({"flat": flat, "first": first, "n_rng": len(state["rng"]), "w_avg": tr.G.w_avg}, f"{out}/{rank}.pt")
    finally:
        dist.destroy_process_group()
    os._exit(0)  # skip teardown: gloo sometimes aborts in C++ destructors after a clean run (torch 2.13)


def test_two_process_gloo_data_parallel(tmp_path: Path) -> None:
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = torch.load(tmp_path / "0.pt"), torch.load(tmp_path / "1.pt")
    assert not torch.equal(r0["first"], r1["first"])  # each rank draws its own share of the batch
    assert torch.equal(r0["flat"], r1["flat"])  # averaged gradients keep the replicas identical
    assert torch.equal(r0["w_avg"], r1["w_avg"]) and r0["n_rng"] == 2
    single = Trainer(get_preset("tiny"), load_shapes(8, n=256), seed=0)
    flat0 = torch.cat([p.detach().flatten() for p in [*single.G.parameters(), *single.D.parameters()]])
    assert not torch.equal(flat0, r0["flat"])  # it did train
