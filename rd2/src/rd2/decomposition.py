"""RD² reward decomposition (spec §3.1–3.2): features x(s), K masks m_k, K sub-reward heads r̂_k = f_k(x ⊙ m_k).

Loss (§3.2):  L_dec = L_sum + λ_mini·L_mini + λ_div1·L_div1 (+ λ_div2·L_div2 + λ_zero·L_zero)

    L_sum  = mean_B (r − Σ_k r̂_k)²                                       linear decomposition
    L_mini = mean_B Σ_k log(Σ_i m_k^i + ε)                                minimal supporting sub-state
    L_div1 = −mean_B Σ_k Σ_{j≠k} log(Σ_i ReLU(m_k^i − m_j^i) + ε)         unique sub-states
    L_div2 = Σ_{k≠j} |corr_B(r̂_k, r̂_j)|     (UNVERIFIED, off by default) non-trivial / decorrelated channels
    L_zero = mean_{B: r=0} Σ_k r̂_k²          ([CODE] MuDE r_zero_loss)   sparse sub-rewards on zero-reward steps
    L_value = mean_{B: r≠0} Σ_k p_ik (r_i − μ_k)² / Var(r),  p_ik = |r̂_ik| / Σ_j |r̂_ij|,  μ_k = Σ_i p_ik r_i / Σ_i p_ik
                                             (not in RD², issue 18)  soft k-means of the reward values over channels

Heads see only their masked features (plus, optionally, the one-hot action, which is not a state feature).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class DecompositionConfig:
    """RD² decomposition hyperparameters. The paper's values were not available (spec §3.2, UNVERIFIED)."""

    K: int = 2  # number of channels (§3.2: 2; 3 for UpNDown-style games)
    mask_type: str = "state"  # "state" (Atari, §3.1) or "const" (toy, §3.1)
    lambda_mini: float = 1e-3  # [CODE] MuDE Lmini weight
    lambda_div1: float = 1e-2  # [CODE] MuDE Ldiv1 weight
    lambda_div2: float = 0.0  # L_div2 is UNVERIFIED: off by default (§3.2)
    lambda_zero: float = 0.0  # [CODE] MuDE uses 1.0 when enabled; the Atari presets enable it
    # L_value (not in the spec; issue 18): L_sum is indifferent to how a reward is shared among channels of the same
    # sign, and the masks (≈ 0.5 everywhere on Atari) do not break that tie, so Gopher's channels ended as fixed
    # mixtures of both sources (README "Why Gopher mixed"). L_value is the within-channel variance of the reward
    # values, with each transition counted in channel k by its share of the reward: its minimum puts each reward
    # value (a source scores a fixed number of points) in one channel. It moves shares only, not the sum.
    lambda_value: float = 0.0
    eps: float = 1e-7  # [CODE] MuDE ε inside the logs
    hidden: int = 256  # head / mask-network width ([CODE] MuDE 32–256)
    activation: str = "relu"  # head activation; MuDE uses "elu", which fits the toy's sharp rewards far worse
    # How a mask gates a feature. "product": s_k = x ⊙ m_k (spec §3.1 default). "shuffle": s_k = m_k ⊙ x +
    # (1 − m_k) ⊙ x̃ with x̃ the same feature of another sample in the batch (its running mean in eval mode), so a
    # half-open mask passes half the information and a head cannot undo a small mask by scaling its weights;
    # mask values then measure feature use (a noisy-channel reading of "minimal sufficient sub-state").
    mask_gate: str = "product"
    # Optional sign constraint per channel, e.g. "+,-" ([CODE] MuDE: ReLU output for the positive channel, clamp to
    # ≤ 0 for the negative one); "" = unconstrained (default). "0" leaves that channel unconstrained.
    head_signs: str = ""
    # How a signed head is constrained. "penalty" (default): r̂_k stays free and L_sign = mean_B Σ_k ReLU(−s_k·r̂_k)²
    # (weight lambda_sign) pulls it to its sign. "relu" ([CODE] MuDE: ReLU / clamp ≤ 0) and "softplus" are hard
    # constraints; on Atari both die within ~250 updates, while L_zero drives every output to 0 before the torso can
    # tell scoring frames apart (measured: Pong L_sum stuck at 0.50 with either).
    sign_fn: str = "penalty"
    lambda_sign: float = 1.0
    # State masks read the torso features detached (default): otherwise L_mini / L_div1 reach the torso through
    # the mask network and, on Atari, drive its features to an input-independent saturated code within ~50
    # updates, after which no head can fit L_sum (measured: L_sum stuck at 0.50 on Pong). True = let them through.
    mask_grad_to_torso: bool = False
    action_input: bool = False  # heads also read a one-hot a_t (toy: True; Atari default predicts from s_{t+1})
    mask_init: float = 0.0  # initial mask logit (sigmoid 0.5, like MuDE's initmask 0.5)
    mask_init_noise: float = 0.1  # logit noise that breaks the symmetry between channels


