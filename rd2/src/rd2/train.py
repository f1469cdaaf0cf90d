"""`rd2 train`: one training loop for every agent (dqn, rainbow, rd2, drdrl, hra) on Atari or the toy game.

Loop (CleanRL style): act (ε-greedy / noisy) → step the envs → store (raw + clipped reward, given sub-rewards)
→ every ``train_freq`` steps one gradient step on a (prioritized) n-step batch → target sync → periodic evaluation
and checkpoints. Writes to the run dir: config.json, progress.csv (one row per finished episode: raw and clipped
return, per-component returns, loss means, SPS, ε), eval.csv, checkpoints/.

Exact resume: every episode of env i is reset with a seed derived from (seed, i, episode number), and periodic
checkpoints are taken when env 0 has just finished an episode, so the model, optimizer, target, RNGs, counters,
priorities and (with ``--save-buffer``) the replay restore the run bit for bit on CPU with ``num_envs=1``.
The final checkpoint of a run is taken mid-episode; a run resumed from it starts new episodes.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
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

from rd2.agents import ALGOS, Agent, AgentConfig
from rd2.agents.memory import AgentReplay


@dataclass
class TrainConfig:
    """Run-level settings; the learning hyperparameters live in the agent's config dataclass."""

    env: str = "Pong"  # Pong, ALE/Pong-v5, PongNoFrameskip-v4, or toy
    algo: str = "rd2"
    preset: str = "atari"  # see PRESETS
    frames: int = 10_000_000  # emulator frames (agent steps × 4 on Atari; = steps on the toy game)
    seed: int = 1
    num_envs: int = 1
    eval_every: int = 250_000  # frames; 0 = never
    eval_episodes: int = 5
    ckpt_every: int = 250_000  # frames; taken at the next episode end of env 0
    keep_last: int = 3
    save_buffer: bool = False  # also write the replay at each checkpoint (large on Atari)
    sticky: float = 0.0  # repeat_action_probability (0.25 = the v5 convention)
    max_episode_frames: int = 108_000
    toy_size: int = 8
    num_components: int = 2  # K channels (rd2, drdrl; hra uses the env's true channels)
    device: str = "auto"
    threads: int = 1  # torch.set_num_threads (1 suits small nets on a shared CPU); 0 = torch default
    progress: bool = True


# Named presets: overrides of the agent dataclass defaults (which are the standard Atari values, spec §6.4/§7.1).
PRESETS: dict[str, dict[str, Any]] = {
    "atari": {},
    # A few hundred thousand frames on 2 CPU cores: small replay, early learning, fast ε decay, frequent target
    # syncs (in the spirit of data-efficient Rainbow, van Hasselt et al. 2019).
    "cpu": {"buffer_size": 100_000, "learning_starts": 2_000, "target_update": 1_000, "eps_decay_steps": 10_000,
            "lr": 1e-4, "sigma0": 0.1, "hidden": 256, "beta0": 0.4},
    # The toy game: coordinates in, small MLPs. One controlled machinery for every algorithm (ε-greedy, n = 3,
    # uniform replay, no dueling / noisy), so that RD², DQN and HRA differ only in how they use the reward.
    "toy": {"buffer_size": 50_000, "learning_starts": 1_000, "train_freq": 2, "target_update": 250,
            "eps_start": 1.0, "eps_end": 0.01, "eps_decay_steps": 10_000, "n_step": 3, "prioritized": False,
            "noisy": False, "dueling": False, "double": False, "lr": 1e-3, "adam_eps": 1e-8, "hidden": 128,
            "torso_hidden": 128, "batch_size": 64, "v_min": -5.0, "v_max": 5.0, "grad_clip": 10.0, "loss": "huber",
            "dec_lr": 1e-3, "dec_batch_size": 64, "decomposition.mask_type": "const", "decomposition.hidden": 128,
            # the decomposition settings of rd2.toy_experiment (exact masks in 5/5 seeds there); with the Atari
            # ones (product gate, λ_mini 1e-3) two of five RD² seeds stayed near return 1 (README)
            "decomposition.mask_gate": "shuffle", "decomposition.mask_init": 2.0, "decomposition.lambda_mini": 0.05},
}


