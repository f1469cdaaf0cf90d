"""The training engine of every sampled-negative model (issue 21): SD-GAR's D, BPR, DNS, SA, WARP, AOBPR, CML and
IRGAN's discriminator.

:class:`SampledNegativeEngine` owns the epoch: the per-epoch draws (:meth:`~SampledNegativeEngine.epoch_rows`,
made before the shuffle as the official code does), the shuffle, the minibatches, the optimizer step, the loss
statistics and the within-epoch progress. A model supplies only

- ``epoch_rows(data, gen)``: the per-row tensors of the epoch (users, positives, and whatever negatives it draws
  up front), plus epoch statistics such as the rejection rate;
- ``batch_loss(rows, gen)``: the loss of one minibatch and its named parts;
- optionally ``after_step(rows)`` (CML's norm clipping) and ``fast_epoch`` (the numba kernels of
  :mod:`sdgar.kernels`, selected by the model config's ``engine = "fast"``).

Two engines: ``torch`` (default, the faithful minibatch optimizer: dense Adam, batch 512 for the official
presets) and ``fast`` (Hogwild per-positive steps with Adagrad/SGD on the CPU; changes the optimizer, not the
loss, the draws or the L2 form).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from neurips20_common import torch_threads

from sdgar.models.base import Recommender, TrainData
from sdgar.sampling import sample_rejecting, uniform_items

# (rows done since the last call, running mean loss); 0 rows before the first: set-up done, timing starts
Progress = Callable[[int, float], None]
ENGINES = ("torch", "fast")
FAST_OPTIMIZERS = ("sgd", "adagrad", "rowwise_adagrad")  # codes 0, 1, 2 of the kernels' ``opt``


def check_engine(engine: str, model: str, device: torch.device | str, fast_models: tuple[str, ...]) -> None:
    from neurips20_common import UserError

    if engine not in ENGINES:
        raise UserError(f"engine {engine!r} is unknown; use one of {', '.join(ENGINES)}")
    if engine == "fast":
        if model not in fast_models:
            raise UserError(f"engine fast is implemented for {', '.join(fast_models)}, not {model}; "
                            "use --set model.engine=torch")
        if torch.device(device).type != "cpu":
            raise UserError(f"engine fast runs numba kernels on the CPU, but the device is {device}; "
                            "use --device cpu or the torch engine")


def _check_finite(mean_loss: float, done: int, unit: str = "batches") -> None:
    if not math.isfinite(mean_loss):
        from neurips20_common.errors import NonFiniteError

        raise NonFiniteError(f"the training loss became NaN/Inf after {done} {unit} of this epoch; training stopped "
                             "before this epoch was evaluated or saved. Lower the learning rate (see --set) and "
                             "start again or resume from the last checkpoint")


class SampledNegativeEngine(Recommender):
    """Base class: one epoch = draws → shuffle → minibatches of ``batch_loss`` → optimizer steps."""

    progress_cb: Progress | None = None  # set by the trainer for a bar that moves within the epoch
    report_every: int = 64  # batches between progress reports (each one reads the loss: a device sync)
    # torch intra-op threads of the CPU minibatch loop: its ops are tiny (a batch of 512 rows), and splitting each
    # across threads costs a barrier per op that a busy machine stretches to milliseconds (issue 21, 2 cores at load
    # ~5: citeulike-t D epoch 2.2 s with 1 thread vs 12–21 s with 2; Gowalla d 32: 12 s vs 70 s). None: leave as set.
    minibatch_threads: int | None = 1

    # -- what a model supplies
    def epoch_rows(self, data: TrainData, gen: torch.Generator) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        raise NotImplementedError

    def batch_loss(self, rows: dict[str, torch.Tensor], gen: torch.Generator
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def after_step(self, rows: dict[str, torch.Tensor]) -> None:
        del rows

    def fast_epoch(self, data: TrainData, gen: torch.Generator) -> dict[str, float]:
        raise NotImplementedError(f"{self.name} has no fast engine")

    @property
    def engine(self) -> str:
        return getattr(self.config, "engine", "torch")

    # -- shared draws
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def uniform_negatives(self, data: TrainData, users: torch.Tensor, per_row: int, gen: torch.Generator
                          ) -> tuple[torch.Tensor, float]:
        """``per_row`` uniform non-positives per entry of ``users`` ([n, per_row]) and the rejection rate."""
        rep = users.repeat_interleave(per_row) if per_row > 1 else users
        negs, rejected = sample_rejecting(uniform_items(data.n_items, gen), rep, data.positive_set(users.device))
        return negs.view(-1, per_row), rejected / max(rep.numel(), 1)

    # -- the loop
    def train_epoch(self, data: TrainData, gen: torch.Generator) -> dict[str, float]:
        if self.engine == "fast":
            return self.fast_epoch(data, gen)
        rows, stats = self.epoch_rows(data, gen)
        out = self.minibatch_epoch(rows, self.batch_loss, self.optimizer, self.config.batch_size, gen,
                                   self.after_step)
        return {**out, **stats}

    def minibatch_epoch(self, rows: dict[str, torch.Tensor],
                        loss_fn: Callable[[dict[str, torch.Tensor], torch.Generator],
                                          tuple[torch.Tensor, dict[str, torch.Tensor]]],
                        optimizer: torch.optim.Optimizer, batch_size: int, gen: torch.Generator,
                        after_step: Callable[[dict[str, torch.Tensor]], None] | None = None,
                        prefix: str = "") -> dict[str, float]:
        """Shuffle the rows, step ``optimizer`` on ``loss_fn`` of every minibatch (the last partial one kept);
        mean loss and parts over the batches."""
        cpu = next(iter(rows.values())).device.type == "cpu"
        with torch_threads(self.minibatch_threads if cpu else None):
            n = next(iter(rows.values())).shape[0]
            order = torch.randperm(n, generator=gen, device=gen.device)
            if order.device != next(iter(rows.values())).device:
                order = order.to(next(iter(rows.values())).device)
            sums: dict[str, Any] = {"loss": 0.0}
            n_batches, since = 0, 0
            if self.progress_cb is not None:  # set-up done (draws, a generator update): the bar times the pass
                self.progress_cb(0, float("nan"))
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                batch = {k: v[idx] for k, v in rows.items()}
                with self.precision.autocast():
                    loss, parts = loss_fn(batch, gen)
                self.precision.step(loss, optimizer)
                if after_step is not None:
                    after_step(batch)
                sums["loss"] += loss.detach()
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + v
                n_batches += 1
                since += len(idx)
                if self.progress_cb is not None and n_batches % self.report_every == 0:
                    mean = float(sums["loss"]) / n_batches
                    _check_finite(mean, n_batches)
                    self.progress_cb(since, mean)
                    since = 0
            if self.progress_cb is not None and since:
                self.progress_cb(since, float(sums["loss"]) / max(n_batches, 1))
            return {prefix + k: float(v) / max(n_batches, 1) for k, v in sums.items()}

    # -- checkpointed training state: the engine's optimizer, plus the fast engine's accumulators once they exist
    def extra_state_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"optimizer": self.optimizer.state_dict()}
        if getattr(self, "_fast_acc", None) is not None:
            out["fast_acc"] = self._fast_acc
        return out

    def load_extra_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if "fast_acc" in state:
            device = next(self.parameters()).device
            self._fast_acc = {k: v.to(device) for k, v in state["fast_acc"].items()}

    # -- fast engine helpers
    def fast_state(self) -> dict[str, torch.Tensor]:
        """Adagrad accumulators of the fast engine (start at 0, as torch's Adagrad), kept in the checkpoint: one
        per element (adagrad), one per row (rowwise_adagrad) or none (sgd; a 1×1 placeholder)."""
        if getattr(self, "_fast_acc", None) is None:
            opt = self.config.fast_optimizer
            out = {}
            for key, t in (("user", self.d.user), ("item", self.d.item)):
                shape = t.shape if opt == "adagrad" else (t.shape[0], 1) if opt == "rowwise_adagrad" else (1, 1)
                out[key] = torch.zeros(shape, dtype=t.dtype)
            out["bias"] = torch.zeros_like(self.d.bias.detach())
            self._fast_acc = out
        return self._fast_acc

    def fast_optimizer_code(self) -> int:
        return FAST_OPTIMIZERS.index(self.config.fast_optimizer)

    def fast_arrays(self, data: TrainData) -> tuple[np.ndarray, ...]:
        """(users, items, indptr, indices) of the positives as contiguous numpy arrays (cached); int32 while the
        counts allow it, which halves the memory the kernels stream through."""
        key = ("fast_arrays",)
        if key not in data._cache:
            u, i = data.pairs()
            m = data.matrix
            if not m.has_sorted_indices:
                m = m.copy()
                m.sort_indices()
            itype = np.int32 if max(m.nnz, *m.shape) < 2**31 - 1 else np.int64
            data._cache[key] = tuple(np.ascontiguousarray(a, dtype=itype) for a in (u, i, m.indptr, m.indices))
        return data._cache[key]

    def run_fast(self, data: TrainData, gen: torch.Generator, kernel: Callable[..., None], n_stats: int,
                 pieces: int = 32, min_piece: int = 1 << 17) -> np.ndarray:
        """Run ``kernel(users, items, seed, chunk0, out)`` over the positives of a shuffled epoch in ``pieces``
        calls of at least ``min_piece`` rows (so progress moves; each call ends in a thread barrier, which costs
        milliseconds on a busy machine); returns the per-chunk statistics summed, [n_stats]."""
        from sdgar import kernels

        users, items = self.fast_arrays(data)[:2]
        n = data.n_interactions
        order = torch.randperm(n, generator=gen).numpy()
        seed = int(torch.randint(0, 2**62, (1,), generator=gen))
        step = max(min_piece, -(-n // pieces) // kernels.CHUNK * kernels.CHUNK)
        total = np.zeros(n_stats)
        chunk0 = 0
        # compile the kernel (numba JIT, or its on-disk cache) on an empty slice before any row runs, and tell the
        # progress bar (a report of 0 rows): its measured rate then starts after the compilation, which on a fresh
        # machine costs seconds and would inflate the run's first time estimate by that times the epoch count
        kernel(users[:0], items[:0], seed, chunk0, np.zeros((0, n_stats)))
        if self.progress_cb is not None:
            self.progress_cb(0, float("nan"))
        for start in range(0, n, step):
            part = order[start:start + step]
            n_chunks = -(-len(part) // kernels.CHUNK)
            out = np.zeros((n_chunks, n_stats))
            kernel(users[part], items[part], seed, chunk0, out)
            chunk0 += n_chunks
            stats = out.sum(0)
            total += stats
            mean = float(total[0]) / max(start + len(part), 1)
            _check_finite(mean, start + len(part), "rows")
            if self.progress_cb is not None:
                self.progress_cb(len(part), mean)
        return total
