"""SD-GAR's sampling-decomposable generator Q(j|u) = x_u · y_j and its closed-form updates (spec §1.4, §1.6).

x_u ∈ Δ^{K−1} is P(k|u) and the column y_{·k} ∈ Δ^{M−1} is P(j|k), so a draw is two alias-table draws. The
generator is fit to the entropy-regularised optimal generator P*_T(j|u) ∝ exp(g(u,j)/T), g = softplus(f_D)
(§1.3), by alternating closed-form steps on x and y; each step is argmax_{x∈Δ} ⟨x, v⟩ + λ̃ H(x) = softmax(v/λ̃).
Everything is computed in log space (the official code exponentiates directly).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sdgar.sampling import AliasTables


@dataclass
class GeneratorStats:
    seconds: float = 0.0
    log_z_mean: float = 0.0


class DecomposableGenerator(nn.Module):
    """x [N, K] (rows on the simplex) and y [M, K] (columns on the simplex), float64 buffers."""

    def __init__(self, n_users: int, n_items: int, n_components: int) -> None:
        super().__init__()
        # spec §1.4: uniform random init, rows of x / columns of y normalised; no learning before the first update
        x = torch.rand(n_users, n_components, dtype=torch.float64)
        y = torch.rand(n_items, n_components, dtype=torch.float64)
        self.register_buffer("x", x / x.sum(1, keepdim=True))
        self.register_buffer("y", y / y.sum(0, keepdim=True))
        self.user_tables: AliasTables | None = None
        self.item_tables: AliasTables | None = None

    @property
    def n_components(self) -> int:
        return int(self.x.shape[1])

    def rebuild_tables(self) -> None:
        """Alias tables over K components per user and over M items per component (O(NK + KM))."""
        self.user_tables = AliasTables.build(self.x)
        self.item_tables = AliasTables.build(self.y.T)

    def _tables(self) -> tuple[AliasTables, AliasTables]:
        if self.user_tables is None or self.item_tables is None or self.user_tables.prob.device != self.x.device:
            self.rebuild_tables()
        return self.user_tables, self.item_tables

    def packed_tables(self) -> tuple[np.ndarray, np.ndarray]:
        """The user and item alias tables packed for the numba kernels (:func:`sdgar.kernels.pack_alias`), cached
        until the tables change."""
        from sdgar.kernels import pack_alias

        ut, it = self._tables()
        cached = getattr(self, "_packed", None)
        if cached is None or cached[0] is not ut or cached[1] is not it:
            cached = (ut, it, pack_alias(ut.prob.numpy(), ut.alias.numpy()),
                      pack_alias(it.prob.numpy(), it.alias.numpy()))
            self._packed = cached
        return cached[2], cached[3]

    def sample(self, users: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        """j ~ Q(·|u) for every entry of ``users``: k ~ x_u, then j ~ y_{·k} (two O(1) alias draws)."""
        ut, it = self._tables()
        return it.sample(ut.sample(users, gen), gen)

    def log_q(self, users: torch.Tensor, items: torch.Tensor, chunk: int = 1 << 18) -> torch.Tensor:
        """log Q(j|u) = log(x_u · y_j) for same-shaped ``users``/``items`` (float32, chunked)."""
        u, j = users.reshape(-1), items.reshape(-1)
        out = torch.empty(u.numel(), dtype=torch.float32, device=u.device)
        x, y = self.x.float(), self.y.float()
        for s in range(0, u.numel(), chunk):
            out[s:s + chunk] = (x[u[s:s + chunk]] * y[j[s:s + chunk]]).sum(1).log()
        return out.view(users.shape)

    @torch.no_grad()
    def update(self, d_user: torch.Tensor, d_item: torch.Tensor, d_bias: torch.Tensor, gen: torch.Generator | None,
               temperature: float, lambda_x: float, lambda_y: float, n_item_samples: int, n_user_samples: int,
               user_chunk: int = 4096, item_chunk: int = 1024) -> dict[str, float]:
        """One generator update, steps 1 → 2 → 3 of spec §1.6, against the discriminator's factors."""
        n_users, n_items, n_comp = self.x.shape[0], self.y.shape[0], self.n_components
        device = self.x.device
        all_users = torch.arange(n_users, device=device)

        def g_of(u: torch.Tensor, j: torch.Tensor) -> torch.Tensor:  # g = softplus(f_D(u, j)) for u [B], j [B, S]
            return F.softplus(torch.bmm(d_item[j], d_user[u].unsqueeze(-1)).squeeze(-1) + d_bias[j])

        # Step 1: log ẑ_u = logsumexp_{j∈S_u}(g/T − log Q) − log|S_c|, S_u ~ Q(·|u) i.i.d., positives included.
        log_z = torch.empty(n_users, dtype=torch.float64, device=device)
        for s in range(0, n_users, user_chunk):
            u = all_users[s:s + user_chunk].unsqueeze(1).expand(-1, n_item_samples)
            j = self.sample(u, gen)
            a = g_of(u[:, 0], j).double() / temperature - self.log_q(u, j).double()
            log_z[s:s + user_chunk] = torch.logsumexp(a, 1) - math.log(n_item_samples)

        # Step 2: v_u = mean_{j∈S'_u} P̂*(j|u) ℓ(u,j) / Q(j|u)² · y_j on a fresh sample; x_u = softmax(v_u / λ̃_x).
        v = torch.empty(n_users, n_comp, dtype=torch.float64, device=device)
        for s in range(0, n_users, user_chunk):
            u = all_users[s:s + user_chunk].unsqueeze(1).expand(-1, n_item_samples)
            j = self.sample(u, gen)
            g = g_of(u[:, 0], j).double()
            log_w = g / temperature - log_z[s:s + user_chunk, None] + torch.log(g) - 2.0 * self.log_q(u, j).double()
            v[s:s + user_chunk] = torch.bmm(log_w.exp().unsqueeze(1), self.y[j]).squeeze(1) / n_item_samples
        lam_x = lambda_x * v.amax(1).mean()
        self.x.copy_(torch.softmax(v / lam_x, dim=1))
        self.user_tables = AliasTables.build(self.x)

        # Step 3, per component k: users u ~ π_k ∝ x_{·k} (new x), |S_i| per item;
        # s_ik = (Σ_u x_uk) · mean_{u∈S_i^k} P̂*(i|u) ℓ(u,i) / Q(i|u), with Q from new x / old y and stale ẑ.
        # The summand h(u,i) does not depend on k: per item chunk, f and Q come from two dense matmuls over all
        # users (BLAS), and the transcendental functions run only on the K·c·|S_i| sampled entries.
        pi_tables = AliasTables.build(self.x.T)
        x_mass = self.x.sum(0)  # Σ_u x_uk
        x32, y32, log_z32 = self.x.float(), self.y.float(), log_z.float()
        log_mass = torch.log(x_mass)
        s_log = torch.empty(n_items, n_comp, dtype=torch.float64, device=device)
        comp = torch.arange(n_comp, device=device)
        for s in range(0, n_items, item_chunk):
            items = torch.arange(s, min(s + item_chunk, n_items), device=device)
            c = items.numel()
            # item-major [c, N] so that the draws of one item gather from one cached row
            f = d_item[items] @ d_user.T + d_bias[items, None]
            q = y32[items] @ x32.T  # Q(i|u) with the new x and the old y
            tables = comp.view(n_comp, 1, 1).expand(n_comp, c, n_user_samples)
            u = pi_tables.sample(tables, gen, torch.int32 if f.numel() < 2**31 else torch.long)  # [K, c, S_i]
            flat = (u + torch.arange(c, device=device, dtype=u.dtype).view(1, c, 1) * n_users).view(-1)
            g = F.softplus(f.view(-1).index_select(0, flat))
            log_h = (g / temperature + torch.log(g) - torch.log(q.view(-1).index_select(0, flat))
                     - log_z32.index_select(0, u.view(-1)))
            del f, q
            s_log[s:s + c] = (torch.logsumexp(log_h.view(u.shape), 2).double() - math.log(n_user_samples)).T + log_mass
        s_val = s_log.exp()
        lam_y = lambda_y * s_val.amax(0).mean()
        self.y.copy_(torch.softmax(s_val / lam_y, dim=0))
        self.item_tables = AliasTables.build(self.y.T)
        return {"log_z_mean": float(log_z.mean()), "lambda_x": float(lam_x), "lambda_y": float(lam_y)}

    @torch.no_grad()
    def update_fast(self, d_user: torch.Tensor, d_item: torch.Tensor, d_bias: torch.Tensor, gen: torch.Generator,
                    temperature: float, lambda_x: float, lambda_y: float, n_item_samples: int, n_user_samples: int
                    ) -> dict[str, float]:
        """:meth:`update` on the CPU through numba kernels (``gen_update="numba"``): the same three steps, the draws'
        distributions and float64 log-space sums, one pass per step parallel over users / items, no [c, N] dense
        blocks (step 3 scores only its K·M·|S_i| sampled pairs)."""
        from sdgar import kernels

        p, q, b = (t.detach().float().contiguous().numpy() for t in (d_user, d_item, d_bias))
        x_pack, y_pack = self.packed_tables()
        x, y = self.x.float().numpy(), self.y.float().numpy()  # Q in float32, as the torch path's log_q
        seeds = torch.randint(0, 2**62, (2,), generator=gen).tolist()
        n_users, n_items, n_comp = x.shape[0], y.shape[0], self.n_components
        log_z = np.empty(n_users)
        v = np.empty((n_users, n_comp))
        kernels.gen_user_steps(p, q, b, x, y, x_pack, y_pack, n_item_samples, temperature, seeds[0], log_z, v)
        v_t = torch.from_numpy(v)
        lam_x = lambda_x * v_t.amax(1).mean()
        self.x.copy_(torch.softmax(v_t / lam_x, dim=1))
        self.user_tables = AliasTables.build(self.x)
        pi = AliasTables.build(self.x.T)
        log_mass = torch.log(self.x.sum(0)).numpy()
        s_log = np.empty((n_items, n_comp))
        kernels.gen_item_step(p, q, b, self.x.float().numpy(), y, kernels.pack_alias(pi.prob.numpy(), pi.alias.numpy()),
                              log_mass, log_z, n_user_samples, temperature, seeds[1], s_log)
        s_val = torch.from_numpy(s_log).exp()
        lam_y = lambda_y * s_val.amax(0).mean()
        self.y.copy_(torch.softmax(s_val / lam_y, dim=0))
        self.item_tables = AliasTables.build(self.y.T)
        return {"log_z_mean": float(log_z.mean()), "lambda_x": float(lam_x), "lambda_y": float(lam_y)}