def agent_config(algo: str, preset: str, overrides: dict[str, Any] | None = None) -> AgentConfig:
    if algo not in ALGOS:
        raise UserError(f"unknown --algo {algo!r}; choose one of {', '.join(ALGOS)}")
    if preset not in PRESETS:
        raise UserError(f"unknown --preset {preset!r}; choose one of {', '.join(PRESETS)}")
    cls = ALGOS[algo][1]
    cfg = cls()
    for key, value in PRESETS[preset].items():
        if _has(cfg, key):
            cfg = _replace(cfg, key, value)
    for key, value in (overrides or {}).items():
        if not _has(cfg, key):
            names = sorted(f.name for f in dataclasses.fields(cls))
            raise UserError(f"{algo} has no hyperparameter {key!r}; known: {', '.join(names)}")
        cfg = _replace(cfg, key, value)
    return cfg


def _has(cfg: Any, key: str) -> bool:
    head, _, rest = key.partition(".")
    if not any(f.name == head for f in dataclasses.fields(cfg)):
        return False
    return _has(getattr(cfg, head), rest) if rest else True


def _replace(cfg: Any, key: str, value: Any) -> Any:
    """dataclasses.replace with dotted keys ("decomposition.K") and the field's type applied to strings."""
    head, _, rest = key.partition(".")
    current = getattr(cfg, head)
    if rest:
        return dataclasses.replace(cfg, **{head: _replace(current, rest, value)})
    if isinstance(value, str) and not isinstance(current, str):
        try:
            value = (value.lower() in ("1", "true", "yes")) if isinstance(current, bool) else type(current)(value)
        except ValueError:
            raise UserError(f"hyperparameter {key}={value!r}: expected a {type(current).__name__}") from None
    return dataclasses.replace(cfg, **{head: value})


# --- environments -----------------------------------------------------------------------------------------------
def is_toy(env: str) -> bool:
    return env.lower() in {"toy", "monstertreasure", "rd2/monstertreasure-v0"}


def make_env(cfg: TrainConfig) -> gym.Env:
    from rd2.envs import AtariConfig, MonsterTreasureEnv
    from rd2.envs import make_env as make_atari

    if is_toy(cfg.env):
        return MonsterTreasureEnv(size=cfg.toy_size)
    return make_atari(cfg.env, config=AtariConfig(repeat_action_probability=cfg.sticky,
                                                  max_episode_frames=cfg.max_episode_frames))


def frame_skip(cfg: TrainConfig) -> int:
    return 1 if is_toy(cfg.env) else 4


@dataclass
class Channels:
    """The env's true reward channels, for per-component returns (and HRA's given decomposition): the toy game's
    info['sub_rewards'], or on Atari the raw-reward sources of rd2.purity.REWARD_SOURCES (spec §6.2)."""

    names: tuple[str, ...] = ()
    table: dict[float, int] | None = None  # raw reward value -> channel (Atari); None: read info['sub_rewards']

    def split(self, reward: float, info: dict[str, Any]) -> np.ndarray:
        if self.table is None:
            return np.asarray(info["sub_rewards"], np.float32)
        out = np.zeros(len(self.names), np.float32)
        k = self.table.get(float(reward))
        if k is not None:  # a step whose raw reward mixes two sources (e.g. 80 + 20) is not attributed
            out[k] = reward
        return out


def true_channels(cfg: TrainConfig) -> Channels:
    if is_toy(cfg.env):
        from rd2.envs.toy import CHANNELS

        return Channels(tuple(CHANNELS))
    from rd2.envs import resolve_env_id
    from rd2.purity import REWARD_SOURCES

    table = REWARD_SOURCES.get(resolve_env_id(cfg.env).game)
    if not table:
        return Channels()
    names = tuple(dict.fromkeys(table.values()))
    slug = tuple(n.replace(" ", "_") for n in names)
    return Channels(slug, {float(v): names.index(n) for v, n in table.items()})


def episode_seed(seed: int, env_index: int, episode: int) -> int:
    return int(np.random.SeedSequence([seed, env_index, episode]).generate_state(1)[0])


def build_agent(cfg: TrainConfig, acfg: AgentConfig, obs_shape: tuple[int, ...], n_actions: int,
                device: torch.device) -> Agent:
    cls = ALGOS[cfg.algo][0]
    k = len(true_channels(cfg).names) if cls.needs_sub_rewards else cfg.num_components
    if cls.needs_sub_rewards and k == 0:
        raise UserError(f"--algo {cfg.algo} needs a given reward decomposition: the toy game's true sub-rewards "
                        "or a game with known raw-reward sources (Pong, Gopher, UpNDown, MsPacman)")
    return cls(acfg, obs_shape, n_actions, device, num_components=k)


