"""IRGAN for item recommendation (Wang et al., SIGIR 2017; ``geek-ai/irgan/item_recommendation``), spec §3.4.

Two MF models with item bias. The **discriminator** D is trained pointwise: sigmoid cross-entropy on (u, i, 1)
for training positives and (u, j, 0) for generated items, L2 λ_D/B. Its negatives are regenerated every
``d_regen_every`` D epochs: for each user, as many items as it has positives, drawn from softmax(f_G(u,·)/τ) over
**all** items (τ = 0.2, positives not excluded, as the official ``generate_for_d``). The **generator** G is trained
by REINFORCE over its full softmax p_G(·|u) = softmax(f_G(u,·)): for each user, 2·|pos| items are drawn from the
mixture p_n = (1 − λ_s)·p_G + λ_s·uniform(positives of u), rewarded with 2(σ(f_D(u,j)) − 0.5), importance-weighted
by p_G(j)/p_n(j), and the loss is −mean_j log p_G(j|u)·reward_j.
Schedule: repeated cycles of ``d_epochs`` D epochs then ``g_epochs`` G epochs; one trainer epoch is one of these
inner epochs (the official schedule is 15 × (100 + 50), preset ``irgan-official``). Both steps cost O(N·M·d) per
epoch: the cost SD-GAR's sampling-decomposable generator avoids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F

from sdgar.engine import SampledNegativeEngine
from sdgar.models.base import TrainData
from sdgar.models.dns import DNS, DNSConfig
from sdgar.models.mf import MF, make_optimizer


@dataclass
class IRGANConfig:
    """Algorithm constants are the official ones; sizes, optimiser and schedule default to budgets like the other
    baselines' (official values in brackets, for ml-100k; all of them in the ``irgan-official`` preset)."""

    dim: int = 32  # [5]
    temperature: float = 0.2  # τ of D's negative sampler softmax(f_G/τ) (official generate_for_d)
    sample_lambda: float = 0.2  # λ_s of G's proposal (1 − λ_s)·p_G + λ_s·uniform(positives)
    d_epochs: int = 5  # D epochs per cycle [100]; the 2:1 official cycle does not fit a 75-epoch budget
    g_epochs: int = 5  # G epochs per cycle [50]
    d_regen_every: int = 5  # regenerate D's negatives every 5 D epochs (official)
    d_lambda: float = 0.1  # D's L2 λ, divided by batch_size (official lamda = 0.1 / BATCH_SIZE)
    g_lambda: float = 0.0  # G's L2 λ, divided by batch_size (official 0.0)
    batch_size: int = 512  # D minibatch [16]
    g_user_batch: int = 256  # users per G step [1: one user per step]
    optimizer: Literal["sgd", "adam", "lazy_adam"] = "adam"  # [sgd]; lazy_adam: row-sparse updates, as SD-GAR's
    learning_rate: float = 0.001  # (official, both models)
    init_delta: float = 0.05  # U[−δ, δ] initialisation of both models (official INIT_DELTA)
    pretrain_dns_epochs: int = 10  # DNS epochs on G before the first cycle (official: G starts from a DNS model)
    score_with: Literal["generator", "discriminator"] = "generator"  # official IRGAN evaluates G


def importance_proposal(prob: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, n_pos: torch.Tensor,
                        lam: float) -> torch.Tensor:
    """p_n = (1 − λ)·p_G + λ·uniform(positives) for a batch; ``(rows, cols)`` are the batch's positives and
    ``n_pos[b]`` the number of positives of row b."""
    pn = (1.0 - lam) * prob
    return pn.index_put((rows, cols), lam / n_pos[rows].to(prob.dtype), accumulate=True)


def reinforce_loss(log_prob: torch.Tensor, d_logits: torch.Tensor, weight: torch.Tensor,
                   mask: torch.Tensor) -> torch.Tensor:
    """−mean over each user's samples of log p_G(j|u)·reward_j·w_j, averaged over users; reward = 2(σ(f_D) − ½)."""
    reward = (2.0 * (torch.sigmoid(d_logits) - 0.5) * weight).detach()
    per_user = -(log_prob * reward * mask).sum(1) / mask.sum(1).clamp_min(1)
    return per_user.mean()


