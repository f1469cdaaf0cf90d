"""Agent losses on crafted cases: RD²'s TD target uses the argmax of the summed heads, HRA's the per-head argmax;
TD gradients stop at the reward heads; n-step sub-returns from the replay; every agent takes a gradient step."""

import numpy as np
import pytest
import torch
from torch import nn

from rd2.agents import ALGOS
from rd2.agents.base import TensorBatch
from rd2.agents.hra import HRA
from rd2.agents.memory import AgentReplay
from rd2.agents.rd2 import RD2Agent
from rd2.train import agent_config

# Next-state heads: per-head argmax is action 0 (head 1) and action 1 (head 2); the sum [3, 3, 4] picks action 2.
Q_NEXT = torch.tensor([[[3.0, 0.0, 2.0], [0.0, 3.0, 2.0]]])


class FixedRD2Target(nn.Module):
    """The RD2Network interface: a decomposition forward (r̂, masks, features) and heads on feature rows."""

    def decomposition(self, obs):
        b = obs.shape[0]
        return {"sub_rewards": torch.tensor([[0.5, -0.25]]).expand(b, -1), "masks": torch.ones(b, 2, 6),
                "features": obs}

    def heads(self, features, masks):
        return {"q": Q_NEXT.expand(features.shape[0], -1, -1)}

    def forward(self, obs):
        return self.heads(obs, None)

    def sub_rewards(self, next_obs):
        return self.decomposition(next_obs)["sub_rewards"]


class FixedHeads(nn.Module):
    def forward(self, obs):
        return Q_NEXT.expand(obs.shape[0], -1, -1)


def _batch(n_step: int = 1, **kw) -> TensorBatch:
    b = TensorBatch(obs=torch.zeros(1, 6), action=torch.tensor([1]), returns=torch.tensor([0.25]),
                    next_obs=torch.zeros(1, 6), discount=torch.tensor([0.5]), weights=torch.ones(1),
                    reward=torch.tensor([0.25]), reward_raw=torch.tensor([0.25]), n_used=torch.tensor([n_step]))
    for k, v in kw.items():
        setattr(b, k, v)
    return b


def test_rd2_target_uses_argmax_of_summed_q() -> None:
    torch.manual_seed(0)
    agent = RD2Agent(agent_config("rd2", "toy"), (6,), 3, torch.device("cpu"), num_components=2)
    agent.target = FixedRD2Target()
    batch = _batch(seq_obs=torch.zeros(1, 3, 6), seq_alive=torch.tensor([[True, False, False]]))
    y, a_next = agent.vector_target(batch)
    assert a_next.tolist() == [2]  # not 0 or 1, the per-head choices
    # y_k = r̂_k (one step alive) + γ^n(1 − done) · Q_k(s', a' = 2)
    assert torch.allclose(y, torch.tensor([[0.5 + 0.5 * 2.0, -0.25 + 0.5 * 2.0]]))


def test_rd2_nstep_sub_rewards_along_window() -> None:
    agent = RD2Agent(agent_config("rd2", "toy", {"gamma": 0.5}), (6,), 3, torch.device("cpu"), num_components=2)
    agent.target = FixedRD2Target()
    batch = _batch(3, seq_obs=torch.zeros(1, 3, 6), seq_alive=torch.ones(1, 3, dtype=torch.bool),
                   discount=torch.tensor([0.125]))
    y, _ = agent.vector_target(batch)
    g = 1 + 0.5 + 0.25
    assert torch.allclose(y, torch.tensor([[0.5 * g + 0.125 * 2, -0.25 * g + 0.125 * 2]]))


def test_hra_target_uses_per_head_argmax() -> None:
    agent = HRA(agent_config("hra", "toy"), (6,), 3, torch.device("cpu"), num_components=2)
    agent.target = FixedHeads()
    batch = _batch(sub_returns=torch.tensor([[1.0, -1.0]]))
    loss, _, _ = agent.loss(batch)
    q = agent.online(batch.obs)[0, :, 1].detach()
    y = torch.tensor([1.0 + 0.5 * 3.0, -1.0 + 0.5 * 3.0])  # each head bootstraps from its own greedy action
    assert torch.allclose(loss, nn.functional.smooth_l1_loss(q, y, reduction="sum"))
    agent.cfg.target_action = "sum"
    loss_sum, _, _ = agent.loss(batch)
    y_sum = torch.tensor([1.0 + 0.5 * 2.0, -1.0 + 0.5 * 2.0])
    assert torch.allclose(loss_sum, nn.functional.smooth_l1_loss(q, y_sum, reduction="sum"))


