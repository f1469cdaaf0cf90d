"""Samplers: batched Walker/Vose alias tables (spec §1.4) and negative sampling with rejection of positives.

:class:`AliasTables` holds T independent categorical distributions over n outcomes (the N user tables over K
components, the K item tables over M items, the K user tables over N users of the generator update) and draws
from any of them in O(1): one uniform picks a bucket, a second one decides between the bucket and its alias.

On the CPU the tables are built by Vose's algorithm (:func:`sdgar.kernels.alias_build`, numba, rows in parallel).
On CUDA they are built exactly and without a Python loop over outcomes, by the prefix-sum form of the "sweep"
construction (Hübschle-Schneider & Sanders, *Parallel Weighted Random Sampling*, 2019): scale the weights to
mean 1, lay the deficits 1 − w of the light outcomes (w < 1) and the excesses w − 1 of the heavy ones (w > 1)
each on a line; a light bucket takes its alias from the heavy whose excess interval holds the start of its
deficit, and a heavy that gives away more than its excess is topped up by the next heavy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class AliasTables:
    """``prob[t, b]``: chance to keep bucket b of table t; else the draw is ``alias[t, b]``."""

    prob: torch.Tensor  # [T, n] float32
    alias: torch.Tensor  # [T, n] int32 (int64 when T·n ≥ 2³¹)

    @property
    def n(self) -> int:
        return int(self.prob.shape[1])

    @classmethod
    def build(cls, weights: torch.Tensor) -> AliasTables:
        """Tables for each row of ``weights`` ([T, n] or [n], non-negative, rows need not be normalised)."""
        w = weights.to(torch.float64)
        if w.dim() == 1:
            w = w.unsqueeze(0)
        if (w < 0).any() or not torch.isfinite(w).all():
            raise ValueError("alias tables need finite, non-negative weights")
        n_tables, n = w.shape
        total = w.sum(1, keepdim=True)
        if (total <= 0).any():
            raise ValueError("every alias table needs a positive total weight")
        if w.device.type == "cpu":  # numba Vose, parallel over tables (same distribution, other rounding)
            from sdgar.kernels import alias_build

            prob = torch.empty(n_tables, n, dtype=torch.float32)
            alias = torch.empty(n_tables, n, dtype=torch.int32 if n_tables * n < 2**31 else torch.long)
            alias_build(w.contiguous().numpy(), prob.numpy(), alias.numpy())
            return cls(prob, alias)
        w = w * (n / total)  # mean 1
        light, heavy = w < 1.0, w > 1.0
        deficit = torch.where(light, 1.0 - w, 0.0)
        excess = torch.where(heavy, w - 1.0, 0.0)
        a_end = deficit.cumsum(1)
        a_start = a_end - deficit
        b_end = excess.cumsum(1)
        idx = torch.arange(n, device=w.device).expand(n_tables, n)
        last_heavy = torch.where(heavy, idx, -1).amax(1, keepdim=True).clamp(min=0).expand(n_tables, n)

        def owner(pos: torch.Tensor) -> torch.Tensor:
            """The heavy whose excess interval [b_start, b_end) holds ``pos`` (the last heavy past the end)."""
            h = torch.searchsorted(b_end, pos.contiguous(), right=True)
            h = torch.where(h >= n, last_heavy, h.clamp(max=n - 1))
            return torch.where(heavy.gather(1, h), h, last_heavy)

        prob = torch.ones_like(w)
        alias = idx.clone()
        # light buckets: own weight w, the rest from the heavy that covers the start of their deficit
        prob = torch.where(light, w, prob)
        alias = torch.where(light, owner(a_start), alias)
        # heavy buckets: underfull by how far the light straddling their end reaches beyond it
        t = torch.searchsorted(a_end, b_end.contiguous(), right=True).clamp(max=n - 1)
        straddle = (a_start.gather(1, t) < b_end) & (a_end.gather(1, t) > b_end) & light.gather(1, t)
        overshoot = torch.where(straddle, a_end.gather(1, t) - b_end, 0.0)
        prob = torch.where(heavy, (1.0 - overshoot).clamp(0.0, 1.0), prob)
        nxt = owner(b_end)
        alias = torch.where(heavy, torch.where(overshoot > 0, nxt, idx), alias)
        # rows without any heavy outcome are uniform up to rounding
        flat_rows = ~heavy.any(1, keepdim=True)
        prob = torch.where(flat_rows, 1.0, prob)
        alias = torch.where(flat_rows, idx, alias)
        itype = torch.int32 if prob.numel() < 2**31 else torch.long
        return cls(prob.float().contiguous(), alias.to(itype).contiguous())

    def pmf(self) -> torch.Tensor:
        """The exact distribution the tables draw from, ``[T, n]`` (for tests)."""
        prob = self.prob.double()
        return (prob / self.n).scatter_add(1, self.alias.long(), (1.0 - prob) / self.n)

    def sample(self, table: torch.Tensor, gen: torch.Generator | None = None,
               out_dtype: torch.dtype = torch.long) -> torch.Tensor:
        """One draw from table ``table[i]`` for every i (int64 tensor on the tables' device)."""
        n, shape = self.n, table.shape
        small = self.prob.numel() < 2**31  # int32 indices are about twice as fast on CPU
        itype = torch.int32 if small else torch.long
        bucket = torch.randint(n, shape, generator=gen, device=self.prob.device, dtype=itype).view(-1)
        accept = torch.rand(shape, generator=gen, device=self.prob.device, dtype=torch.float32).view(-1)
        flat = table.reshape(-1).to(itype) * n + bucket
        keep = accept < self.prob.view(-1).index_select(0, flat)
        out = torch.where(keep, bucket, self.alias.view(-1).index_select(0, flat))
        return out.view(shape).to(out_dtype)


class PositiveSet:
    """Membership test for (user, item) pairs of the training set via sorted keys ``user * n_items + item``."""

    def __init__(self, users: torch.Tensor, items: torch.Tensor, n_items: int) -> None:
        self.n_items = n_items
        self.keys = torch.sort(users * n_items + items).values

    def contains(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        if self.keys.numel() == 0:
            return torch.zeros_like(users, dtype=torch.bool)
        q = users * self.n_items + items
        pos = torch.searchsorted(self.keys, q).clamp_(max=self.keys.numel() - 1)
        return self.keys[pos] == q


def sample_rejecting(draw, users: torch.Tensor, positives: PositiveSet, max_rounds: int = 200
                     ) -> tuple[torch.Tensor, int]:
    """``draw(users) -> items``, redrawn where the pair is a training positive (spec §2, step 1).

    Returns the items and the number of rejected draws (for the rejection-rate health check). After
    ``max_rounds`` the few remaining pairs are kept as they are (only possible when a user has almost every
    item as a positive).
    """
    items = draw(users)
    bad = positives.contains(users, items)
    rejected = 0
    for _ in range(max_rounds):
        idx = bad.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        rejected += idx.numel()
        redraw = draw(users[idx])
        items[idx] = redraw
        bad = torch.zeros_like(bad)
        bad[idx] = positives.contains(users[idx], redraw)
    return items, rejected


def uniform_items(n_items: int, gen: torch.Generator | None = None):
    """A ``draw`` function for :func:`sample_rejecting` with uniform items."""
    def draw(users: torch.Tensor) -> torch.Tensor:
        return torch.randint(n_items, users.shape, generator=gen, device=users.device)
    return draw
