"""Configs and presets of the jobs: ``rd2 train`` (run settings, agent presets, validation; spec §6.4, §9) and
``rd2 decompose`` (spec §3.2, §9, §10.5). Agent hyperparameters live in the agents' dataclasses
(:mod:`rd2.agents`), decomposition hyperparameters in :class:`rd2.decomposition.DecompositionConfig`."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from neurips20_common import UserError

from rd2.decomposition import DecompositionConfig


def atari_decomposition() -> DecompositionConfig:
    # §3.1: state-dependent masks on the Nature-CNN features; §3.2: L_zero on for sparse Atari rewards.
    # head_signs=auto: MuDE's sign prior (§3.1 [CODE]) set from the collected rewards (rd2.decompose.auto_signs),
    # as a soft penalty. Without it the RD² losses alone split Pong's signs only partly (README, measured).
    return DecompositionConfig(K=2, mask_type="state", lambda_zero=1.0, hidden=256, head_signs="auto")


def decompose_decomposition() -> DecompositionConfig:
    # rd2 decompose: the Atari settings plus L_value (not in RD², issue 18), which separates same-sign sources
    # (Gopher: balanced purity 0.44 -> 1.00, seed 0; README "Why Gopher mixed"). The RD² agent keeps the above.
    return dataclasses.replace(atari_decomposition(), lambda_value=0.1)


@dataclass
class DecomposeConfig:
    """``rd2 decompose``: collect transitions, train only L_dec, measure purity (spec §9, §10.5)."""

    env: str = "Pong"
    steps: int = 100_000  # transitions to collect (§10.5: 100k–300k agent steps)
    num_envs: int = 8  # vector envs for collection
    backend: str = "auto"  # ale (native vector env) | gymnasium | auto
    policy: str = "random"  # random | agent (needs agent_ckpt)
    agent_ckpt: str | None = None
    epsilon: float = 0.05  # ε-greedy on top of a checkpointed agent
    iters: int = 2500  # decomposition updates
    batch_size: int = 32
    lr: float = 2.5e-4  # Adam
    mask_lr_scale: float = 1.0  # the mask network learns this many times faster (the toy uses 10)
    # Regress r / max|r| and balance batches over raw values: for Pong (±1) this is the same as sign(r); for Gopher
    # it lets channels tell +20 from +100, which sign(r) hides (measured: balanced purity 0.55 -> 0.92). The spec's
    # default (§3.2, UNVERIFIED) is the clipped reward: --reward-target clipped --balance clipped.
    balance: str = "raw"  # reward-balanced sampling over raw values or over clipped ones
    nonzero_fraction: float = 0.5  # share of nonzero-reward transitions in each batch
    reward_target: str = "scaled"  # "scaled": raw / max|raw|; "clipped": sign(r) (§3.2); "raw": the score change
    reward_input: str = "next"  # "next": r̂(s_{t+1}); "current_action": r̂(s_t, a_t) (§3.1, UNVERIFIED)
    eval_every: int = 250  # updates between purity evaluations (progress bar + metrics.csv)
    eval_samples: int = 2000  # nonzero-reward transitions used for the running purity
    ckpt_every: int = 500
    csv_zero_rows: int = 5000  # zero-reward transitions written to sub_rewards.csv (all nonzero ones are)
    seed: int = 0
    threads: int = 2
    # Issue 18 (Pong collapsed on some seeds / thread counts: the heads stayed input-independent while Adam drove
    # the torso's ReLUs dead; README "Why it collapsed"): He init of torso and heads, the torso at a quarter of
    # --lr, and a linear lr warm-up. "torch" init / scale 1 / warmup 0 is the old behaviour.
    init: str = "he"  # he | torch (PyTorch's default init)
    torso_lr_scale: float = 0.25
    warmup: int = 100  # updates of linear lr warm-up; 0 = none
    torso: str = "auto"  # auto: Nature CNN for frames, MLP for vectors (rd2.torso.make_torso); none: raw vector
    reward_sources: str = ""  # "10=pellet,200=ghost": label raw reward values for purity (default: rd2.purity table)
    keep_replay: bool = False  # write replay.npz into the run dir (else resume collects the same data again)
    collapse_fraction: float = 0.8  # collapsed if the final L_sum is above this × its constant-prediction value
    separation_warn: float = 0.75  # warn when a source's matched channel carries a median share below this
    decomposition: DecompositionConfig = field(default_factory=decompose_decomposition)


PRESETS: dict[str, dict[str, object]] = {
    "default": {},
    # `make demo`: about a minute on 2 free cores; enough Pong points (≈ 40 won) for a meaningful purity.
    "demo": {"steps": 50_000, "iters": 1200, "lr": 5e-4, "eval_every": 200, "eval_samples": 500, "ckpt_every": 400,
             "csv_zero_rows": 1000},
}


def make_config(preset: str = "default", **overrides: object) -> DecomposeConfig:
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    cfg = DecomposeConfig(**PRESETS[preset])  # type: ignore[arg-type]
    dec_fields = {f.name for f in dataclasses.fields(DecompositionConfig)}
    dec_over = {k: v for k, v in overrides.items() if k in dec_fields and v is not None}
    job_over = {k: v for k, v in overrides.items() if k not in dec_fields and v is not None}
    cfg = dataclasses.replace(cfg, **job_over)
    cfg.decomposition = dataclasses.replace(cfg.decomposition, **dec_over)
    return cfg


def config_from_dict(data: dict) -> DecomposeConfig:
    data = dict(data)
    dec = DecompositionConfig(**data.pop("decomposition"))
    known = {f.name for f in dataclasses.fields(DecomposeConfig)}
    return DecomposeConfig(**{k: v for k, v in data.items() if k in known}, decomposition=dec)


# --- rd2 train ---------------------------------------------------------------------------------------------------
@dataclass
class TrainConfig:
    """Run-level settings of ``rd2 train``; the learning hyperparameters live in the agent's config dataclass."""

    env: str = "Pong"  # Pong, ALE/Pong-v5, PongNoFrameskip-v4, or toy
    algo: str = "rd2"
    preset: str = "atari"  # see TRAIN_PRESETS
    frames: int = 10_000_000  # emulator frames (agent steps × 4 on Atari; = steps on the toy game)
    seed: int = 0
    num_envs: int = 1  # envs stepped together; updates keep the agent's replay ratio (1 per train_freq steps)
    backend: str = "auto"  # Atari envs: ale (native C++ vector env), python (gymnasium wrappers), auto (ale if N > 1)
    eval_every: int = 250_000  # frames; 0 = never
    eval_episodes: int = 5
    ckpt_every: int = 250_000  # frames; taken at the next episode end of env 0
    keep_last: int = 3
    save_buffer: bool = False  # also write the replay at each checkpoint (large on Atari)
    sticky: float = 0.0  # repeat_action_probability (0.25 = the v5 convention)
    max_episode_frames: int = 108_000
    toy_size: int = 8
    num_components: int = 2  # K channels (rd2, drdrl; hra uses the env's true channels)
    init_decomposition: str = ""  # rd2: start the decomposition (torso, masks, reward heads) from `rd2 decompose`
    replay_device: str = "cpu"  # where the replay keeps its frames: cpu, or the training device ("device")
    compile: bool = False  # torch.compile the networks (measured on CPU: see benchmarks/sps.py)
    device: str = "auto"
    threads: int = 1  # torch.set_num_threads (1 suits small nets on a shared CPU); 0 = torch default
    nan_check_every: int = 100  # updates between parameter NaN/Inf checks (losses are checked every update)
    tensorboard: bool = False  # also log progress.csv / eval.csv scalars to <run>/tb/{progress,eval}
    progress: bool = True


