"""Matrix factorisation with item bias: SD-GAR's discriminator D and BPR's scorer (spec §1.2).

f(u, i) = p_u · q_i + b_i, no user bias (``score="dot"``, official); ``score="cosine"``: f(u, i) =
scale · cos(p_u, q_i) + b_i (issue 17's option; the norms use F.normalize's ε = 1e-12). p and q start
Glorot-uniform over the whole table (limit √(6/(rows + d)), TF's ``glorot_uniform`` on an [rows, d] variable),
biases at zero.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MF(nn.Module):
    def __init__(self, n_users: int, n_items: int, dim: int, sparse: bool = False, score: str = "dot",
                 score_scale: float = 1.0) -> None:
        super().__init__()
        if score not in ("dot", "cosine"):
            raise ValueError(f"score must be 'dot' or 'cosine', got {score!r}")
        self.score = score
        self.score_scale = float(score_scale)
        self.user = nn.Parameter(torch.empty(n_users, dim))
        self.item = nn.Parameter(torch.empty(n_items, dim))
        self.bias = nn.Parameter(torch.zeros(n_items))
        self.sparse = sparse  # row-sparse gradients for the embeddings (lazy_adam)
        nn.init.xavier_uniform_(self.user)
        nn.init.xavier_uniform_(self.item)

    def users(self, idx: torch.Tensor) -> torch.Tensor:
        return F.embedding(idx, self.user, sparse=self.sparse)

    def items(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return F.embedding(idx, self.item, sparse=self.sparse), self.bias[idx]

    def logits(self, p: torch.Tensor, q: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """f = p·q + b (or scale·cos(p, q) + b) for p [B, d] and q [B, d] or [B, S, d]."""
        if self.score == "cosine":
            p = F.normalize(p, dim=-1) * self.score_scale
            q = F.normalize(q, dim=-1)
        if q.dim() == p.dim():
            return (p * q).sum(-1) + b
        return torch.bmm(q, p.unsqueeze(-1)).squeeze(-1) + b

    def factors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(user, item, bias) with f(u, j) = user[u]·item[j] + bias[j] (cosine: the normalised rows, users × scale)."""
        user, item = self.user.detach(), self.item.detach()
        if self.score == "cosine":
            user, item = F.normalize(user, dim=-1) * self.score_scale, F.normalize(item, dim=-1)
        return user, item, self.bias.detach()


class LazyAdam(torch.optim.Optimizer):
    """Adam that, for a row-sparse gradient, updates only the rows in it (TF ``LazyAdam`` / torch ``SparseAdam``
    semantics); dense gradients get the usual dense update. The fast, non-faithful option (spec 'Porting gotchas')."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):  # torch's signature
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float64)
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = float(state["step"])
                step_size = group["lr"] * (1 - b2**t) ** 0.5 / (1 - b1**t)
                m_all, v_all = state["exp_avg"], state["exp_avg_sq"]
                grad = p.grad
                if grad.is_sparse:
                    grad = grad.coalesce()
                    idx, val = grad.indices()[0], grad.values()
                    m = m_all[idx].mul_(b1).add_(val, alpha=1 - b1)
                    v = v_all[idx].mul_(b2).addcmul_(val, val, value=1 - b2)
                    m_all[idx], v_all[idx] = m, v
                    p.index_add_(0, idx, m / (v.sqrt() + group["eps"]), alpha=-step_size)
                else:
                    m_all.mul_(b1).add_(grad, alpha=1 - b1)
                    v_all.mul_(b2).addcmul_(grad, grad, value=1 - b2)
                    p.addcdiv_(m_all, v_all.sqrt().add_(group["eps"]), value=-step_size)


def make_optimizer(params, name: str, lr: float) -> torch.optim.Optimizer:
    """``adam``: dense Adam as TF1's ``AdamOptimizer`` on gathered rows (β 0.9/0.999, ε 1e-8; every moment decays
    every step), fused kernel. ``lazy_adam``: rows without gradient are left alone (much faster on CPU)."""
    params = list(params)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, fused=True)
    if name == "lazy_adam":
        return LazyAdam(params, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}; use 'adam' or 'lazy_adam'")
