"""What every agent shares: the hyperparameter dataclass (standard Atari values, spec §6.4 / §7.1), the tensor
batch, ε-greedy acting, one optimizer step with gradient clipping, target sync and state dicts.

An agent file (dqn.py, rainbow.py, ...) only says how to build its network, how to read action values out of it
and what its loss is, CleanRL style.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rd2.agents.networks import NoisyLinear, reset_noise
from rd2.torso import NatureCNN


@dataclass
class AgentConfig:
    """Shared hyperparameters. Defaults: Rainbow on Atari (Hessel et al. 2018; Dopamine / Kaixhin, spec §6.4)."""

    lr: float = 6.25e-5  # Adam, spec §6.4
    adam_eps: float = 1.5e-4
    gamma: float = 0.99
    n_step: int = 3
    batch_size: int = 32
    buffer_size: int = 1_000_000  # transitions; single-frame storage ≈ 7 GB per 1M (spec §7.4)
    learning_starts: int = 20_000  # agent steps before the first update
    train_freq: int = 4  # agent steps per update
    target_update: int = 8_000  # agent steps between target syncs
    eps_start: float = 0.0  # ε-greedy schedule (noisy nets explore on their own)
    eps_end: float = 0.0
    eps_decay_steps: int = 250_000
    eps_eval: float = 0.001  # Dopamine
    prioritized: bool = True
    alpha: float = 0.5  # PER exponent
    beta0: float = 0.4  # IS exponent, annealed linearly to 1 over the run
    noisy: bool = True
    sigma0: float = 0.5
    dueling: bool = True
    double: bool = True  # a' from the online net, value from the target net
    atoms: int = 51  # 1 = scalar Q
    v_min: float = -10.0
    v_max: float = 10.0
    hidden: int = 512  # the Nature network's fully connected layer
    torso_hidden: int = 64  # MLP torso width (vector observations only)
    grad_clip: float = 10.0  # max grad norm (Kaixhin); 0 = off
    loss: str = "huber"  # scalar heads: huber | mse
    channels_last: bool = True  # conv inputs in NHWC: same math, ~1.6x faster conv updates with oneDNN on CPU
    # "bfloat16": the Nature CNN's convolutions (forward and backward) run under autocast in bf16, everything after
    # the torso (heads, losses, Adam, the weights themselves) in float32. Not the paper's numerics: an option, off by
    # default (measured in benchmarks/sps.py: ~2x cheaper convs on a CPU with AVX512-BF16)
    torso_dtype: str = "float32"
    # "bfloat16": the heads' first layers, the ones that read the Nature CNN's 3136 features (the widest matmuls after
    # the convs), under bf16 autocast with float32 outputs; the later head layers, losses, weights and Adam stay
    # float32. An option like torso_dtype (measured in benchmarks/sps.py, README "Throughput")
    head_dtype: str = "float32"


@dataclass
class TensorBatch:
    """A replay batch on the device. ``returns`` / ``discount`` are n-step (see rd2.replay.ReplayBuffer.get)."""

    obs: torch.Tensor
    action: torch.Tensor
    returns: torch.Tensor  # (B,) n-step clipped return
    next_obs: torch.Tensor  # s_{t+n_used}
    discount: torch.Tensor  # γ^n_used · (1 − terminated)
    weights: torch.Tensor  # importance weights (ones without PER)
    reward: torch.Tensor  # (B,) one-step clipped reward r_t
    reward_raw: torch.Tensor  # (B,) one-step raw reward r_t
    n_used: torch.Tensor  # (B,) steps summed
    sub_returns: torch.Tensor | None = None  # (B, K) n-step returns of given sub-rewards (HRA)
    seq_obs: torch.Tensor | None = None  # (B, n, ...) s_{t+1..t+n} (RD²: learned sub-rewards along the window)
    seq_action: torch.Tensor | None = None  # (B, n) a_{t..t+n-1}
    seq_alive: torch.Tensor | None = None  # (B, n) bool, step j is inside the window
    seq_reward: torch.Tensor | None = None  # (B, n) raw reward r_{t+j} of the window steps
    extra: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)


def td_loss(pred: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Elementwise TD loss: Huber (δ=1) or squared error."""
    if kind == "huber":
        return F.smooth_l1_loss(pred, target, reduction="none")
    if kind == "mse":
        return (pred - target) ** 2
    raise ValueError(f"unknown loss {kind!r}: use huber or mse")