def test_td_gradient_stops_at_reward_heads() -> None:
    torch.manual_seed(0)
    agent = RD2Agent(agent_config("rd2", "toy", {"dec_weight": 0.0}), (6,), 5, torch.device("cpu"),
                     num_components=2)
    b = 8
    batch = _batch(3, obs=torch.rand(b, 6), action=torch.randint(0, 5, (b,)), returns=torch.rand(b),
                   next_obs=torch.rand(b, 6), discount=torch.full((b,), 0.9), weights=torch.ones(b),
                   reward=torch.zeros(b), n_used=torch.full((b,), 3), seq_obs=torch.rand(b, 3, 6),
                   seq_alive=torch.ones(b, 3, dtype=torch.bool))
    loss, _, _ = agent.loss(batch)
    agent.optimizer.zero_grad()
    loss.backward()
    dec = agent.online.decomposition
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in dec.heads.parameters())
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in dec.masks.parameters())  # stop_mask_grad
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in agent.online.q_heads.parameters())


def test_replay_sub_returns_and_sequence_window() -> None:
    rep = AgentReplay(64, (2,), n_step=3, gamma=0.5, num_sub_rewards=2, sequence=True)
    obs = np.zeros((1, 2), np.float32)
    rep.start(np.array([0]), obs)
    subs = [[1, 0], [0, -1], [1, 0], [0, 0], [1, -1]]
    for t, s in enumerate(subs):
        if t == 3:
            rep.start(np.array([0]), np.full((1, 2), 10, np.float32))
        nxt = np.full((1, 2), t + 1, np.float32)
        rep.add(np.array([0]), np.array([t % 3]), np.array([sum(s)], np.float32), np.array([False]),
                np.array([t == 2]), nxt, np.array([s], np.float32))  # the episode is truncated after t = 2
    batch = rep.batch(np.array([0, 1, 2]), torch.device("cpu"))
    # t=0: 1·[1,0] + .5·[0,-1] + .25·[1,0];  t=1: [0,-1] + .5·[1,0] (ends at t=2);  t=2: [1,0]
    assert torch.allclose(batch.sub_returns, torch.tensor([[1.25, -0.5], [0.5, -1.0], [1.0, 0.0]]))
    assert batch.n_used.tolist() == [3, 2, 1]
    assert torch.allclose(batch.seq_obs[0, :, 0], torch.tensor([1.0, 2.0, 3.0]))  # s_{t+1..t+3}
    assert batch.seq_alive[1].tolist() == [True, True, False]
    assert torch.allclose(batch.next_obs[:, 0], torch.tensor([3.0, 3.0, 3.0]))


def test_prioritized_replay_tracks_valid_slots() -> None:
    rep = AgentReplay(8, (2,), n_step=1, prioritized=True, alpha=1.0)
    rep.start(np.array([0]), np.zeros((1, 2), np.float32))
    for t in range(20):  # wraps around the 8-slot ring several times
        rep.add(np.array([0]), np.array([0]), np.array([1.0], np.float32), np.array([False]), np.array([False]),
                np.full((1, 2), t, np.float32))
        leaves = rep.sampler.tree.get(np.arange(8))
        assert np.array_equal(leaves > 0, rep.buffer.valid[0])
    rep.update_priorities(np.array([rep.buffer.valid_indices()[0]]), np.array([7.0]))
    idx, w = rep.sampler.sample(4, 0.5, np.random.default_rng(0))
    assert rep.buffer.valid.reshape(-1)[idx].all() and np.all(w <= 1.0)