def linear(start: float, end: float, steps: int, t: int) -> float:
    return end if steps <= 0 else start + (end - start) * min(1.0, t / steps)


# --- evaluation -------------------------------------------------------------------------------------------------
def run_episodes(agent: Agent, cfg: TrainConfig, episodes: int, epsilon: float, seed: int,
                 on_step: Any = None) -> list[dict[str, float]]:
    """Play ``episodes`` episodes greedily (ε = ``epsilon``, noisy layers off); total, clipped and per-component
    returns (true channels on the toy game, learned sub-rewards Σ_t r̂_k for agents that have them)."""
    env = make_env(cfg)
    rng = np.random.default_rng(seed)
    channels = true_channels(cfg)
    was_training = agent.online.training
    agent.online.eval()
    rows = []
    try:
        for ep in range(episodes):
            obs, _ = env.reset(seed=episode_seed(seed, 0, ep))
            row: dict[str, float] = {"episode": ep, "return_raw": 0.0, "return_clipped": 0.0, "length": 0}
            done = False
            while not done:
                action = agent.act(obs[None], epsilon, rng)
                next_obs, r, term, trunc, info = env.step(int(action[0]))
                row["return_raw"] += float(r)
                row["return_clipped"] += float(np.sign(r))
                row["length"] += 1
                for name, v in zip(channels.names, channels.split(r, info), strict=True):
                    row[f"ret_{name}"] = row.get(f"ret_{name}", 0.0) + float(v)
                hat = agent.learned_sub_rewards(obs[None], action, next_obs[None])
                if hat is not None:
                    for k, v in enumerate(hat[0]):
                        row[f"ret_hat{k}"] = row.get(f"ret_hat{k}", 0.0) + float(v)
                if on_step is not None:
                    on_step(obs, int(action[0]), float(r))
                obs, done = next_obs, term or trunc
            rows.append(row)
    finally:
        agent.online.train(was_training)
        env.close()
    return rows


