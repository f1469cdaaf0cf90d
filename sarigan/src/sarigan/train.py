"""SariGAN training loop, one iteration exactly as spec §1.8.

1. D step: fakes from fresh latents (two with p = mixing); L_D = logistic + mi_weight·L_MI(fake).
2. Every d_reg_every iterations: lazy R1 on reals, (γ/2)·E‖∇D‖²·d_reg_every.
3. G step with new latents: L_G = non-saturating + (λ_sim ΣL_sim + λ_bal ΣL_bal)/20 + mi_weight·L_MI.
4. Every g_reg_every iterations: lazy path-length step on a batch shrunk by pl_batch_shrink.
5. G EMA (half-life in images) and the running mean w̄ of the final w for truncation.

Adam(β₁ = 0, β₂ = 0.99) with the lazy-regularization correction lr·r, β^r, r = k/(k+1). Multi-process data
parallel (torchrun; gloo on CPU, nccl on CUDA): each rank draws its own batch share and latents, gradients are
averaged with one all-reduce per step (as StyleGAN3's training loop does; robust to the toggled requires_grad,
unused parameters and double backward of GAN training, where DistributedDataParallel's hooks are not).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from neurips20_common import (
    CheckpointManager,
    FiniteGuard,
    NonFiniteError,
    RunDir,
    RunningMean,
    capture_rng_state,
    progress,
    restore_rng_state,
    seed_everything,
)

from sarigan.augment import AdaptiveAugment
from sarigan.config import SariGANConfig
from sarigan.data import BatchSampler, ImageData, save_grid
from sarigan.losses import d_logistic, g_nonsaturating, group_loss, mi_loss, path_length_penalty, r1_penalty
from sarigan.metrics.features import RandomConvFeatures
from sarigan.metrics.frechet import feature_stats, frechet_distance
from sarigan.networks import Discriminator, Generator


def z_from_seeds(seeds: list[int], z_dim: int) -> torch.Tensor:
    """One latent per seed, independent of batch composition (fixed-seed sample grids)."""
    return torch.stack([torch.randn(z_dim, generator=torch.Generator().manual_seed(int(s))) for s in seeds])


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@dataclasses.dataclass
class Fakes:
    """One phase's generated batch: what D scores, the grouping losses, the MI target (None: MI off this batch),
    w¹ (for w̄), the W+ the path length differentiates against, and extra weighted G losses name → (λ, value)."""

    image: torch.Tensor
    l_sim: torch.Tensor
    l_bal: torch.Tensor
    target: torch.Tensor | None
    w1: torch.Tensor
    ws: torch.Tensor
    losses: dict[str, tuple[float, torch.Tensor]] = dataclasses.field(default_factory=dict)


class FrechetTracker:
    """Fréchet distance between G_ema samples and reals on :class:`RandomConvFeatures` (a training trend line).

    Features are standardized per dimension by the real features' std, so that no dimension dominates.
    """

    def __init__(self, data: ImageData, n: int, device: torch.device, batch: int = 250) -> None:
        self.n, self.device, self.batch = n, device, batch
        self.extractor = RandomConvFeatures().to(device)
        idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(123))[:n]
        real = torch.cat([self.extractor(data.images[idx[i: i + batch]].to(device).float() / 127.5 - 1)
                          for i in range(0, len(idx), batch)])
        self.scale = real.std(0) + 1e-6
        self.mu, self.sigma = feature_stats(real / self.scale)

    @torch.no_grad()
    def __call__(self, G: Generator) -> float:
        gen = torch.Generator().manual_seed(2024)
        feats = []
        for i in range(0, self.n, self.batch):
            z = torch.randn(min(self.batch, self.n - i), G.cfg.z_dim, generator=gen).to(self.device)
            feats.append(self.extractor(G(z, noise_mode="const")))
        mu, sigma = feature_stats(torch.cat(feats) / self.scale)
        return frechet_distance(self.mu, self.sigma, mu, sigma)


class Trainer:
    def __init__(self, cfg: SariGANConfig, data: ImageData, device: torch.device | str = "cpu", seed: int = 0
                 ) -> None:
        self.cfg, self.data, self.device, self.seed = cfg, data, torch.device(device), seed
        self.rank, self.world = _world()
        if cfg.batch % self.world:
            raise ValueError(f"batch {cfg.batch} is not divisible by the {self.world} processes")
        if data.resolution != cfg.resolution:
            raise ValueError(f"data is {data.resolution}² but the config trains at {cfg.resolution}²")
        seed_everything(seed)  # the same initial weights on every rank
        self.G = self.build_generator().to(self.device)
        self.D = Discriminator(cfg).to(self.device)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        g_ratio = cfg.g_reg_every / (cfg.g_reg_every + 1) if cfg.pl_weight > 0 else 1.0
        d_ratio = cfg.d_reg_every / (cfg.d_reg_every + 1) if cfg.r1_gamma > 0 else 1.0
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr * g_ratio, betas=(0.0, 0.99**g_ratio))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr * d_ratio, betas=(0.0, 0.99**d_ratio))
        seed_everything(seed + 7919 * self.rank)  # different latents / noise per rank from here on
        self.data_gen = torch.Generator().manual_seed(seed * 1_000_003 + self.rank + 1)
        self.sampler = BatchSampler(data, cfg.batch // self.world, cfg.flip, self.data_gen)
        self.step, self.nimg = 0, 0
        self.pl_mean = torch.zeros((), device=self.device)
        # ADA-style augmentation of everything D sees (augment.py); identity when cfg.augment == "none"
        self.ada = (AdaptiveAugment(cfg.ada_target, cfg.ada_interval, cfg.ada_kimg, cfg.batch)
                    if cfg.augment == "ada" else None)
        self.aug: Callable[[torch.Tensor], torch.Tensor] = self.ada if self.ada is not None else (lambda x: x)
        self.use_amp = cfg.amp and self.device.type == "cuda"

    # ----------------------------------------------------------------------------------------------------------
    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_amp)

    def build_generator(self) -> Generator:
        """The generator to train (the inpainting trainer returns its conditional subclass)."""
        return Generator(self.cfg)

    def generate(self, batch: int, real: torch.Tensor) -> Fakes:
        """Fakes for one phase; the unconditional G ignores ``real`` (the inpainting trainer completes it)."""
        ws, target, w1 = self.sample_ws(batch)
        image, l_sim, l_bal = self.G.synthesis(ws)
        return Fakes(image, l_sim, l_bal, target, w1, ws)

    def sample_ws(self, batch: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """W+ latents [B, n_latent, 2d], the MI target (None when MI is off for this batch), and w¹ [B, 2d].

        With p = mixing two codes are mixed: with p = swap_prob as [w_g¹; w_c²] on every layer (the official
        dead branch; target = the swapped w), else a crossover at k ~ U[1, n_latent−1] (no MI target unless
        mi_on_mixed, whose target is then the layer-average of W+, our choice: the official code has none).
        """
        cfg, n, d = self.cfg, self.G.n_latent, self.cfg.w_dim
        w1 = self.G.mapping(torch.randn(batch, cfg.z_dim, device=self.device))
        if torch.rand(()).item() >= cfg.mixing:
            return w1[:, None].expand(-1, n, -1), w1, w1
        w2 = self.G.mapping(torch.randn(batch, cfg.z_dim, device=self.device))
        if torch.rand(()).item() < cfg.swap_prob:
            w = torch.cat([w1[:, :d], w2[:, d:]], dim=1)
            return w[:, None].expand(-1, n, -1), w, w1
        k = int(torch.randint(1, n, ()).item())
        ws = torch.cat([w1[:, None].expand(-1, k, -1), w2[:, None].expand(-1, n - k, -1)], dim=1)
        return ws, (ws.mean(1) if cfg.mi_on_mixed else None), w1

    def _sync(self, module: torch.nn.Module) -> None:
        """Average gradients over ranks (one flat all-reduce)."""
        if self.world == 1:
            return
        params = [p for p in module.parameters() if p.grad is not None]
        flat = torch.cat([p.grad.flatten() for p in params])
        dist.all_reduce(flat)
        flat /= self.world
        for p, g in zip(params, flat.split([p.numel() for p in params]), strict=True):
            p.grad.copy_(g.view_as(p))

    def _mean_over_ranks(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            t = t.clone()
            dist.all_reduce(t)
            t /= self.world
        return t

    # ----------------------------------------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        cfg, G, D = self.cfg, self.G, self.D
        batch = self.sampler.batch
        stats: dict[str, float] = {}
        real = self.sampler.next(self.device)

        # 1. discriminator (and Q head)
        with torch.no_grad(), self._autocast():
            fakes = self.generate(batch, real)
        target = fakes.target
        with self._autocast():
            real_logit, _ = D(self.aug(real))
            fake_logit, q = D(self.aug(fakes.image))
        if self.ada is not None:
            self.ada.observe(self._mean_over_ranks(torch.sign(real_logit.detach().float()).mean()).item(), self.step)
            stats["ada_p"] = self.ada.p
        loss_d = d_logistic(real_logit.float(), fake_logit.float())
        stats["loss_d"] = loss_d.item()
        if target is not None and cfg.mi_weight > 0:
            l_mi = mi_loss(q, target)
            loss_d = loss_d + cfg.mi_weight * l_mi
            stats["mi_d"] = l_mi.item()
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self._sync(D)
        self.opt_d.step()

        # 2. lazy R1
        if cfg.r1_gamma > 0 and self.step % cfg.d_reg_every == 0:
            real.requires_grad_(True)
            real_logit, _ = D(self.aug(real))  # R1 w.r.t. the reals, through the augmentation (as SG2-ADA)
            r1 = r1_penalty(real_logit, real)
            self.opt_d.zero_grad(set_to_none=True)
            (cfg.r1_gamma / 2 * r1 * cfg.d_reg_every + 0 * real_logit[0]).backward()
            self._sync(D)
            self.opt_d.step()
            stats["r1"] = r1.item()

        # 3. generator (+ grouping losses)
        D.requires_grad_(False)
        with self._autocast():
            fakes = self.generate(batch, real)
            fake_logit, q = D(self.aug(fakes.image))
        target, w1, l_sim, l_bal = fakes.target, fakes.w1, fakes.l_sim, fakes.l_bal
        loss_g = g_nonsaturating(fake_logit.float())
        stats["loss_g"] = loss_g.item()
        for name, (weight, value) in fakes.losses.items():
            loss_g = loss_g + weight * value.float()
            stats[name] = value.item()
        if cfg.grouping == "learned":
            loss_g = loss_g + group_loss(cfg, l_sim.float(), l_bal.float())
            stats["l_sim"], stats["l_bal"] = l_sim.item(), l_bal.item()
        if target is not None and cfg.mi_weight > 0:
            l_mi = mi_loss(q, target)
            loss_g = loss_g + cfg.mi_weight * l_mi
            stats["mi_g"] = l_mi.item()
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self._sync(G)
        self.opt_g.step()
        G.update_w_avg(self._mean_over_ranks(w1.detach().float().mean(0)), cfg.w_avg_beta)

        # 4. lazy path-length regularization (Jacobian w.r.t. W+)
        if cfg.pl_weight > 0 and self.step % cfg.g_reg_every == 0:
            shrunk = max(1, batch // cfg.pl_batch_shrink)
            fakes = self.generate(shrunk, real[:shrunk].detach())
            img = fakes.image
            penalty, new_mean, path_len = path_length_penalty(img, fakes.ws, self.pl_mean, cfg.pl_decay)
            self.opt_g.zero_grad(set_to_none=True)
            (cfg.pl_weight * cfg.g_reg_every * penalty + 0 * img[0, 0, 0, 0]).backward()
            self._sync(G)
            self.opt_g.step()
            self.pl_mean = self._mean_over_ranks(new_mean.detach())
            stats["pl"], stats["path_len"] = penalty.item(), path_len.item()
        D.requires_grad_(True)

        # 5. EMA of G, with the half-life in images (optional SG2-ADA ramp-up)
        self.nimg += cfg.batch
        half_life = cfg.ema_kimg * 1000
        if cfg.ema_rampup > 0:
            half_life = min(half_life, self.nimg * cfg.ema_rampup)
        beta = 0.5 ** (cfg.batch / max(half_life, 1e-8))
        with torch.no_grad():
            for p_ema, p in zip(self.G_ema.parameters(), G.parameters(), strict=True):
                p_ema.lerp_(p, 1 - beta)
            for b_ema, b in zip(self.G_ema.buffers(), G.buffers(), strict=True):
                b_ema.copy_(b)
        self.step += 1
        return stats

    # ----------------------------------------------------------------------------------------------------------
    def grouping_stats(self) -> dict[str, float]:
        """Mean τ and mean number of non-empty groups over the learned-grouping layers."""
        layers = [m for m in self.G.styled_layers() if m.mode == "learned"]
        if not layers:
            return {}
        taus = [m.grouping.tau.item() for m in layers]
        used = [len(torch.unique(m.group_index())) for m in layers]
        return {"tau": float(np.mean(taus)), "groups_used": float(np.mean(used))}

    def state_dict(self) -> dict[str, Any]:
        rng = capture_rng_state({"data": self.data_gen})
        if self.world > 1:
            all_rng: list[Any] = [None] * self.world
            dist.all_gather_object(all_rng, rng)
        else:
            all_rng = [rng]
        return {"config": dataclasses.asdict(self.cfg), "G": self.G.state_dict(), "D": self.D.state_dict(),
                "G_ema": self.G_ema.state_dict(), "opt_g": self.opt_g.state_dict(),
                "opt_d": self.opt_d.state_dict(), "step": self.step, "nimg": self.nimg,
                "pl_mean": self.pl_mean.detach().cpu(), "rng": all_rng, "world": self.world, "seed": self.seed,
                **({"ada": self.ada.state_dict()} if self.ada is not None else {})}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.G_ema.load_state_dict(state["G_ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.step, self.nimg = int(state["step"]), int(state["nimg"])
        self.pl_mean = state["pl_mean"].to(self.device)
        if self.ada is not None and "ada" in state:
            self.ada.load_state_dict(state["ada"])
        if len(state["rng"]) == self.world:
            restore_rng_state(state["rng"][self.rank], {"data": self.data_gen})
        else:  # another process count: continue with fresh per-rank streams
            seed_everything(self.seed + 7919 * self.rank + self.step)
            self.data_gen.manual_seed(self.seed + self.step + self.rank)

    def _out_of_time(self, deadline: float) -> bool:
        """The same decision on every rank (rank 0's clock)."""
        if deadline == math.inf:
            return False
        flag = torch.tensor(float(time.time() > deadline), device=self.device)
        if self.world > 1:
            dist.broadcast(flag, 0)
        return bool(flag.item())

    # ----------------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample_grid(self, path: Path, seeds: list[int], psi: float = 1.0) -> Path:
        z = z_from_seeds(seeds, self.cfg.z_dim).to(self.device)
        images = torch.cat([self.G_ema(z[i: i + 64], psi=psi, noise_mode="const") for i in range(0, len(z), 64)])
        return save_grid(images, path, upscale=max(1, 128 // self.cfg.resolution))

    def _losses_finite(self, stats: dict[str, float]) -> bool:
        """All of this step's losses finite on every rank (one tiny all-reduce, so that all ranks stop together)."""
        ok = all(math.isfinite(v) for v in stats.values())
        if self.world > 1:
            flag = torch.tensor(float(ok), device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
            ok = bool(flag.item())
        return ok

    def fit(self, total_kimg: float, run: RunDir | None = None, extra: dict[str, Any] | None = None,
            log: Callable[[str], None] = print, tensorboard: bool = False) -> None:
        """Train until ``total_kimg`` thousand images, writing samples, metrics and checkpoints into ``run``.

        NaN/Inf guard (issue 15): the losses are checked every iteration and G, D, G_ema before every metrics row,
        Fréchet distance, sample grid and checkpoint; training stops with :class:`NonFiniteError` naming the
        iteration and the last finite checkpoint (which is never rotated out).
        """
        cfg = self.cfg
        main = self.rank == 0 and run is not None
        total_steps = math.ceil(total_kimg * 1000 / cfg.batch)
        ckpts = CheckpointManager(run.checkpoints, keep_last=3) if run is not None else None
        guard = FiniteGuard(checkpoints=ckpts, what="iteration")
        metrics = run.metrics(resume_step=self.step, tensorboard=tensorboard) if main else None
        best_fd: tuple[float, int] | None = None
        tracker = FrechetTracker(self.data, cfg.fd_samples, self.device) if cfg.fd_every > 0 and main else None
        seeds = list(range(64))
        if main and self.step == 0:
            save_grid(self.data.images[:64].float() / 127.5 - 1, run.file("reals.png"),
                      upscale=max(1, 128 // cfg.resolution))
        means = RunningMean()
        bar = progress(total=total_steps, initial=self.step, desc="sarigan", disable=None if main else True)
        train_time, s0 = 0.0, self.step
        deadline = time.time() + cfg.max_minutes * 60 if cfg.max_minutes > 0 else math.inf
        row: dict[str, Any] = {}
        while self.step < total_steps:
            t = time.perf_counter()
            stats = self.train_step()
            train_time += time.perf_counter() - t
            means.update(**stats)
            if not self._losses_finite(stats):
                if main:
                    metrics.log({"step": self.step, "kimg": self.nimg / 1000, **means.means()})
                guard.check(self.step, **stats)
                raise NonFiniteError(f"a loss became NaN/Inf on another process at iteration {self.step}")
            bar.update(1)
            bar.set_postfix(d=f"{stats['loss_d']:.3f}", g=f"{stats['loss_g']:.3f}", refresh=False)
            last = self.step == total_steps or self._out_of_time(deadline)
            if (self.step % cfg.log_every == 0 or last or self.step % cfg.ckpt_every == 0
                    or self.step % cfg.sample_every == 0 or (cfg.fd_every > 0 and self.step % cfg.fd_every == 0)):
                guard.check_module(self.step, self.G, self.D, self.G_ema, force=True)
            row: dict[str, Any] = {}
            if self.step % cfg.log_every == 0 or last:
                sec = train_time / max(1, self.step - s0)
                row.update(step=self.step, kimg=self.nimg / 1000, sec_per_it=sec, **means.means(),
                           **self.grouping_stats())
                means.reset()
                if main:
                    eta = sec * (total_steps - self.step)
                    shown = " ".join(f"{k}={v:.4g}" for k, v in row.items() if k not in ("step", "kimg"))
                    log(f"it {self.step}/{total_steps} kimg {self.nimg / 1000:.1f} eta {eta / 60:.1f} min {shown}")
            if tracker is not None and (self.step % cfg.fd_every == 0 or last):
                fd = tracker(self.G_ema)
                best_fd = (fd, self.step) if best_fd is None or fd < best_fd[0] else best_fd
                row.update(step=self.step, kimg=self.nimg / 1000, fd=fd)
                log(f"it {self.step} kimg {self.nimg / 1000:.1f} frechet_distance(random-conv features) {fd:.3f}")
            if main and row:
                metrics.log(row)
            if main and (self.step % cfg.sample_every == 0 or last):
                self.sample_grid(run.file(f"samples/fakes{self.step:07d}.png"), seeds)
            if ckpts is not None and (self.step % cfg.ckpt_every == 0 or last):
                state = self.state_dict()  # every rank joins the RNG gather
                if main:
                    ckpts.save(self.step, {**state, **(extra or {})})
            if last:
                if self.step < total_steps:
                    log(f"stopped at the {cfg.max_minutes:g}-minute budget after {self.step} iterations")
                break
        bar.close()
        if main:
            metrics.close()
            self.sample_grid(run.file("samples/final.png"), seeds)
            self.sample_grid(run.file("samples/final_trunc0.7.png"), seeds, psi=0.7)
            summary: dict[str, Any] = {"step": self.step, "kimg": self.nimg / 1000, "final": row}
            if best_fd is not None:  # the Fréchet trend of this session (a resumed run restarts it)
                summary["best_fd"] = {"fd": best_fd[0], "step": best_fd[1]}
            run.write_json("summary.json", summary)