@pytest.mark.parametrize("algo", [*sorted(ALGOS), "rd2-aux"])
def test_every_agent_takes_a_step_on_frames(algo: str) -> None:
    torch.manual_seed(0)
    algo, _, mode = algo.partition("-")
    cfg = agent_config(algo, "cpu", {"hidden": 32, **({"mode": mode} if mode else {})})
    agent = ALGOS[algo][0](cfg, (4, 84, 84), 4, torch.device("cpu"), num_components=2)
    rep = AgentReplay(100, (4, 84, 84), n_step=cfg.n_step, gamma=cfg.gamma, prioritized=cfg.prioritized,
                      num_sub_rewards=2 if agent.needs_sub_rewards else 0, sequence=agent.needs_sequence)
    rng = np.random.default_rng(0)
    rep.start(np.array([0]), rng.integers(0, 255, (1, 4, 84, 84), dtype=np.uint8))
    for t in range(20):
        r = float(t % 5 == 0)
        rep.add(np.array([0]), np.array([t % 4]), np.array([r], np.float32), np.array([t == 19]), np.array([False]),
                rng.integers(0, 255, (1, 4, 84, 84), dtype=np.uint8), np.array([[r, -r]], np.float32))
    batch = rep.sample(8, rng, torch.device("cpu"))
    if agent.needs_reward_batch:
        batch.extra["dec_obs"], batch.extra["dec_reward"] = rep.reward_batch(8, rng, torch.device("cpu"))
    before = [p.detach().clone() for p in agent.online.parameters()]
    priorities, metrics = agent.update(batch)
    assert priorities.shape == (8,) and np.all(np.isfinite(priorities)) and np.isfinite(metrics["loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.online.parameters(), strict=True))
    actions = agent.act(rng.integers(0, 255, (3, 4, 84, 84), dtype=np.uint8), 0.0, rng)
    assert actions.shape == (3,) and actions.max() < 4


def test_rd2_starts_from_a_decompose_checkpoint(tmp_path) -> None:
    """init_decomposition: the agent takes the decompose run's decomposition settings (resolved sign prior, reward
    target, balancing) and its torso / masks / reward heads, in the online and the target net."""
    import dataclasses

    from neurips20_common import RunDir, save_checkpoint

    from rd2.config import DecomposeConfig, TrainConfig, atari_decomposition
    from rd2.decompose import build_model
    from rd2.train import Trainer

    dcfg = DecomposeConfig(env="Gopher", balance="raw", reward_target="scaled",
                           decomposition=dataclasses.replace(atari_decomposition(), head_signs="+,+", hidden=32))
    torch.manual_seed(1)
    model = build_model(dcfg, (4, 84, 84), 8)
    save_checkpoint(tmp_path / "dec" / "checkpoints" / "ckpt-000000010.pt",
                    {"model": model.state_dict(), "config": dataclasses.asdict(dcfg)})
    cfg = TrainConfig(env="Gopher", algo="rd2", preset="cpu", frames=40, init_decomposition=str(tmp_path / "dec"),
                      eval_every=0, ckpt_every=0, progress=False, device="cpu")
    trainer = Trainer(cfg, agent_config("rd2", "cpu", {"hidden": 32, "buffer_size": 1000}), RunDir(tmp_path / "r"))
    agent = trainer.agent
    assert agent.cfg.decomposition.head_signs == "+,+" and not agent.auto_signs
    assert agent.cfg.reward_target == "scaled" and agent.cfg.dec_balance == "raw"
    for net in (agent.online, agent.target):
        for k, v in model.state_dict().items():
            assert torch.equal(net.decomposition.state_dict()[k], v), k
    trainer.envs.close()


def test_device_resident_frames_give_the_same_batches() -> None:
    """replay_device=device keeps the frames in a torch tensor (on CUDA: GPU-resident replay); the batches are the
    same as from the numpy store (checked here with the CPU as the device)."""
    rng = np.random.default_rng(0)
    reps = [AgentReplay(200, (4, 84, 84), num_envs=2, n_step=3, prioritized=False, sequence=True,
                        frame_device=dev) for dev in (None, torch.device("cpu"))]
    obs = rng.integers(0, 255, (2, 4, 84, 84), dtype=np.uint8)
    for rep in reps:
        rep.start(np.arange(2), obs)
    for t in range(30):
        nxt = rng.integers(0, 255, (2, 4, 84, 84), dtype=np.uint8)
        r = rng.choice([0.0, 20.0, 80.0], size=2).astype(np.float32)
        done = np.array([t == 17, False])
        for rep in reps:
            rep.add(np.arange(2), np.array([t % 4, 1]), r, done, np.zeros(2, bool), nxt)
            if done[0]:
                rep.start(np.array([0]), nxt[:1])
    idx = reps[0].buffer.valid_indices()[::3]
    a, b = (rep.batch(idx, torch.device("cpu")) for rep in reps)
    for name in ("obs", "next_obs", "returns", "discount", "seq_obs", "seq_alive", "seq_reward"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    da = reps[0].reward_batch(8, np.random.default_rng(1), torch.device("cpu"), target="scaled", scale=80.0)
    db = reps[1].reward_batch(8, np.random.default_rng(1), torch.device("cpu"), target="scaled", scale=80.0)
    assert torch.equal(da[0], db[0]) and torch.equal(da[1], db[1]) and da[1].abs().max() <= 1.0


def test_load_agent_acts_on_one_observation(tmp_path) -> None:
    from rd2 import load_agent
    from rd2.config import TrainConfig
    from rd2.train import train

    cfg = TrainConfig(env="toy", algo="rd2", preset="toy", frames=300, eval_every=0, ckpt_every=0, progress=False)
    acfg = agent_config("rd2", "toy", {"learning_starts": 100, "batch_size": 16, "hidden": 16, "q_hidden": 16,
                                       "dec_batch_size": 16, "decomposition.hidden": 16})
    train(cfg, acfg, run_dir=tmp_path / "run")
    agent = load_agent(tmp_path / "run")
    assert agent.step == 300 and agent.train_config.env == "toy" and not agent.online.training
    obs = np.random.default_rng(0).random(6).astype(np.float32)
    a = agent.act(obs)
    assert isinstance(a, int) and 0 <= a < agent.n_actions
    assert a == agent.act(obs)  # greedy: deterministic
    assert agent.act(np.stack([obs, obs])).tolist() == [a, a]


def test_rd2_dec_every_skips_the_decomposition_batch(tmp_path, monkeypatch) -> None:
    from neurips20_common import UserError

    from rd2.config import TrainConfig
    from rd2.train import train

    with pytest.raises(UserError, match="dec_every"):
        agent_config("rd2", "toy", {"dec_every": 0})
    torch.manual_seed(0)
    agent = RD2Agent(agent_config("rd2", "toy", {"dec_every": 2}), (6,), 5, torch.device("cpu"), num_components=2)
    assert [agent.wants_reward_batch(u) for u in range(5)] == [True, False, True, False, True]
    b = 8
    batch = _batch(3, obs=torch.rand(b, 6), action=torch.randint(0, 5, (b,)), returns=torch.rand(b),
                   next_obs=torch.rand(b, 6), discount=torch.full((b,), 0.9), weights=torch.ones(b),
                   reward=torch.zeros(b), n_used=torch.full((b,), 3), seq_obs=torch.rand(b, 3, 6),
                   seq_alive=torch.ones(b, 3, dtype=torch.bool))
    dec, q_heads = agent.online.decomposition, agent.online.q_heads

    def snapshot():
        return [p.detach().clone() for p in dec.parameters()], [p.detach().clone() for p in q_heads.parameters()]

    def changed(before, params):
        return any(not torch.equal(a, p) for a, p in zip(before, params, strict=True))

    dec0, q0 = snapshot()
    _, metrics = agent.update(batch)  # no decomposition batch: the TD loss alone, which stops at the reward heads
    assert "L_sum" not in metrics and changed(q0, q_heads.parameters()) and not changed(dec0, dec.parameters())
    batch.extra["dec_obs"], batch.extra["dec_reward"] = torch.rand(b, 6), torch.rand(b)
    dec0, _ = snapshot()
    _, metrics = agent.update(batch)
    assert "L_sum" in metrics and changed(dec0, dec.heads.parameters())
    # the trainer asks the replay for a decomposition batch on updates 0, 3, 6, ... only
    from rd2.agents.memory import AgentReplay as Replay

    calls = []
    original = Replay.reward_batch
    monkeypatch.setattr(Replay, "reward_batch", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    cfg = TrainConfig(env="toy", algo="rd2", preset="toy", frames=300, eval_every=0, ckpt_every=0, progress=False)
    acfg = agent_config("rd2", "toy", {"learning_starts": 100, "batch_size": 16, "hidden": 16, "q_hidden": 16,
                                       "dec_batch_size": 16, "decomposition.hidden": 16, "dec_every": 3})
    summary = train(cfg, acfg, run_dir=tmp_path / "run")
    assert summary["updates"] > 6 and len(calls) == -(-summary["updates"] // 3)