# --- training ---------------------------------------------------------------------------------------------------
class Trainer:
    def __init__(self, cfg: TrainConfig, acfg: AgentConfig, run: RunDir) -> None:
        self.cfg, self.acfg, self.run = cfg, acfg, run
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        self.device = select_device(cfg.device)
        gens = seed_everything(cfg.seed)
        self.rng: np.random.Generator = gens["numpy"]
        self.envs = [make_env(cfg) for _ in range(cfg.num_envs)]
        space = self.envs[0].observation_space
        self.obs_shape = tuple(space.shape)
        self.n_actions = int(self.envs[0].action_space.n)
        self.agent = build_agent(cfg, acfg, self.obs_shape, self.n_actions, self.device)
        self.channels = true_channels(cfg)
        self.replay = AgentReplay(acfg.buffer_size, self.obs_shape, cfg.num_envs, acfg.n_step, acfg.gamma,
                                  acfg.prioritized, acfg.alpha, len(self.channels.names)
                                  if self.agent.needs_sub_rewards else 0, self.agent.needs_sequence)
        self.skip = frame_skip(cfg)
        self.total_steps = cfg.frames // self.skip
        self.step = 0  # agent steps (transitions, over all envs)
        self.updates = 0
        self.pending = 0  # agent steps since the last update (an update every train_freq steps)
        self.episodes = np.zeros(cfg.num_envs, np.int64)  # finished episodes per env
        self.next_eval = cfg.eval_every // self.skip if cfg.eval_every else 0
        self.next_ckpt = cfg.ckpt_every // self.skip if cfg.ckpt_every else 0
        self.warmup_until = acfg.learning_starts
        self.ckpts = CheckpointManager(run.checkpoints, keep_last=cfg.keep_last)
        self.means = RunningMean()
        self.exact = self.buffer_restored = False

    # --- checkpoints ------------------------------------------------------------------------------------------
    def state(self, boundary: bool) -> dict[str, Any]:
        return {"train_config": dataclasses.asdict(self.cfg), "agent_config": dataclasses.asdict(self.acfg),
                "algo": self.cfg.algo, "obs_shape": list(self.obs_shape), "n_actions": self.n_actions,
                "num_components": self.agent.num_components, "agent": self.agent.state_dict(),
                "counters": {"step": self.step, "updates": self.updates, "pending": self.pending,
                             "episodes": self.episodes.tolist(),
                             "next_eval": self.next_eval, "next_ckpt": self.next_ckpt,
                             "warmup_until": self.warmup_until},
                "priorities": None if self.replay.sampler is None else self.replay.sampler.state_dict(),
                "rng": capture_rng_state({"numpy": self.rng}), "episode_boundary": boundary,
                "has_buffer": self.cfg.save_buffer}

    def save(self, boundary: bool) -> Path:
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
        self.exact = bool(state["episode_boundary"])
        return self.exact

    # --- the loop ---------------------------------------------------------------------------------------------
    def reset_env(self, i: int, start_replay: bool = True) -> np.ndarray:
        obs, _ = self.envs[i].reset(seed=episode_seed(self.cfg.seed, i, int(self.episodes[i])))
        if start_replay:
            self.replay.start(np.array([i]), obs[None])
        return obs

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
        progress_log = MetricsLogger(self.run.file("progress.csv"), resume_step=resume_step)
        eval_log = MetricsLogger(self.run.file("eval.csv"), resume_step=resume_step)
        obs = np.stack([self.reset_env(i, start_replay=not in_replay) for i in range(n)])
        ep_stats = [self._new_episode() for _ in range(n)]
        last_return = float("nan")
        bar = progress(total=self.total_steps, initial=min(self.step, self.total_steps), desc=f"{cfg.algo} {cfg.env}",
                       unit="step", disable=None if cfg.progress else True)
        t0, s0 = time.perf_counter(), self.step
        sps = 0.0
        learned = self.agent.has_learned_rewards
        interrupted = False
        try:
            while self.step < self.total_steps:
                eps = self.epsilon()
                actions = self.agent.act(obs, eps, self.rng)
                results = [env.step(int(a)) for env, a in zip(self.envs, actions, strict=True)]
                next_obs = np.stack([r[0] for r in results])
                rewards = np.array([r[1] for r in results], np.float32)
                term = np.array([r[2] for r in results])
                trunc = np.array([r[3] for r in results])
                subs = (np.stack([self.channels.split(r[1], r[4]) for r in results]) if self.channels.names
                        else None)
                # HRA learns from the clipped sub-rewards, like every agent learns from the clipped reward
                self.replay.add(np.arange(n), actions, rewards, term, trunc, next_obs,
                                None if subs is None else np.sign(subs))
                hat = self.agent.learned_sub_rewards(obs, actions, next_obs) if learned else None
                self.step += n
                bar.update(n)
                for i in range(n):
                    st = ep_stats[i]
                    st["return_raw"] += float(rewards[i])
                    st["return_clipped"] += float(np.sign(rewards[i]))
                    st["length"] += 1
                    if subs is not None:
                        for name, v in zip(self.channels.names, subs[i], strict=True):
                            st[f"ret_{name}"] += float(v)
                    if hat is not None:
                        for k, v in enumerate(hat[i]):
                            st[f"ret_hat{k}"] = st.get(f"ret_hat{k}", 0.0) + float(v)
                # learning: one update per train_freq agent steps once the warm-up is over
                if self.step >= max(self.warmup_until, acfg.batch_size):
                    self.pending += n
                    while self.pending >= acfg.train_freq:
                        self._learn()
                        self.pending -= acfg.train_freq
                # target sync (on the step counter, so it is the same with any num_envs)
                if (self.step // acfg.target_update) != ((self.step - n) // acfg.target_update):
                    self.agent.sync_target()
                obs = next_obs
                boundary0 = False
                for i in np.flatnonzero(term | trunc):
                    st = ep_stats[i]
                    last_return = st["return_raw"]
                    elapsed = time.perf_counter() - t0
                    sps = (self.step - s0) / elapsed if elapsed > 0 else 0.0
                    progress_log.log({"step": self.step, "frames": self.step * self.skip, "env": int(i),
                                      "episode": int(self.episodes[i]), **st, "epsilon": eps, "sps": sps,
                                      "updates": self.updates, **self.means.means()})
                    self.means.reset()
                    self.episodes[i] += 1
                    obs[i] = self.reset_env(i)
                    ep_stats[i] = self._new_episode()
                    boundary0 |= i == 0
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
        bar.close()
        final = self.save(boundary=False)
        for env in self.envs:
            env.close()
        elapsed = time.perf_counter() - t0
        # episodes still running when training stopped never reach progress.csv; report them (a policy that stalls
        # the game shows up here, not in the learning curve)
        unfinished = [{"env": i, "length": int(st["length"]), "return_raw": st["return_raw"]}
                      for i, st in enumerate(ep_stats) if st["length"] > 0]
        return {"step": self.step, "frames": self.step * self.skip, "updates": self.updates,
                "sps": (self.step - s0) / elapsed if elapsed > 0 else 0.0, "checkpoint": str(final),
                "last_return": last_return, "interrupted": interrupted, "unfinished": unfinished}

    def _new_episode(self) -> dict[str, float]:
        st = {"return_raw": 0.0, "return_clipped": 0.0, "length": 0}
        st.update({f"ret_{name}": 0.0 for name in self.channels.names})
        return st

    def _learn(self) -> None:
        acfg = self.acfg
        beta = linear(acfg.beta0, 1.0, self.total_steps, self.step)
        batch = self.replay.sample(acfg.batch_size, self.rng, self.device, beta)
        if self.agent.needs_reward_batch:
            batch.extra["dec_obs"], batch.extra["dec_reward"] = self.replay.reward_batch(
                acfg.dec_batch_size, self.rng, self.device, acfg.dec_balance, acfg.dec_nonzero_fraction)
        priorities, metrics = self.agent.update(batch)
        self.replay.update_priorities(batch.extra["index"].cpu().numpy(), priorities)
        self.updates += 1
        self.means.update(**metrics)


# --- entry points used by the CLI ---------------------------------------------------------------------------------
def _versions() -> dict[str, str]:
    import ale_py

    import rd2

    return {"rd2": rd2.__version__, "torch": torch.__version__, "numpy": np.__version__,
            "gymnasium": gym.__version__, "ale_py": ale_py.__version__}


def train(cfg: TrainConfig, acfg: AgentConfig, run_dir: str | Path | None = None,
          resume: str | Path | None = None) -> dict[str, Any]:
    """Train from scratch into ``run_dir`` (default runs/<algo>-<env>-s<seed>), or continue the run in ``resume``
    from its newest checkpoint (``cfg.frames`` may be raised to train longer)."""
    if resume is not None:
        run = RunDir.open(resume)
        latest = CheckpointManager(run.checkpoints).latest()
        if latest is None:
            raise UserError(f"{run.checkpoints} holds no checkpoint to resume from; start a new run instead")
    else:
        if run_dir is None:
            env = cfg.env.replace("/", "_")
            run = RunDir.create("runs", f"{cfg.algo}-{env}-s{cfg.seed}")
        else:
            run = RunDir(run_dir)
            if (run.path / "progress.csv").exists():
                raise UserError(f"{run.path} already holds a run; pass --resume {run.path} to continue it "
                                "or choose another --run-dir")
            run.path.mkdir(parents=True, exist_ok=True)
        latest = None
    run.write_config({"train": cfg, "agent": acfg}, extra={"versions": _versions()})
    trainer = Trainer(cfg, acfg, run)
    summary = trainer.train(resume_from=latest)
    summary["run_dir"] = str(run.path)
    summary["exact_resume"] = trainer.exact if latest is not None else None
    return summary


def configs_from_run(run_dir: str | Path) -> tuple[TrainConfig, AgentConfig]:
    """The configs a run was started with (its config.json)."""
    from rd2.agents.base import config_from_dict

    data = RunDir.open(run_dir).read_config()
    try:
        cfg = config_from_dict(TrainConfig, data["train"])
        acfg = config_from_dict(ALGOS[cfg.algo][1], data["agent"])
    except (KeyError, TypeError) as exc:
        raise UserError(f"{Path(run_dir) / 'config.json'} is not an `rd2 train` config ({exc})") from None
    return cfg, acfg


def load_agent(ckpt: str | Path, device: str = "auto") -> tuple[Agent, TrainConfig, dict[str, Any]]:
    """Rebuild the agent stored in a checkpoint written by `rd2 train`."""
    from rd2.agents.base import config_from_dict

    dev = select_device(device)
    state = load_checkpoint(ckpt, map_location="cpu")
    if "train_config" not in state or "agent" not in state:
        raise UserError(f"{ckpt} is not an `rd2 train` checkpoint (no agent inside); pass a file from "
                        "<run>/checkpoints/")
    cfg = config_from_dict(TrainConfig, state["train_config"])
    acfg = config_from_dict(ALGOS[cfg.algo][1], state["agent_config"])
    cls = ALGOS[cfg.algo][0]
    agent = cls(acfg, tuple(state["obs_shape"]), int(state["n_actions"]), dev,
                num_components=int(state["num_components"]))
    agent.load_state_dict(state["agent"])
    return agent, cfg, state