def _uniform_mf(n_users: int, n_items: int, dim: int, delta: float, sparse: bool = False) -> MF:
    mf = MF(n_users, n_items, dim, sparse=sparse)
    with torch.no_grad():
        for p in (mf.user, mf.item, mf.bias):
            p.uniform_(-delta, delta)
    return mf


class IRGAN(SampledNegativeEngine):
    name: ClassVar[str] = "irgan"

    def __init__(self, n_users: int, n_items: int, config: IRGANConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or IRGANConfig()
        self.n_users, self.n_items = n_users, n_items
        sparse = cfg.optimizer == "lazy_adam"
        self.d = _uniform_mf(n_users, n_items, cfg.dim, cfg.init_delta, sparse)
        self.g = _uniform_mf(n_users, n_items, cfg.dim, cfg.init_delta, sparse)
        def make(ps):
            if cfg.optimizer == "sgd":
                return torch.optim.SGD(ps, lr=cfg.learning_rate)
            if cfg.optimizer == "adam":
                return torch.optim.Adam(ps, lr=cfg.learning_rate)
            return make_optimizer(ps, cfg.optimizer, cfg.learning_rate)

        self.d_opt, self.g_opt = make(self.d.parameters()), make(self.g.parameters())
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long))
        self.d_negatives: torch.Tensor | None = None  # current D data, aligned with data.torch_pairs()

    def factors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (self.g if self.config.score_with == "generator" else self.d).factors()

    def extra_state_dict(self) -> dict[str, Any]:
        return {"d_opt": self.d_opt.state_dict(), "g_opt": self.g_opt.state_dict(),
                "d_negatives": self.d_negatives if self.d_negatives is not None else torch.zeros(0)}

    def load_extra_state_dict(self, state: dict[str, Any]) -> None:
        self.d_opt.load_state_dict(state["d_opt"])
        self.g_opt.load_state_dict(state["g_opt"])
        neg = state["d_negatives"]
        self.d_negatives = neg.to(self.d.user.device) if neg.numel() else None

    # -- D data: len(pos_u) items per user from softmax(f_G(u,·)/τ) over all items
    @torch.no_grad()
    def generate_for_d(self, data: TrainData, gen: torch.Generator, chunk: int = 1024) -> torch.Tensor:
        device = self.d.user.device
        indptr = data.matrix.indptr
        counts = np.diff(indptr)
        out = torch.empty(data.n_interactions, dtype=torch.long, device=device)
        user, item, bias = self.g.factors()
        for s in range(0, data.n_users, chunk):
            e = min(s + chunk, data.n_users)
            n = torch.from_numpy(counts[s:e]).to(device)
            if int(n.max()) == 0:
                continue
            prob = torch.softmax((user[s:e] @ item.T + bias) / self.config.temperature, dim=1)
            draws = torch.multinomial(prob, int(n.max()), replacement=True, generator=gen)
            keep = torch.arange(draws.shape[1], device=device)[None, :] < n[:, None]
            out[int(indptr[s]):int(indptr[e])] = draws[keep]  # row-major: user s's draws first, as CSR order
        return out

    def d_loss(self, rows: dict[str, torch.Tensor], gen: torch.Generator
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Pointwise sigmoid cross-entropy on (u, i, label) rows + λ_D/B·½‖θ‖² of the batch rows."""
        cfg = self.config
        p_u = self.d.users(rows["u"])
        q_i, b_i = self.d.items(rows["i"])
        logits = self.d.logits(p_u, q_i, b_i)
        l2 = 0.5 * (p_u.square().sum() + q_i.square().sum() + b_i.square().sum())
        return F.binary_cross_entropy_with_logits(logits, rows["label"]) + cfg.d_lambda / cfg.batch_size * l2, {}

    def d_epoch(self, data: TrainData, gen: torch.Generator) -> dict[str, float]:
        """D on the engine: positives labelled 1 and the generated items labelled 0, shuffled together."""
        users, pos = data.torch_pairs(self.d.user.device)
        assert self.d_negatives is not None
        rows = {"u": torch.cat([users, users]), "i": torch.cat([pos, self.d_negatives]),
                "label": torch.cat([torch.ones_like(users), torch.zeros_like(users)]).float()}
        return self.minibatch_epoch(rows, self.d_loss, self.d_opt, self.config.batch_size, gen, prefix="d_")

    def g_epoch(self, data: TrainData, gen: torch.Generator) -> dict[str, float]:
        cfg = self.config
        device = self.g.user.device
        counts = np.diff(data.matrix.indptr)
        active = np.flatnonzero(counts > 0)
        perm = torch.randperm(len(active), generator=gen, device=gen.device).cpu().numpy()
        d_user, d_item, d_bias = self.d.factors()
        total, n_batches, ess_sum = 0.0, 0, 0.0
        for s in range(0, len(active), cfg.g_user_batch):
            batch = np.sort(active[perm[s:s + cfg.g_user_batch]])
            sub = data.matrix[batch]
            n_pos = torch.from_numpy(counts[batch]).to(device)
            rows = torch.from_numpy(np.repeat(np.arange(len(batch)), counts[batch])).to(device)
            cols = torch.from_numpy(sub.indices.astype(np.int64)).to(device)
            u = torch.from_numpy(batch).to(device)
            p_u = self.g.users(u)
            log_prob_all = torch.log_softmax(p_u @ self.g.item.T + self.g.bias, dim=1)  # full softmax over M
            with torch.no_grad():
                prob = log_prob_all.exp()
                pn = importance_proposal(prob, rows, cols, n_pos, cfg.sample_lambda)
                n_samp = 2 * n_pos
                j = torch.multinomial(pn, int(n_samp.max()), replacement=True, generator=gen)
                mask = (torch.arange(j.shape[1], device=device)[None, :] < n_samp[:, None]).float()
                weight = prob.gather(1, j) / pn.gather(1, j)
                d_logits = (d_user[u][:, None, :] * d_item[j]).sum(-1) + d_bias[j]
            loss = reinforce_loss(log_prob_all.gather(1, j), d_logits, weight, mask)
            if cfg.g_lambda > 0:
                q_j, b_j = self.g.items(j)
                l2 = 0.5 * (p_u.square().sum() + (q_j.square().sum(-1) * mask).sum() + (b_j.square() * mask).sum())
                loss = loss + cfg.g_lambda / cfg.batch_size * l2
            self.precision.step(loss, self.g_opt)
            total += loss.detach()
            ess_sum += float((weight * mask).sum() / mask.sum())
            n_batches += 1
        return {"g_loss": float(total) / max(n_batches, 1), "mean_is_weight": ess_sum / max(n_batches, 1)}

    def pretrain(self, data: TrainData, gen: torch.Generator) -> None:
        """G's warm start: ``pretrain_dns_epochs`` epochs of DNS on an MF of the same size, copied into G."""
        cfg = self.config
        dns = DNS(self.n_users, self.n_items, DNSConfig(dim=cfg.dim, learning_rate=cfg.learning_rate,
                                                        batch_size=cfg.batch_size)).to(self.g.user.device)
        for _ in range(cfg.pretrain_dns_epochs):
            dns.train_epoch(data, gen)
        self.g.load_state_dict(dns.d.state_dict())

    def train_epoch(self, data: TrainData, gen: torch.Generator) -> dict[str, float]:
        cfg = self.config
        k = int(self.epochs_done)
        if k == 0 and cfg.pretrain_dns_epochs > 0:
            self.pretrain(data, gen)
        pos_in_cycle = k % (cfg.d_epochs + cfg.g_epochs)
        if pos_in_cycle < cfg.d_epochs:
            if pos_in_cycle % cfg.d_regen_every == 0 or self.d_negatives is None:
                self.d_negatives = self.generate_for_d(data, gen)
            stats = {"phase": 0.0, **self.d_epoch(data, gen)}
            stats["loss"] = stats["d_loss"]
        else:
            stats = {"phase": 1.0, **self.g_epoch(data, gen)}
            stats["loss"] = stats["g_loss"]
        self.epochs_done += 1
        return stats