# Named presets of agent hyperparameters: overrides of the dataclass defaults (the standard Atari values, spec
# §6.4 / §7.1). "all" applies to every algorithm, an algorithm's own section only to it; every key must name a
# field of that algorithm's config (an unknown key is an error, not silently skipped).
TRAIN_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "atari": {"all": {}},
    # A few hundred thousand frames on 2 CPU cores: small replay, early learning, fast ε decay, frequent target
    # syncs (in the spirit of data-efficient Rainbow, van Hasselt et al. 2019).
    "cpu": {"all": {"buffer_size": 100_000, "learning_starts": 2_000, "target_update": 1_000,
                    "eps_decay_steps": 10_000, "lr": 1e-4, "sigma0": 0.1, "hidden": 256, "beta0": 0.4}},
    # The toy game: coordinates in, small MLPs. One controlled machinery for every algorithm (ε-greedy, n = 3,
    # uniform replay, no dueling / noisy), so that RD², DQN and HRA differ only in how they use the reward.
    "toy": {"all": {"buffer_size": 50_000, "learning_starts": 1_000, "train_freq": 2, "target_update": 250,
                    "eps_start": 1.0, "eps_end": 0.01, "eps_decay_steps": 10_000, "n_step": 3, "prioritized": False,
                    "noisy": False, "dueling": False, "double": False, "lr": 1e-3, "adam_eps": 1e-8, "hidden": 128,
                    "torso_hidden": 128, "batch_size": 64, "v_min": -5.0, "v_max": 5.0, "grad_clip": 10.0,
                    "loss": "huber"},
            # the decomposition settings of rd2.toy_experiment (exact masks in 5/5 seeds there); with the Atari
            # ones (product gate, λ_mini 1e-3) two of five RD² seeds stayed near return 1 (README)
            "rd2": {"dec_lr": 1e-3, "dec_batch_size": 64, "decomposition.mask_type": "const",
                    "decomposition.hidden": 128, "decomposition.mask_gate": "shuffle",
                    "decomposition.mask_init": 2.0, "decomposition.lambda_mini": 0.05,
                    "decomposition.head_signs": "", "q_hidden": 128, "dec_init": "torch"}},
}