class ConstMask(nn.Module):
    """State-independent masks m_k = σ(w_k) (§3.1 toy; a learnable logit vector, equivalent to MuDE's MLP)."""

    def __init__(self, K: int, n_features: int, init: float = 0.0, noise: float = 0.1) -> None:
        super().__init__()
        self.logits = nn.Parameter(init + noise * torch.randn(K, n_features))

    def forward(self, x: torch.Tensor, fmap: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sigmoid(self.logits).unsqueeze(0).expand(x.shape[0], -1, -1)


class StateMask(nn.Module):
    """State-dependent masks m_k(s) = σ(g_k(x(s))) (§3.1 Atari).

    On a conv feature map (C, H, W) the network is 1×1 convs (a per-location MLP), so the masks stay as maps and
    can be drawn; on flat features it is an MLP N → hidden → K·N.
    """

    def __init__(self, K: int, n_features: int, hidden: int, fmap_channels: int | None = None,
                 init: float = 0.0) -> None:
        super().__init__()
        self.K, self.n_features = K, n_features
        c = fmap_channels
        if c is not None:
            self.net = nn.Sequential(nn.Conv2d(c, c, 1), nn.ReLU(), nn.Conv2d(c, K * c, 1))
            last = self.net[-1]
        else:
            self.net = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, K * n_features))
            last = self.net[-1]
        nn.init.normal_(last.weight, std=0.01)
        nn.init.constant_(last.bias, init)
        self.spatial = c is not None

    def forward(self, x: torch.Tensor, fmap: torch.Tensor | None = None) -> torch.Tensor:
        src = fmap if self.spatial else x
        return torch.sigmoid(self.net(src)).reshape(x.shape[0], self.K, self.n_features)


