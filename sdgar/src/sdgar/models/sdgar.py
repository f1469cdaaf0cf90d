"""SD-GAR (Jin et al., NeurIPS 2020): MF discriminator trained against a sampling-decomposable generator.

Schedule (spec §2): the official loop runs epoch 0 = generator update only, then for epochs 1..75 a D epoch,
with a generator update after every ``gen_every``-th D epoch (evaluation happens between them but only reads
D, so its position does not matter). Here epoch e of the trainer is official epoch e: the first call of
:meth:`SDGAR.train_epoch` also does the epoch-0 generator update.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F

from sdgar.engine import SampledNegativeEngine
from sdgar.models.base import TrainData
from sdgar.models.generator import DecomposableGenerator
from sdgar.models.mf import MF, make_optimizer
from sdgar.sampling import sample_rejecting, uniform_items


@dataclass
class SDGARConfig:
    """Every default is the official constant (spec §2 table; CiteULike/Gowalla differ only in ``dis_lambda``)."""

    dis_emb_dim: int = 32  # d, spec §1.2
    dis_lambda: float = 0.01  # λ_D (Gowalla 0.01, CiteULike 0.05), divided by batch_size as in the code (§1.5)
    dis_sample_num: int = 5  # |S| negatives per positive drawn from Q (§1.5)
    batch_size: int = 512  # D minibatch; the last partial batch is kept (§2)
    learning_rate: float = 0.001  # Adam on D only, TF1 defaults (§1.5)
    optimizer: Literal["adam", "lazy_adam"] = "adam"  # dense Adam = TF1 AdamOptimizer (porting gotchas)
    gen_emb_dim: int = 64  # K mixture components (§1.4)
    gen_sample_num_item: int = 64  # |S_c| items per user in G steps 1–2 (§1.6)
    gen_sample_num_user: int = 64  # |S_i| users per item per component in G step 3 (§1.6)
    temperature: float = 0.5  # T of P*_T and of the SNIS weights (§1.3, §1.5)
    lambda_x: float = 0.1  # λ_x, fraction of mean row max of v (§1.6; 'temperature_u' in the old config)
    lambda_y: float = 1.0  # λ_y, fraction of mean column max of s (§1.6; 'temperature_i')
    gen_every: int = 5  # G update after every 5th D epoch, and once before the first (§2)
    snis_grad: Literal["through", "stop"] = "through"  # the code lets gradients flow through w (§1.5)
    use_importance: bool = True  # ablation: False = uniform weights 1/|S| over the sampled negatives
    use_generator: bool = True  # ablation: False = uniform Q, no generator updates
    skip_last_gen_update: bool = False  # the official run's update after the last epoch is never used (§2)
    lr_decay: float = 1.0  # D learning rate × this after every D epoch (not in the official code; issue 10)
    neg_weight: float = 1.0  # L = ½(L_pos + neg_weight·L_neg); 1 is the official loss (issue 10 sweep knob)
    # §1.6 steps as numba kernels (CPU) or torch dense blocks; auto: numba on the CPU (same steps and estimators;
    # Gowalla d 128: 22 vs 50–55 s, citeulike-t d 32: 9–10 vs 16–17 s, load ~5), torch on CUDA
    gen_update: Literal["auto", "torch", "numba"] = "auto"
    engine: Literal["torch", "fast"] = "torch"  # fast: numba Hogwild per-positive D steps on the CPU (issue 21)
    fast_optimizer: Literal["rowwise_adagrad", "adagrad", "sgd"] = "rowwise_adagrad"  # engine fast: optimizer of D
    fast_lr: float = 0.2  # engine fast: chosen on citeulike-t validation (10% of train) among 0.01/0.05/0.2, 20 epochs
    # D's score (issue 17): "dot" f = p·q + b (official) or "cosine" f = score_scale·cos(p, q) + b, in both engines
    score: Literal["dot", "cosine"] = "dot"
    score_scale: float = 10.0  # cosine only: 1/temperature of the cosine logits; not tuned (issue 17 sweeps it)


def snis_weights(g: torch.Tensor, log_q: torch.Tensor, temperature: float, use_importance: bool = True,
                 stop_grad: bool = False) -> torch.Tensor:
    """w_j = softmax_j(g(u,j)/T − log Q(j|u)) over each row's sample: the self-normalised importance weights of
    P*_T(j|u) ∝ exp(g/T) under the proposal Q (spec §1.5). Uniform 1/|S| with ``use_importance=False``."""
    if not use_importance:
        return torch.full_like(g, 1.0 / g.shape[-1])
    logits = g / temperature - log_q
    return torch.softmax(logits.detach() if stop_grad else logits, dim=-1)


def pointwise_loss(d: MF, users: torch.Tensor, pos: torch.Tensor, negs: torch.Tensor,
                   weights: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], lam: float, batch_size: int,
                   neg_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """½·mean(−log σ f(u,i)) + ½·neg_weight·mean(Σ_j w_j softplus f(u,j)) + λ/B·½ Σ_rows(‖p_u‖² + ‖q_i‖² + b_i²
    + Σ_j (‖q_j‖² + b_j²)/|S|): the discriminator loss of spec §1.5 (mean over the 2B rows of concat[pos, neg]) with
    L2 as tf.nn.l2_loss on the gathered rows. ``weights(f_neg, g)`` gives w [B, S]; SA passes its own."""
    p_u = d.users(users)
    q_i, b_i = d.items(pos)
    q_j, b_j = d.items(negs)  # [B, S, d], [B, S]
    f_pos = d.logits(p_u, q_i, b_i)
    f_neg = d.logits(p_u, q_j, b_j)
    pos_loss = F.softplus(-f_pos)  # −log σ(f)
    g = F.softplus(f_neg)  # ℓ(u, j) = −log(1 − D(j|u))
    w = weights(f_neg, g)
    neg_loss = (w * g).sum(1)
    data_loss = 0.5 * (pos_loss.mean() + neg_weight * neg_loss.mean())
    s = negs.shape[1]
    reg = 0.5 * (p_u.square().sum() + q_i.square().sum() + b_i.square().sum()
                 + (q_j.square().sum() + b_j.square().sum()) / s)
    reg_loss = lam / batch_size * reg
    ess = 1.0 / w.detach().square().sum(1)
    return data_loss + reg_loss, {"pos_loss": pos_loss.mean().detach(), "neg_loss": neg_loss.mean().detach(),
                                  "reg_loss": reg_loss.detach(), "ess": ess.mean()}


class SDGAR(SampledNegativeEngine):
    name: ClassVar[str] = "sdgar"
    supports_amp: ClassVar[bool] = True

    def __init__(self, n_users: int, n_items: int, config: SDGARConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or SDGARConfig()
        self.n_users, self.n_items = n_users, n_items
        self.d = MF(n_users, n_items, config.dis_emb_dim, sparse=config.optimizer == "lazy_adam", score=config.score,
                    score_scale=config.score_scale)
        self.g = DecomposableGenerator(n_users, n_items, config.gen_emb_dim)
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long))
        self.register_buffer("gen_updates", torch.zeros((), dtype=torch.long))
        self.optimizer = make_optimizer(self.d.parameters(), config.optimizer, config.learning_rate)
        self.total_epochs: int | None = None  # set by the trainer; used only by skip_last_gen_update
        self._fast_acc: dict[str, torch.Tensor] | None = None

    # -- scoring uses D only (spec §1.2)
    def factors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.d.factors()

    def load_extra_state_dict(self, state: dict[str, Any]) -> None:
        super().load_extra_state_dict(state)
        self.g.rebuild_tables()

    # -- training
    def generator_update(self, gen: torch.Generator) -> dict[str, float]:
        cfg = self.config
        start = time.perf_counter()
        user, item, bias = self.d.factors()
        kind = cfg.gen_update
        if kind == "auto":
            kind = "numba" if self.g.x.device.type == "cpu" else "torch"
        update = self.g.update_fast if kind == "numba" else self.g.update
        stats = update(user, item, bias, gen, cfg.temperature, cfg.lambda_x, cfg.lambda_y, cfg.gen_sample_num_item,
                       cfg.gen_sample_num_user)
        self.gen_updates += 1
        return {**stats, "g_seconds": time.perf_counter() - start}

    def draw_negatives(self, users: torch.Tensor, data: TrainData, gen: torch.Generator
                       ) -> tuple[torch.Tensor, torch.Tensor, float]:
        """|S| negatives per positive from Q with training positives rejected, their log Q, rejection rate."""
        s = self.config.dis_sample_num
        rep = users.repeat_interleave(s)
        positives = data.positive_set(users.device)
        if self.config.use_generator:
            negs, rejected = sample_rejecting(lambda u: self.g.sample(u, gen), rep, positives)
            log_q = self.g.log_q(rep, negs)
        else:
            negs, rejected = sample_rejecting(uniform_items(self.n_items, gen), rep, positives)
            log_q = torch.full(negs.shape, -math.log(self.n_items), device=negs.device)
        return negs.view(-1, s), log_q.view(-1, s), rejected / max(rep.numel(), 1)

    def epoch_rows(self, data: TrainData, gen: torch.Generator) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        users, pos = data.torch_pairs(self.d.user.device)
        negs, log_q, reject_rate = self.draw_negatives(users, data, gen)
        return {"u": users, "i": pos, "j": negs, "log_q": log_q}, {"reject_rate": reject_rate}

    def batch_loss(self, rows: dict[str, torch.Tensor], gen: torch.Generator
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """SNIS-weighted discriminator loss of spec §1.5 on one minibatch."""
        cfg = self.config
        log_q = rows["log_q"]

        def weights(f_neg: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
            return snis_weights(g, log_q, cfg.temperature, cfg.use_importance, cfg.snis_grad == "stop")

        return pointwise_loss(self.d, rows["u"], rows["i"], rows["j"], weights, cfg.dis_lambda, cfg.batch_size,
                              cfg.neg_weight)

    def discriminator_epoch(self, data: TrainData, gen: torch.Generator) -> dict[str, float]:
        if self.engine == "fast":
            return self.fast_epoch(data, gen)
        rows, stats = self.epoch_rows(data, gen)
        return {**self.minibatch_epoch(rows, self.batch_loss, self.optimizer, self.config.batch_size, gen), **stats}

    def fast_epoch(self, data: TrainData, gen: torch.Generator) -> dict[str, float]:
        """One D epoch on the fast engine: per positive, |S| draws from Q (rejecting positives), SNIS weights and
        a Hogwild step (:func:`sdgar.kernels.snis_epoch`)."""
        from sdgar import kernels

        cfg = self.config
        indptr, indices = self.fast_arrays(data)[2:]
        acc = self.fast_state()
        p, q, b = (t.detach().numpy() for t in (self.d.user, self.d.item, self.d.bias))
        ap, aq, ab = (acc[k].numpy() for k in ("user", "item", "bias"))
        x_pack, y_pack = self.g.packed_tables()
        x = self.g.x.float().numpy()
        y = self.g.y.float().numpy()
        mode = 1 if cfg.use_generator else 0
        weighting = 0 if cfg.use_importance else 2
        s = cfg.dis_sample_num
        lr = cfg.fast_lr * cfg.lr_decay ** int(self.epochs_done)  # the same per-epoch decay as the torch engine

        def kernel(users, items, seed, chunk0, out):
            kernels.snis_epoch(users, items, indptr, indices, p, q, b, ap, aq, ab, x, y, x_pack, y_pack, s, mode,
                               weighting, cfg.temperature, 1.0, cfg.snis_grad == "through", cfg.neg_weight,
                               cfg.dis_lambda, lr, self.fast_optimizer_code(), seed, chunk0, out,
                               cfg.score == "cosine", cfg.score_scale)

        total = self.run_fast(data, gen, kernel, 3)
        n = max(data.n_interactions, 1)
        return {"loss": float(total[0]) / n, "reject_rate": float(total[1]) / (n * s), "ess": float(total[2]) / n}

    def train_epoch(self, data: TrainData, gen: torch.Generator) -> dict[str, float]:
        cfg = self.config
        stats: dict[str, float] = {}
        if cfg.use_generator and int(self.gen_updates) == 0:
            stats.update(self.generator_update(gen))  # official epoch 0
        start = time.perf_counter()
        stats.update(self.discriminator_epoch(data, gen))
        stats["d_seconds"] = time.perf_counter() - start
        if cfg.lr_decay != 1.0:  # the decayed lr lives in the optimizer state, so resume continues it exactly
            for group in self.optimizer.param_groups:
                group["lr"] *= cfg.lr_decay
        self.epochs_done += 1
        epoch = int(self.epochs_done)
        last = self.total_epochs is not None and epoch >= self.total_epochs
        if cfg.use_generator and epoch % cfg.gen_every == 0 and not (last and cfg.skip_last_gen_update):
            stats.update(self.generator_update(gen))
        return stats