def agent_config(algo: str, preset: str, overrides: dict[str, Any] | None = None) -> Any:
    """The agent config of ``algo``: dataclass defaults, then the preset, then ``overrides`` (dotted keys)."""
    from rd2.agents import ALGOS

    if algo not in ALGOS:
        raise UserError(f"unknown --algo {algo!r}; choose one of {', '.join(ALGOS)}")
    if preset not in TRAIN_PRESETS:
        raise UserError(f"unknown --preset {preset!r}; choose one of {', '.join(TRAIN_PRESETS)}")
    cls = ALGOS[algo][1]
    cfg = cls()
    sections = TRAIN_PRESETS[preset]
    for key, value in {**sections.get("all", {}), **sections.get(algo, {})}.items():
        if not has_key(cfg, key):
            raise UserError(f"preset {preset!r} sets {key!r}, which {algo} does not have (a bug in "
                            "rd2.config.TRAIN_PRESETS)")
        cfg = replace_key(cfg, key, value)
    for key, value in (overrides or {}).items():
        if not has_key(cfg, key):
            names = sorted(f.name for f in dataclasses.fields(cls))
            raise UserError(f"{algo} has no hyperparameter {key!r}; known: {', '.join(names)}")
        cfg = replace_key(cfg, key, value)
    validate_agent(cfg)
    return cfg


def has_key(cfg: Any, key: str) -> bool:
    head, _, rest = key.partition(".")
    if not any(f.name == head for f in dataclasses.fields(cfg)):
        return False
    return has_key(getattr(cfg, head), rest) if rest else True


def replace_key(cfg: Any, key: str, value: Any) -> Any:
    """dataclasses.replace with dotted keys ("decomposition.K") and the field's type applied to strings."""
    head, _, rest = key.partition(".")
    current = getattr(cfg, head)
    if rest:
        return dataclasses.replace(cfg, **{head: replace_key(current, rest, value)})
    if isinstance(value, str) and not isinstance(current, str):
        try:
            if isinstance(current, bool):
                if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError
                value = value.lower() in ("1", "true", "yes")
            elif isinstance(current, int):
                value = int(float(value)) if float(value).is_integer() else int(value)
            else:
                value = type(current)(value)
        except ValueError:
            raise UserError(f"hyperparameter {key}={value!r}: expected a {type(current).__name__}") from None
    return dataclasses.replace(cfg, **{head: value})


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise UserError(f"{name} must be a positive number, got {value!r}")


def _non_negative(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise UserError(f"{name} must be >= 0, got {value!r}")


def _fraction(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and 0 <= value <= 1):
        raise UserError(f"{name} must be in [0, 1], got {value!r}")


def validate_agent(cfg: Any) -> None:
    """Counts and sizes positive, probabilities in [0, 1] (issue 15); a bad value is a UserError naming it."""
    for name in ("batch_size", "buffer_size", "n_step", "train_freq", "target_update", "atoms", "hidden",
                 "torso_hidden", "lr", "adam_eps", "sigma0", "alpha", "dec_batch_size", "dec_lr",
                 "dec_every"):
        if hasattr(cfg, name):
            _positive(name, getattr(cfg, name))
    for name in ("learning_starts", "eps_decay_steps", "grad_clip", "beta0", "dec_weight", "lambda_sub"):
        if hasattr(cfg, name):
            _non_negative(name, getattr(cfg, name))
    for name in ("eps_start", "eps_end", "eps_eval", "dec_nonzero_fraction"):
        if hasattr(cfg, name):
            _fraction(name, getattr(cfg, name))
    if not 0 < cfg.gamma <= 1:
        raise UserError(f"gamma must be in (0, 1], got {cfg.gamma!r}")
    if cfg.v_min >= cfg.v_max:
        raise UserError(f"v_min ({cfg.v_min}) must be below v_max ({cfg.v_max})")
    if cfg.n_step * 4 > cfg.buffer_size:
        raise UserError(f"buffer_size {cfg.buffer_size} is too small for n_step {cfg.n_step}")
    if hasattr(cfg, "decomposition"):
        _positive("decomposition.K", cfg.decomposition.K)
    if cfg.torso_dtype not in ("float32", "bfloat16"):
        raise UserError(f"torso_dtype must be float32 or bfloat16, got {cfg.torso_dtype!r}")
    if cfg.head_dtype not in ("float32", "bfloat16"):
        raise UserError(f"head_dtype must be float32 or bfloat16, got {cfg.head_dtype!r}")


def validate_train(cfg: TrainConfig) -> None:
    for name in ("frames", "num_envs", "eval_episodes", "keep_last", "toy_size", "num_components",
                 "max_episode_frames", "nan_check_every"):
        value = getattr(cfg, name)
        if not isinstance(value, int) or value <= 0:
            raise UserError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
    for name in ("eval_every", "ckpt_every", "threads"):
        value = getattr(cfg, name)
        if not isinstance(value, int) or value < 0:
            raise UserError(f"--{name.replace('_', '-')} must be >= 0 (0 = off / default), got {value!r}")
    _fraction("sticky", cfg.sticky)
    if cfg.backend not in ("auto", "ale", "python"):
        raise UserError(f"unknown backend {cfg.backend!r}: use auto, ale or python")
    if cfg.replay_device not in ("cpu", "device"):
        raise UserError(f"replay_device {cfg.replay_device!r}: use cpu or device (the training device)")