class RewardDecomposition(nn.Module):
    """x = torso(s); m = masks(x); r̂_k = f_k(x ⊙ m_k [, one-hot a]). ``torso=None`` means x = s (toy);
    a torso from :mod:`rd2.torso` (Nature CNN for frames, MLP for vectors) otherwise."""

    def __init__(self, cfg: DecompositionConfig, n_features: int, n_actions: int = 0,
                 torso: nn.Module | None = None, fmap_channels: int | None = None) -> None:
        super().__init__()
        self.cfg, self.n_features, self.n_actions = cfg, n_features, n_actions
        self.torso = torso
        if cfg.mask_gate not in ("product", "shuffle"):
            raise ValueError(f"unknown mask_gate {cfg.mask_gate!r}: use product or shuffle")
        self.register_buffer("feature_mean", torch.zeros(n_features))
        if cfg.mask_type == "const":
            self.masks: nn.Module = ConstMask(cfg.K, n_features, cfg.mask_init, cfg.mask_init_noise)
        elif cfg.mask_type == "state":
            self.masks = StateMask(cfg.K, n_features, cfg.hidden, fmap_channels, cfg.mask_init)
        elif cfg.mask_type == "none":  # ablation: an unmasked K-head regressor
            self.masks = None
        else:
            raise ValueError(f"unknown mask_type {cfg.mask_type!r}: use state, const or none")
        extra = n_actions if cfg.action_input else 0
        act = {"relu": nn.ReLU, "elu": nn.ELU}[cfg.activation]
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(n_features + extra, cfg.hidden), act(), nn.Linear(cfg.hidden, cfg.hidden), act(),
                          nn.Linear(cfg.hidden, 1))
            for _ in range(cfg.K))
        self.signs = parse_signs(cfg.head_signs, cfg.K)
        if cfg.sign_fn not in ("penalty", "softplus", "relu"):
            raise ValueError(f"unknown sign_fn {cfg.sign_fn!r}: use penalty, softplus or relu")

    def param_groups(self, lr: float, mask_lr_scale: float = 1.0, torso_lr_scale: float = 1.0) -> list[dict]:
        """Adam groups: the heads at ``lr``, the masks at ``lr · mask_lr_scale`` (masks learn faster), the torso at
        ``lr · torso_lr_scale``."""
        masks = list(self.masks.parameters()) if self.masks is not None else []
        torso = list(self.torso.parameters()) if self.torso is not None else []
        ids = {id(p) for p in masks + torso}
        groups = [{"params": [p for p in self.parameters() if id(p) not in ids], "lr": lr}]
        if masks:
            groups.append({"params": masks, "lr": lr * mask_lr_scale})
        if torso:
            groups.append({"params": torso, "lr": lr * torso_lr_scale})
        return groups

    def features(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x(s) (B, N) and, for a conv torso, its (B, C, H, W) feature map (the state masks work on maps)."""
        if self.torso is None:
            return obs.float().flatten(1), None
        if getattr(self.torso, "fmap_shape", None) is not None:
            fmap = self.torso.feature_map(obs)
            return fmap.flatten(1), fmap
        return self.torso(obs), None

    def forward(self, obs: torch.Tensor, action: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Returns ``sub_rewards`` (B, K), ``masks`` (B, K, N) and ``features`` (B, N)."""
        x, fmap = self.features(obs)
        if self.masks is None:
            masks = torch.ones(x.shape[0], self.cfg.K, self.n_features, device=x.device)
        else:
            if self.cfg.mask_grad_to_torso or self.torso is None:
                masks = self.masks(x, fmap)
            else:
                masks = self.masks(x.detach(), None if fmap is None else fmap.detach())
        masked = x.unsqueeze(1) * masks  # (B, K, N): channel k sees only x ⊙ m_k
        if self.cfg.mask_gate == "shuffle" and self.masks is not None:
            if self.training:
                with torch.no_grad():
                    self.feature_mean.lerp_(x.mean(0), 0.01)
                fill = x[torch.randperm(x.shape[0], device=x.device)].detach()
                fill = fill.unsqueeze(1)
            else:
                fill = self.feature_mean.view(1, 1, -1)
            masked = masked + (1 - masks) * fill
        outs = []
        for k, head in enumerate(self.heads):
            inp = masked[:, k]
            if self.cfg.action_input:
                if action is None:
                    raise ValueError("this decomposition reads the action: pass action=")
                inp = torch.cat([inp, F.one_hot(action.long(), self.n_actions).float()], dim=1)
            y = head(inp)
            if self.signs[k] != "0" and self.cfg.sign_fn != "penalty":
                f = F.softplus if self.cfg.sign_fn == "softplus" else F.relu
                y = f(y) if self.signs[k] == "+" else -f(-y)
            outs.append(y)
        return {"sub_rewards": torch.cat(outs, dim=1), "masks": masks, "features": x}


# --- loss terms (§3.2) -----------------------------------------------------------------------------------------
def loss_sum(sub_rewards: torch.Tensor, reward: torch.Tensor) -> torch.Tensor:
    return ((reward - sub_rewards.sum(1)) ** 2).mean()


def loss_mini(masks: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    return torch.log(masks.sum(2) + eps).sum(1).mean()


def loss_div1(masks: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    diff = F.relu(masks.unsqueeze(2) - masks.unsqueeze(1)).sum(3)  # (B, K, K): Σ_i ReLU(m_k^i − m_j^i)
    K = masks.shape[1]
    off = ~torch.eye(K, dtype=torch.bool, device=masks.device)
    return -torch.log(diff[:, off] + eps).sum(1).mean()


def loss_div2_corr(sub_rewards: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    z = sub_rewards - sub_rewards.mean(0, keepdim=True)
    z = z / (z.pow(2).mean(0, keepdim=True).sqrt() + eps)
    corr = (z.T @ z) / sub_rewards.shape[0]
    K = sub_rewards.shape[1]
    off = ~torch.eye(K, dtype=torch.bool, device=sub_rewards.device)
    return corr[off].abs().sum()


def loss_zero(sub_rewards: torch.Tensor, reward: torch.Tensor) -> torch.Tensor:
    zero = reward == 0
    if not zero.any():
        return sub_rewards.new_zeros(())
    return sub_rewards[zero].pow(2).sum(1).mean()


def loss_value(sub_rewards: torch.Tensor, reward: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Soft k-means of the reward values over channels, on the nonzero-reward rows: mean_i Σ_k p_ik (r_i − μ_k)²
    divided by Var(r), with p_ik = (|r̂_ik| + ε) / Σ_j (|r̂_ij| + ε) the share of channel k in transition i's reward
    and μ_k = Σ_i p_ik r_i / Σ_i p_ik. 0 when each channel carries one reward value, 1 when every channel holds the
    same share of every reward (or one channel holds all). Depends on r̂ only through the shares: scale-free, and it
    cannot trade against L_sum's fit of the total. 0 when the nonzero rewards all have one value."""
    nz = reward != 0
    r = reward[nz]
    if r.numel() < 2:
        return sub_rewards.new_zeros(())
    var = r.var(unbiased=False)
    if var <= 0:
        return sub_rewards.new_zeros(())
    a = sub_rewards[nz].abs() + eps
    p = a / a.sum(1, keepdim=True)  # (n, K)
    mu = (p * r[:, None]).sum(0) / p.sum(0).clamp_min(1e-12)
    return (p * (r[:, None] - mu).pow(2)).sum(1).mean() / var


def loss_sign(sub_rewards: torch.Tensor, signs: list[str]) -> torch.Tensor:
    """Soft sign prior: mean_B Σ_k ReLU(−s_k·r̂_k)² over the channels with a sign s_k ∈ {+1, −1}."""
    s = torch.tensor([{"+": 1.0, "-": -1.0, "0": 0.0}[t] for t in signs], device=sub_rewards.device)
    return F.relu(-s * sub_rewards).pow(2).sum(1).mean()


def parse_signs(head_signs: str, K: int) -> list[str]:
    if head_signs == "auto":
        raise ValueError("head_signs='auto' is resolved from collected rewards (rd2.decompose.auto_signs) first")
    signs = [t.strip() for t in head_signs.split(",")] if head_signs else ["0"] * K
    if len(signs) != K or any(t not in ("+", "-", "0") for t in signs):
        raise ValueError(f"head_signs {head_signs!r}: give K={K} comma-separated entries from +, -, 0")
    return signs


def decomposition_loss(out: dict[str, torch.Tensor], reward: torch.Tensor,
                       cfg: DecompositionConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """L_dec and its terms (unweighted) for logging."""
    sub, masks = out["sub_rewards"], out["masks"]
    terms = {"L_sum": loss_sum(sub, reward)}
    total = terms["L_sum"]
    if cfg.mask_type != "none":
        terms["L_mini"] = loss_mini(masks, cfg.eps)
        terms["L_div1"] = loss_div1(masks, cfg.eps)
        total = total + cfg.lambda_mini * terms["L_mini"] + cfg.lambda_div1 * terms["L_div1"]
    if cfg.lambda_div2:
        terms["L_div2"] = loss_div2_corr(sub)
        total = total + cfg.lambda_div2 * terms["L_div2"]
    if cfg.lambda_zero:
        terms["L_zero"] = loss_zero(sub, reward)
        total = total + cfg.lambda_zero * terms["L_zero"]
    if cfg.lambda_value:
        terms["L_value"] = loss_value(sub, reward)
        total = total + cfg.lambda_value * terms["L_value"]
    if cfg.head_signs and cfg.sign_fn == "penalty" and cfg.lambda_sign:
        terms["L_sign"] = loss_sign(sub, parse_signs(cfg.head_signs, cfg.K))
        total = total + cfg.lambda_sign * terms["L_sign"]
    logs = {k: float(v.detach()) for k, v in terms.items()}
    logs["mask_size"] = float(masks.detach().sum(2).mean())
    return total, logs
