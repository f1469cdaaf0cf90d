"""Feature torsos shared by the agents and the decomposition (spec §3.1, §6.4): the Nature CNN for stacked frames,
an MLP for vector observations, and :func:`make_torso` that picks one from the observation shape."""

from __future__ import annotations

import torch
from torch import nn


class NatureCNN(nn.Module):
    """Mnih et al. 2015 torso: conv 32×8×8/4, 64×4×4/2, 64×3×3/1 (ReLU), on uint8 frames scaled to [0, 1].

    For (C, 84, 84) input the feature map is 64×7×7 = 3136 features (spec §6.4). ``forward`` returns them flat;
    ``feature_map`` keeps the (B, 64, H, W) layout so that RD² masks can be drawn as maps (spec §6.5).
    """

    def __init__(self, in_channels: int = 4, frame_hw: tuple[int, int] = (84, 84)) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(in_channels, 32, 8, stride=4), nn.ReLU(),
                                 nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
                                 nn.Conv2d(64, 64, 3, stride=1), nn.ReLU())
        h, w = frame_hw
        for k, s in ((8, 4), (4, 2), (3, 1)):
            h, w = (h - k) // s + 1, (w - k) // s + 1
        if h < 1 or w < 1:
            raise ValueError(f"frames of {frame_hw[0]}×{frame_hw[1]} are too small for the Nature CNN (≥ 36×36)")
        self.fmap_shape = (64, h, w)
        self.out_dim = 64 * h * w

    def feature_map(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs.float() / 255.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.feature_map(obs).flatten(1)


class MLPTorso(nn.Module):
    """Two ReLU layers for vector observations (toy coordinates, CartPole state)."""

    fmap_shape = None

    def __init__(self, in_dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.out_dim = hidden

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs.float().flatten(1))


def make_torso(obs_shape: tuple[int, ...], hidden: int = 64) -> NatureCNN | MLPTorso:
    """Nature CNN for (C, H, W) frames, MLP for flat vectors (a (n,) or any non-image shape, flattened)."""
    obs_shape = tuple(int(d) for d in obs_shape)
    if len(obs_shape) == 3 and min(obs_shape[1:]) >= 36:
        return NatureCNN(obs_shape[0], obs_shape[1:])
    if len(obs_shape) >= 1:
        n = 1
        for d in obs_shape:
            n *= d
        return MLPTorso(n, hidden)
    raise ValueError(f"unsupported observation shape {obs_shape}: expected (C, H, W) frames or a vector")


def reinit_(module: nn.Module | None) -> None:
    """He (Kaiming-normal, fan-in, ReLU gain) weights and zero biases for every conv / linear layer of ``module``.

    PyTorch's default (uniform, a = √5) gives a third of the He variance per layer: on [0, 1] pixels the Nature
    CNN's features come out ~0.02 and a head's output varies by ~1e-4 over inputs, which is where the decomposition
    collapsed (issue 18; ``rd2 decompose`` uses this init by default).
    """
    if module is None:
        return
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
