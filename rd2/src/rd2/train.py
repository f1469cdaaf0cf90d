"""`rd2 train`: one training loop for every agent (dqn, rainbow, rd2, drdrl, hra) on Atari or the toy game.

Loop (CleanRL style, vectorized): one batched forward picks the actions of all N envs (ε-greedy / noisy) → the envs
step (ale-py's native vector env runs them in C++ threads while the learner updates) → store (raw + clipped reward,
given sub-rewards) → one gradient step per ``train_freq`` env steps (the replay ratio does not depend on N; frames
are counted over all envs) on a (prioritized) n-step batch → target sync on the step counter → periodic evaluation
and checkpoints. Writes to the run dir: config.json, progress.csv (one row per finished episode: raw and clipped
return, per-component returns, loss means, SPS, ε), eval.csv, checkpoints/.

Exact resume: every episode of env i is reset with a seed derived from (seed, i, episode number), and periodic
checkpoints are taken when env 0 has just finished an episode, so the model, optimizer, target, RNGs, counters,
priorities and (with ``--save-buffer``) the replay restore the run bit for bit on CPU with ``num_envs=1``.
The final checkpoint of a run is taken mid-episode; a run resumed from it starts new episodes.

NaN/Inf: the loss of every update and the parameters every ``nan_check_every`` updates are checked; a non-finite
value, or a mean Q beyond 10× the largest possible discounted return (divergence before overflow), stops the run
(exit 3) naming the update and the last finite checkpoint, and nothing non-finite is saved.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from neurips20_common import (
    CheckpointManager,
    MetricsLogger,
    RunDir,
    RunningMean,
    UserError,
    capture_rng_state,
    load_checkpoint,
    progress,
    restore_rng_state,
    seed_everything,
    select_device,
)
from neurips20_common.cli import prepare_run_dir, resolve_checkpoint
from neurips20_common.errors import NonFiniteError
from neurips20_common.guard import FiniteGuard

from rd2.agents import ALGOS, Agent
from rd2.agents.memory import AgentReplay
from rd2.config import TrainConfig, agent_config, validate_agent, validate_train
from rd2.envs.agent_envs import AgentEnvs, episode_seed, frame_skip, is_toy, make_env, true_channels
from rd2.evaluate import build_agent, legacy_agent_config, run_episodes

__all__ = ["TrainConfig", "Trainer", "agent_config", "configs_from_run", "episode_seed", "is_toy", "make_env",
           "train"]


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep freed blocks instead of returning them to the OS (M_MMAP_THRESHOLD 32 MiB, its
    maximum, and M_TRIM_THRESHOLD 1 GiB). By default an update's activation and gradient tensors (MBs each) are
    mmap'ed and unmapped again, so every update page-faults its memory anew: measured on the 2-core CPU, the
    uint8 → float conversion of a 32-row batch took 2.7 ms in an update vs 0.2 ms with the memory kept. Process-wide;
    returns False where this is not glibc (nothing changed)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        return False
    if mallopt is None:
        return False
    return bool(mallopt(-3, 32 << 20)) and bool(mallopt(-1, 1 << 30))  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD


_STOP = {"requested": False, "in_loop": False}


def request_stop(signum: int | None = None, frame: Any = None) -> None:
    """SIGTERM handler of `rd2 train`: inside the training loop it stops the run like Ctrl-C (checkpoint, summary);
    during start-up (imports, env and network building) or the final save it is held, and the loop stops before
    its first step, so a run stopped that early still leaves a checkpoint it can resume from."""
    if _STOP["in_loop"]:
        raise KeyboardInterrupt
    _STOP["requested"] = True


def linear(start: float, end: float, steps: int, t: int) -> float:
    return end if steps <= 0 else start + (end - start) * min(1.0, t / steps)


def decomposition_init(cfg: TrainConfig, acfg: Any) -> tuple[Any, dict[str, torch.Tensor], int]:
    """``init_decomposition``: the agent config that matches a `rd2 decompose` checkpoint (its decomposition
    settings, reward target and balancing) and the model state to start from."""
    from rd2.config import config_from_dict as decompose_config
    from rd2.envs.atari import resolve_env_id

    if cfg.algo != "rd2":
        raise UserError(f"init_decomposition starts an RD² agent's decomposition; --algo {cfg.algo} has none")
    ckpt = resolve_checkpoint(cfg.init_decomposition, prefer="latest")
    state = load_checkpoint(ckpt, map_location="cpu")
    if "model" not in state or "config" not in state:
        raise UserError(f"{ckpt} is not a `rd2 decompose` checkpoint (no model/config inside)")
    dcfg = decompose_config(state["config"])
    if is_toy(cfg.env) or resolve_env_id(dcfg.env).game != resolve_env_id(cfg.env).game:
        raise UserError(f"{ckpt} decomposes {dcfg.env}, not {cfg.env}; pass a `rd2 decompose` run of {cfg.env}")
    if dcfg.decomposition.head_signs == "auto" or dcfg.reward_input != "next":
        raise UserError(f"{ckpt}: the decomposition must predict from s_(t+1) with resolved sign priors")
    target = dcfg.reward_target if dcfg.reward_target in ("scaled", "clipped") else "scaled"
    acfg = dataclasses.replace(acfg, decomposition=dcfg.decomposition, reward_target=target,
                               dec_balance=dcfg.balance, dec_nonzero_fraction=dcfg.nonzero_fraction)
    return acfg, state["model"], dcfg.decomposition.K


class Trainer:
    def __init__(self, cfg: TrainConfig, acfg: Any, run: RunDir) -> None:
        validate_train(cfg)
        validate_agent(acfg)
        init_state = None
        if cfg.init_decomposition:
            acfg, init_state, k = decomposition_init(cfg, acfg)
            cfg = dataclasses.replace(cfg, num_components=k)
        self.cfg, self.acfg, self.run = cfg, acfg, run
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        keep_freed_memory()
        self.device = select_device(cfg.device)
        gens = seed_everything(cfg.seed)
        self.rng: np.random.Generator = gens["numpy"]
        self.envs = AgentEnvs(cfg)
        self.obs_shape = self.envs.observation_shape
        self.n_actions = self.envs.n_actions
        self.agent: Agent = build_agent(cfg, acfg, self.obs_shape, self.n_actions, self.device)
        if init_state is not None:
            self.agent.init_decomposition(init_state)
        if cfg.compile:
            self.agent.online.compile()
            self.agent.target.compile()
        self.channels = true_channels(cfg)
        frame_device = self.device if cfg.replay_device == "device" else None
        self.replay = AgentReplay(acfg.buffer_size, self.obs_shape, cfg.num_envs, acfg.n_step, acfg.gamma,
                                  acfg.prioritized, acfg.alpha, len(self.channels.names)
                                  if self.agent.needs_sub_rewards else 0, self.agent.needs_sequence, frame_device)
        self.skip = frame_skip(cfg)
        self.total_steps = cfg.frames // self.skip
        if self.total_steps < 1:
            raise UserError(f"--frames {cfg.frames} is less than one agent step ({self.skip} frames)")
        self.step = 0  # agent steps (transitions, over all envs)
        self.updates = 0
        self.pending = 0  # agent steps since the last update (an update every train_freq steps)
        self.episodes = np.zeros(cfg.num_envs, np.int64)  # finished episodes per env
        self.next_eval = cfg.eval_every // self.skip if cfg.eval_every else 0
        self.next_ckpt = cfg.ckpt_every // self.skip if cfg.ckpt_every else 0
        self.warmup_until = acfg.learning_starts
        self.ckpts = CheckpointManager(run.checkpoints, keep_last=cfg.keep_last)
        self.guard = FiniteGuard(every=cfg.nan_check_every, checkpoints=self.ckpts, what="update")
        self.means = RunningMean()
        self.exact = self.buffer_restored = False
        self.boundary = False  # the restored checkpoint was taken at an episode end of env 0

    # --- checkpoints ------------------------------------------------------------------------------------------
    def state(self, boundary: bool) -> dict[str, Any]:
        return {"train_config": dataclasses.asdict(self.cfg), "agent_config": dataclasses.asdict(self.acfg),
                "algo": self.cfg.algo, "obs_shape": list(self.obs_shape), "n_actions": self.n_actions,
                "num_components": self.agent.num_components, "agent": self.agent.state_dict(),
                "counters": {"step": self.step, "updates": self.updates, "pending": self.pending,
                             "episodes": self.episodes.tolist(), "episodes_started": self.envs.episodes.tolist(),
                             "next_eval": self.next_eval, "next_ckpt": self.next_ckpt,
                             "warmup_until": self.warmup_until},
                "priorities": None if self.replay.sampler is None else self.replay.sampler.state_dict(),
                "rng": capture_rng_state({"numpy": self.rng}), "episode_boundary": boundary,
                "has_buffer": self.cfg.save_buffer}

    def save(self, boundary: bool) -> Path:
        self.guard.check_module(self.step, self.agent.online, self.agent.target, force=True)
        if self.cfg.save_buffer:
            self.run.checkpoints.mkdir(parents=True, exist_ok=True)
            self.replay.save(self.run.checkpoints / f"replay-{self.step:09d}")
        path = self.ckpts.save(self.step, self.state(boundary))
        if self.cfg.save_buffer:  # drop replay files whose checkpoint was rotated out
            kept = {p.stem.split("-")[1] for p in self.run.checkpoints.glob("ckpt-*.pt")}
            for f in self.run.checkpoints.glob("replay-*.npz"):
                if f.name.split("-")[1].split(".")[0] not in kept:
                    f.unlink(missing_ok=True)
        return path

    def restore(self, path: Path) -> bool:
        """Load a checkpoint; returns whether it was taken at an episode boundary (exact resume)."""
        state = load_checkpoint(path, map_location="cpu")  # RNG and sum-tree states stay on the CPU
        self.agent.load_state_dict(state["agent"])
        c = state["counters"]
        self.step, self.updates, self.pending = int(c["step"]), int(c["updates"]), int(c["pending"])
        self.episodes = np.asarray(c["episodes"], np.int64)
        started = np.asarray(c.get("episodes_started", self.episodes + 1), np.int64)
        self.next_eval, self.next_ckpt = int(c["next_eval"]), int(c["next_ckpt"])
        self.warmup_until = int(c["warmup_until"])
        replay_file = path.parent / f"replay-{self.step:09d}"
        self.buffer_restored = bool(state.get("has_buffer")) and replay_file.with_suffix(".buffer.npz").exists()
        if self.buffer_restored:
            self.replay.load(replay_file)
            if state["priorities"] is not None and self.replay.sampler is not None:
                self.replay.sampler.load_state_dict(state["priorities"])
        else:  # refill before learning again
            self.warmup_until = self.step + self.acfg.learning_starts
        restore_rng_state(state["rng"], {"numpy": self.rng})
        self.boundary = bool(state["episode_boundary"])
        # env 0 replays the reset it had just done (same seed), the others start their next episode
        self.envs.episodes = started.copy()
        if self.boundary:
            self.envs.episodes[0] -= 1
        self.exact = self.boundary
        return self.exact

    # --- the loop ---------------------------------------------------------------------------------------------
    def epsilon(self) -> float:
        """ε of the behaviour policy. Uniform random actions fill the replay before learning starts (the Dopamine
        convention): a noisy net's noise is only redrawn after updates, so during the warm-up it would repeat one
        action, and in Gopher that never ends an episode."""
        a = self.acfg
        if self.step < a.learning_starts:
            return 1.0
        return linear(a.eps_start, a.eps_end, a.eps_decay_steps, self.step)

    def evaluate(self, log) -> dict[str, float]:
        rows = run_episodes(self.agent, self.cfg, self.cfg.eval_episodes, self.acfg.eps_eval,
                            seed=self.cfg.seed + 1_000_003)
        out: dict[str, float] = {"step": self.step, "frames": self.step * self.skip}
        for key in rows[0]:
            if key.startswith("ret") or key.startswith("return") or key == "length":
                vals = np.array([r.get(key, 0.0) for r in rows])
                out[f"{key}_mean"], out[f"{key}_std"] = float(vals.mean()), float(vals.std())
        log.log(out)
        return out

    def train(self, resume_from: Path | None = None) -> dict[str, Any]:
        cfg, acfg, n = self.cfg, self.acfg, self.cfg.num_envs
        # the replay already holds the reset frames when a checkpoint at an episode end restored it
        in_replay = False
        if resume_from is not None:
            self.restore(resume_from)
            in_replay = self.exact and self.buffer_restored
        resume_step = self.step if resume_from is not None else None
        tb = self.run.path / "tb" if cfg.tensorboard else None
        progress_log = MetricsLogger(self.run.file("progress.csv"), resume_step=resume_step,
                                     tensorboard_dir=None if tb is None else tb / "progress")
        eval_log = MetricsLogger(self.run.file("eval.csv"), resume_step=resume_step,
                                 tensorboard_dir=None if tb is None else tb / "eval")
        ids = np.arange(n)
        obs = self.envs.reset(ids)
        if not in_replay:
            self.replay.start(ids, obs)
        fresh = np.ones(n, bool)  # obs[i] is the first observation of an episode
        names, k_true = self.channels.names, len(self.channels.names)
        learned = self.agent.has_learned_rewards
        k_hat = self.agent.num_components if learned else 0
        ep = _EpisodeStats(n, k_true, k_hat)
        last_return = float("nan")
        bar = progress(total=self.total_steps, initial=min(self.step, self.total_steps), desc=f"{cfg.algo} {cfg.env}",
                       unit="step", disable=None if cfg.progress else True)
        t0, s0 = time.perf_counter(), self.step
        sps = 0.0
        interrupted = False
        learn_from = max(self.warmup_until, acfg.batch_size)
        try:
            _STOP["in_loop"] = True
            if _STOP["requested"]:  # a stop that arrived during start-up
                _STOP["requested"] = False
                raise KeyboardInterrupt
            while self.step < self.total_steps:
                eps = self.epsilon()
                actions, hat_obs = self.agent.select_actions(obs, eps, self.rng)
                if learned and hat_obs is not None:  # r̂(s_t) belongs to the transition that led to s_t
                    ep.hat[~fresh] += hat_obs[~fresh]
                self.envs.send(actions)
                # learning while the envs step: one update per train_freq agent steps after the warm-up
                if self.step >= learn_from:
                    self.pending += n
                    while self.pending >= acfg.train_freq:
                        self._learn()
                        self.pending -= acfg.train_freq
                res = self.envs.recv()
                new_step = self.step + n
                # target sync (on the step counter, so it is the same with any num_envs)
                if (new_step // acfg.target_update) != (self.step // acfg.target_update):
                    self.agent.sync_target()
                self.step = new_step
                bar.update(n)
                subs = self.channels.split(res.reward, res.infos) if names else None
                # HRA learns from the clipped sub-rewards, like every agent learns from the clipped reward
                self.replay.add(ids, actions, res.reward, res.terminated, res.truncated, res.next_obs,
                                None if subs is None else np.sign(subs))
                done = res.terminated | res.truncated
                ep.add(res.reward, subs)
                if learned and (hat_obs is None or done.any()):  # r̂ of final observations (or every one)
                    rows = ids if hat_obs is None else np.flatnonzero(done)
                    ep.hat[rows] += self.agent.learned_sub_rewards(obs[rows], actions[rows], res.next_obs[rows])
                obs = res.next_obs
                boundary0 = False
                finished = np.flatnonzero(done)
                if len(finished):
                    elapsed = time.perf_counter() - t0
                    sps = (self.step - s0) / elapsed if elapsed > 0 else 0.0
                    for i in finished:
                        row = ep.row(int(i), names)
                        last_return = row["return_raw"]
                        progress_log.log({"step": self.step, "frames": self.step * self.skip, "env": int(i),
                                          "episode": int(self.episodes[i]), **row, "epsilon": eps, "sps": sps,
                                          "updates": self.updates, **self.means.means()})
                        self.means.reset()
                        self.episodes[i] += 1
                        ep.clear(int(i))
                    new_obs = self.envs.reset(finished)
                    self.replay.start(finished, new_obs)
                    obs = obs.copy()
                    obs[finished] = new_obs
                    boundary0 = bool(done[0])
                fresh = done
                if self.next_eval and self.step >= self.next_eval:
                    self.evaluate(eval_log)
                    self.next_eval += cfg.eval_every // self.skip
                if boundary0 and self.next_ckpt and self.step >= self.next_ckpt:
                    self.save(boundary=True)
                    while self.next_ckpt <= self.step:
                        self.next_ckpt += cfg.ckpt_every // self.skip
                if self.step % 200 < n:
                    elapsed = time.perf_counter() - t0
                    sps = (self.step - s0) / elapsed if elapsed > 0 else 0.0
                    bar.set_postfix(sps=f"{sps:.0f}", ret=f"{last_return:.1f}", eps=f"{eps:.2f}")
        except KeyboardInterrupt:  # Ctrl-C / SIGTERM: keep what was learned
            interrupted = True
        except NonFiniteError:
            bar.close()
            self.envs.close()
            raise
        finally:
            _STOP["in_loop"] = False
        bar.close()
        elapsed = time.perf_counter() - t0
        self.envs.close()
        final = self.save(boundary=False)
        # episodes still running when training stopped never reach progress.csv; report them (a policy that stalls
        # the game shows up here, not in the learning curve)
        unfinished = [{"env": i, "length": int(ep.length[i]), "return_raw": float(ep.raw[i])}
                      for i in range(n) if ep.length[i] > 0]
        return {"step": self.step, "frames": self.step * self.skip, "updates": self.updates,
                "sps": (self.step - s0) / elapsed if elapsed > 0 else 0.0, "checkpoint": str(final),
                "last_return": last_return, "interrupted": interrupted, "unfinished": unfinished}

    def _learn(self) -> None:
        acfg = self.acfg
        beta = linear(acfg.beta0, 1.0, self.total_steps, self.step)
        self.agent.prepare(self.replay)
        batch = self.replay.sample(acfg.batch_size, self.rng, self.device, beta)
        if self.agent.needs_reward_batch and self.agent.wants_reward_batch(self.updates):
            batch.extra["dec_obs"], batch.extra["dec_reward"] = self.replay.reward_batch(
                acfg.dec_batch_size, self.rng, self.device, **self.agent.reward_batch_kwargs())
        priorities, metrics = self.agent.update(batch)
        self.updates += 1
        self.means.update(**metrics)
        self.guard.check(self.updates, **{k: v for k, v in metrics.items() if k == "loss" or k.startswith("L_")})
        # divergence short of overflow: |Q| beyond 10× the largest discounted return of rewards in [-1, 1] per
        # channel (clipped or scaled targets) cannot come from learning; it only grows until it overflows
        bound = 10.0 * max(self.agent.num_components, 1) / (1.0 - min(acfg.gamma, 0.999))
        if abs(metrics.get("q", 0.0)) > bound:
            raise NonFiniteError(
                f"training diverged at update {self.updates}: mean Q = {metrics['q']:.3g} exceeds {bound:.0f} "
                f"(10x the largest possible discounted return); training stopped (the last finite checkpoint is "
                f"{self.ckpts.latest() or 'none yet'}). Lower the learning rate (see --set lr=...) and start again")
        self.replay.update_priorities(batch.extra["index"].cpu().numpy(), priorities)
        self.guard.check_module(self.updates, self.agent.online)


class _EpisodeStats:
    """Running returns of the N current episodes: raw, clipped, length, true channels, learned channels."""

    def __init__(self, n: int, k_true: int, k_hat: int) -> None:
        self.raw, self.clipped = np.zeros(n), np.zeros(n)
        self.length = np.zeros(n, np.int64)
        self.true, self.hat = np.zeros((n, k_true)), np.zeros((n, k_hat))

    def add(self, reward: np.ndarray, subs: np.ndarray | None) -> None:
        self.raw += reward
        self.clipped += np.sign(reward)
        self.length += 1
        if subs is not None:
            self.true += subs

    def row(self, i: int, names: tuple[str, ...]) -> dict[str, float]:
        out: dict[str, float] = {"return_raw": float(self.raw[i]), "return_clipped": float(self.clipped[i]),
                                 "length": int(self.length[i])}
        out.update({f"ret_{name}": float(v) for name, v in zip(names, self.true[i], strict=True)})
        out.update({f"ret_hat{k}": float(v) for k, v in enumerate(self.hat[i])})
        return out

    def clear(self, i: int) -> None:
        self.raw[i] = self.clipped[i] = self.length[i] = 0
        self.true[i] = 0
        self.hat[i] = 0


# --- entry points used by the CLI ---------------------------------------------------------------------------------
def _versions() -> dict[str, str]:
    import ale_py

    import rd2

    return {"rd2": rd2.__version__, "torch": torch.__version__, "numpy": np.__version__,
            "gymnasium": gym.__version__, "ale_py": ale_py.__version__}


def train(cfg: TrainConfig, acfg: Any, run_dir: str | Path | None = None, resume: str | Path | None = None,
          force: bool = False) -> dict[str, Any]:
    """Train from scratch into ``run_dir`` (default runs/<algo>-<env>-s<seed>; a dir that holds a run is refused
    unless ``force``, which moves it aside), or continue the run in ``resume`` from its newest checkpoint
    (``cfg.frames`` may be raised to train longer)."""
    if resume is not None:
        cfg = dataclasses.replace(cfg, init_decomposition="")  # config.json already holds the decomposition config
        run = RunDir.open(resume)
        latest = CheckpointManager(run.checkpoints).require_latest("start a new run instead")
    else:
        if run_dir is None:
            run_dir = Path("runs") / f"{cfg.algo}-{cfg.env.replace('/', '_')}-s{cfg.seed}"
        run = prepare_run_dir(run_dir, force=force)
        latest = None
    trainer = Trainer(cfg, acfg, run)
    run.write_config({"train": trainer.cfg, "agent": trainer.acfg},
                     extra={"versions": _versions(), "device": str(trainer.device),
                            "env_backend": trainer.envs.backend})
    summary = trainer.train(resume_from=latest)
    summary["run_dir"] = str(run.path)
    summary["exact_resume"] = trainer.exact if latest is not None else None
    return summary


def configs_from_run(run_dir: str | Path) -> tuple[TrainConfig, Any]:
    """The configs a run was started with (its config.json)."""
    from rd2.agents.base import config_from_dict

    data = RunDir.open(run_dir).read_config()
    try:
        cfg = config_from_dict(TrainConfig, data["train"])
        acfg = config_from_dict(ALGOS[cfg.algo][1], legacy_agent_config(cfg.algo, data["agent"]))
    except (KeyError, TypeError) as exc:
        raise UserError(f"{Path(run_dir) / 'config.json'} is not an `rd2 train` config ({exc})") from None
    return cfg, acfg
