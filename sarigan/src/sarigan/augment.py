"""ADA-style augmentation for small data sets (Karras et al. 2020, "Training GANs with limited data"), optional.

Every image D sees, real or fake, goes through the same random, differentiable transforms, each applied per
sample with probability p; p is adapted during training from the overfitting heuristic r_t = E[sign(D(real))]:
every ``ada_interval`` iterations p += sign(r_t − target)·(batch·interval)/(ada_kimg·1000), clipped to [0, 1).

The transforms are a CPU-friendly subset of ADA's pipeline, all index / elementwise operations (no grid_sample,
so R1's double backward through them works on CPU): x-flip, integer translation up to 1/8 of the image (zero
padding), brightness, contrast, saturation, and cutout (a square of half the side, DiffAugment's). ADA's
geometric warps with reflection padding, rotations and colour hue rotation are not implemented (say so when
comparing to the paper's ADA numbers). The random draws come from the global torch RNG, which checkpoints save.
"""

from __future__ import annotations

import torch


def _per_sample(p: float, n: int, device: torch.device) -> torch.Tensor:
    return (torch.rand(n, 1, 1, 1, device=device) < p).float()


def augment(x: torch.Tensor, p: float) -> torch.Tensor:
    """Images [B, C, H, W] in [−1, 1] → augmented, differentiable with respect to x. p = 0 returns x unchanged."""
    if p <= 0:
        return x
    b, _, h, w = x.shape
    dev = x.device
    # x-flip
    x = torch.lerp(x, x.flip(3), _per_sample(p, b, dev))
    # integer translation (zero = mid-grey background outside), up to 1/8 of the side
    m = _per_sample(p, b, dev)[:, 0, 0, 0].bool()
    if m.any():
        shift = max(1, h // 8)
        tx = torch.randint(-shift, shift + 1, (b,), device=dev) * m
        ty = torch.randint(-shift, shift + 1, (b,), device=dev) * m
        gy = torch.arange(h, device=dev)[None, :, None] - ty[:, None, None]
        gx = torch.arange(w, device=dev)[None, None, :] - tx[:, None, None]
        inside = ((gy >= 0) & (gy < h) & (gx >= 0) & (gx < w)).float()[:, None]
        idx = (gy.clamp(0, h - 1) * w + gx.clamp(0, w - 1)).flatten(1)  # [B, H·W]
        flat = x.flatten(2)
        x = flat.gather(2, idx[:, None].expand(-1, x.shape[1], -1)).view_as(x) * inside
    # brightness, contrast, saturation (DiffAugment's ranges)
    x = x + (torch.rand(b, 1, 1, 1, device=dev) - 0.5) * _per_sample(p, b, dev)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    contrast = 1 + (torch.rand(b, 1, 1, 1, device=dev) - 0.5) * _per_sample(p, b, dev)
    x = (x - mean) * contrast + mean
    grey = x.mean(dim=1, keepdim=True)
    sat = 1 + (torch.rand(b, 1, 1, 1, device=dev) * 2 - 1) * _per_sample(p, b, dev)
    x = (x - grey) * sat + grey
    # cutout: a square of half the side, zeroed
    m = _per_sample(p, b, dev)
    size = h // 2
    cy = torch.randint(0, h - size + 1, (b, 1, 1), device=dev)
    cx = torch.randint(0, w - size + 1, (b, 1, 1), device=dev)
    yy = torch.arange(h, device=dev)[None, :, None]
    xx = torch.arange(w, device=dev)[None, None, :]
    hole = ((yy >= cy) & (yy < cy + size) & (xx >= cx) & (xx < cx + size)).float()[:, None]
    return x * (1 - hole * m)


class AdaptiveAugment:
    """The adaptive probability p and its r_t accumulator (state saved in checkpoints for exact resume)."""

    def __init__(self, target: float, interval: int, kimg: float, batch: int) -> None:
        self.target, self.interval, self.kimg, self.batch = target, interval, kimg, batch
        self.p = 0.0
        self._sum, self._n = 0.0, 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return augment(x, self.p)

    def observe(self, sign_mean: float, step: int) -> None:
        """Accumulate E[sign(D(real))] of one iteration (already averaged over processes); every ``interval``
        iterations move p towards r_t = target."""
        self._sum += float(sign_mean)
        self._n += 1
        if (step + 1) % self.interval == 0 and self._n:
            r_t = self._sum / self._n
            adjust = (1.0 if r_t > self.target else -1.0) * self.batch * self.interval / (self.kimg * 1000)
            self.p = min(max(self.p + adjust, 0.0), 1.0 - 1e-6)
            self._sum, self._n = 0.0, 0

    def state_dict(self) -> dict[str, float]:
        return {"p": self.p, "sum": self._sum, "n": self._n}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.p, self._sum, self._n = float(state["p"]), float(state["sum"]), int(state["n"])