class Agent:
    """Base class. Subclasses set ``name``, build ``self.online`` and implement ``action_values`` and ``loss``."""

    name: ClassVar[str] = "agent"
    needs_sub_rewards: ClassVar[bool] = False  # HRA: the replay must store given sub-rewards
    needs_sequence: ClassVar[bool] = False  # RD²: the batch must carry s_{t+1..t+n}
    needs_reward_batch: ClassVar[bool] = False  # RD²: an extra (reward-balanced) batch of (s_{t+1}, r_t)
    has_learned_rewards: ClassVar[bool] = False  # RD²: learned_sub_rewards gives r̂_k per transition

    def __init__(self, cfg: AgentConfig, obs_shape: tuple[int, ...], n_actions: int, device: torch.device,
                 num_components: int = 1) -> None:
        self.cfg, self.obs_shape, self.n_actions, self.device = cfg, tuple(obs_shape), n_actions, device
        self.num_components = num_components
        self.online = self.build().to(device)
        self.target = self.build().to(device)
        self.target.load_state_dict(self.online.state_dict())
        self.target.train()  # noisy target nets keep their noise (Rainbow)
        if cfg.channels_last:
            for net in (self.online, self.target):
                _channels_last_inputs(net)
        if cfg.torso_dtype == "bfloat16":
            for net in (self.online, self.target):
                _bf16_convs(net, self.device.type)
        elif cfg.torso_dtype != "float32":
            raise ValueError(f"unknown torso_dtype {cfg.torso_dtype!r}: use float32 or bfloat16")
        if cfg.head_dtype == "bfloat16":
            for net in (self.online, self.target):
                _bf16_feature_layers(net, self.device.type)
        elif cfg.head_dtype != "float32":
            raise ValueError(f"unknown head_dtype {cfg.head_dtype!r}: use float32 or bfloat16")
        # fused Adam: one kernel over all parameters (measured: Adam was ~1/4 of an RD² update on CPU unfused)
        self.optimizer = torch.optim.Adam(self.param_groups(), lr=cfg.lr, eps=cfg.adam_eps, fused=True)
        self.train_config: Any = None  # set by rd2.evaluate.load_agent: the run's TrainConfig
        self.step = 0  # agent steps trained (set by load_agent)

    # --- to implement ------------------------------------------------------------------------------------------
    def build(self) -> nn.Module:
        raise NotImplementedError

    def action_values(self, net: nn.Module, obs: torch.Tensor) -> torch.Tensor:
        """(B, A) values the agent acts greedily on."""
        raise NotImplementedError

    def loss(self, batch: TensorBatch) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        """(weighted mean loss, per-sample priority (B,), metrics)."""
        raise NotImplementedError

    def components(self, obs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-channel outputs for evaluation / saliency: e.g. {"q": (B, K, A)}; empty for undecomposed agents."""
        return {}

    def learned_sub_rewards(self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray | None:
        """(N, K) learned sub-rewards r̂_k of transitions, for agents that learn a decomposition; else None."""
        return None

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimizer parameter groups (one group at ``cfg.lr`` unless an agent needs more)."""
        return [{"params": self.parameters()}]

    # --- shared ------------------------------------------------------------------------------------------------
    def parameters(self) -> list[nn.Parameter]:
        return list(self.online.parameters())

    def as_tensor(self, obs: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(obs, device=self.device)

    def acting_values(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, A) action values of the online net and, for agents that learn sub-rewards, r̂_k of the transition
        that led to each observation when the same forward gives them (else None)."""
        return self.action_values(self.online, obs), None

    @torch.no_grad()
    def select_actions(self, obs: np.ndarray, epsilon: float, rng: np.random.Generator
                       ) -> tuple[np.ndarray, np.ndarray | None]:
        """ε-greedy actions for a batch of observations (one forward for all envs) and the by-product sub-rewards
        of :meth:`acting_values` (numpy, or None)."""
        values, sub = self.acting_values(self.as_tensor(obs))
        greedy = values.argmax(dim=1).cpu().numpy()
        explore = rng.random(len(greedy)) < epsilon
        random_actions = rng.integers(0, self.n_actions, size=len(greedy))
        return np.where(explore, random_actions, greedy), None if sub is None else sub.cpu().numpy()

    def act(self, obs: np.ndarray, epsilon: float = 0.0, rng: np.random.Generator | None = None):
        """Actions for a batch of observations, or one action (an int) for a single observation; greedy unless
        ``epsilon`` > 0. Uses the net in its current mode (``load_agent`` returns it in eval mode: noise off)."""
        obs = np.asarray(obs)
        single = obs.shape == self.obs_shape
        rng = rng if rng is not None else np.random.default_rng()
        actions, _ = self.select_actions(obs[None] if single else obs, epsilon, rng)
        return int(actions[0]) if single else actions

    def prepare(self, replay: Any) -> None:
        """Called before each update with the replay (RD²: fixes its reward scale and sign prior); no-op here."""

    def wants_reward_batch(self, update: int) -> bool:
        """Whether update number ``update`` (0-based) gets the extra reward batch (``needs_reward_batch`` agents)."""
        return self.needs_reward_batch

    def reward_batch_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of AgentReplay.reward_batch for agents with ``needs_reward_batch``."""
        return {}

    def update(self, batch: TensorBatch) -> tuple[np.ndarray | None, dict[str, float]]:
        """One gradient step; returns the new priorities and the metrics. A non-finite loss takes no step and
        returns no priorities (the trainer's guard stops the run)."""
        if not self.online.training:
            self.online.train()
        loss, priorities, metrics = self.loss(batch)
        metrics["loss"] = float(loss.detach())
        if not math.isfinite(metrics["loss"]):  # no step on a NaN/Inf loss: the parameters stay finite
            return None, metrics
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip > 0:
            metrics["grad_norm"] = float(nn.utils.clip_grad_norm_(self.parameters(), self.cfg.grad_clip))
        self.optimizer.step()
        reset_noise(self.online)
        reset_noise(self.target)
        return priorities.detach().cpu().numpy(), metrics

    def sync_target(self) -> None:
        self.target.load_state_dict(self.online.state_dict())

    def state_dict(self) -> dict[str, Any]:
        return {"online": self.online.state_dict(), "target": self.target.state_dict(),
                "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.online.load_state_dict(state["online"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])


def _channels_last_inputs(net: nn.Module) -> None:
    """Feed every Conv2d an NHWC (channels-last) input; the weights and the state dict keep their layout."""
    def hook(module: nn.Module, args: tuple) -> tuple:
        x = args[0]
        return (x.contiguous(memory_format=torch.channels_last), *args[1:]) if x.dim() == 4 else args

    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_pre_hook(hook)


class _BF16Convs(nn.Sequential):
    """A Nature CNN's conv stack under bf16 autocast, handing float32 features on (see ``_bf16_convs``)."""

    amp_device = "cpu"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.amp_device, dtype=torch.bfloat16):
            return super().forward(x).float()


def _bf16_convs(net: nn.Module, device_type: str) -> None:
    """Run the conv stack of every Nature CNN in ``net`` under bf16 autocast; the parameters and the state dict stay
    float32 (autograd casts the gradients back). Only the class of the stack changes, so copies and pickles keep it."""
    for m in net.modules():
        if isinstance(m, NatureCNN) and type(m.net) is nn.Sequential:
            m.net.__class__ = _BF16Convs
            m.net.amp_device = device_type


class _BF16Linear(nn.Linear):
    """A linear layer under bf16 autocast with a float32 output (see ``_bf16_feature_layers``)."""

    amp_device = "cpu"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.amp_device, dtype=torch.bfloat16):
            return super().forward(x).float()


class _BF16NoisyLinear(NoisyLinear):
    """A noisy linear layer under bf16 autocast (the noisy weight is built in float32, then cast)."""

    amp_device = "cpu"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.amp_device, dtype=torch.bfloat16):
            return super().forward(x).float()


def _bf16_feature_layers(net: nn.Module, device_type: str) -> None:
    """Run every linear layer of ``net`` that reads a Nature CNN's flat features (in_features = its out_dim) under
    bf16 autocast; as in ``_bf16_convs`` only the class changes (same parameters, state-dict keys and dtypes)."""
    widths = {m.out_dim for m in net.modules() if isinstance(m, NatureCNN)}
    for m in net.modules():
        if type(m) in (nn.Linear, NoisyLinear) and m.in_features in widths:
            m.__class__ = _BF16NoisyLinear if isinstance(m, NoisyLinear) else _BF16Linear
            m.amp_device = device_type


def config_from_dict(cls: type, values: dict[str, Any]) -> Any:
    """Rebuild a (nested) config dataclass from ``dataclasses.asdict`` output, e.g. from a checkpoint."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in values:
            continue
        v = values[f.name]
        sub = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(sub) and isinstance(v, dict):
            v = config_from_dict(type(sub), v)
        elif isinstance(v, list):
            v = tuple(v)
        kwargs[f.name] = v
    return cls(**kwargs)


def scalar_q(net_out: torch.Tensor) -> torch.Tensor:
    """(B, A, 1) → (B, A)."""
    return net_out.squeeze(-1)
