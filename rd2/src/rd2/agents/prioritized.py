"""Prioritized experience replay (Schaul et al. 2016) with a sum tree (spec §6.4); n-step returns are
:func:`rd2.replay.nstep_return`.

The tree keeps p_i^α per replay slot; P(i) = p_i^α / Σ_j p_j^α, importance weight w_i = (N·P(i))^−β,
normalized by the batch maximum (as CleanRL / Kaixhin do). Sampling is stratified: the total mass is cut into
B equal segments and one point is drawn uniformly in each.
"""

from __future__ import annotations

import numpy as np
import torch


class SumTree:
    """Binary sum tree over ``capacity`` leaves; vectorized update and prefix-sum search."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.leaves = 1
        while self.leaves < capacity:
            self.leaves *= 2
        self.tree = np.zeros(2 * self.leaves, dtype=np.float64)

    @property
    def total(self) -> float:
        return float(self.tree[1])

    def get(self, index: np.ndarray) -> np.ndarray:
        return self.tree[np.asarray(index) + self.leaves]

    def update(self, index: np.ndarray, value: np.ndarray) -> None:
        index = np.atleast_1d(np.asarray(index, dtype=np.int64))
        value = np.broadcast_to(np.asarray(value, dtype=np.float64), index.shape)
        if np.any(value < 0) or not np.all(np.isfinite(value)):
            raise ValueError("priorities must be finite and non-negative")
        pos = index + self.leaves
        self.tree[pos] = value  # with repeated indices the last value wins
        pos = np.unique(pos // 2)
        while pos[0] >= 1:
            self.tree[pos] = self.tree[2 * pos] + self.tree[2 * pos + 1]
            if pos[0] == 1:
                break
            pos = np.unique(pos // 2)

    def find(self, mass: np.ndarray) -> np.ndarray:
        """Leaf index i with Σ_{j<i} p_j ≤ mass < Σ_{j≤i} p_j (never a zero-priority leaf)."""
        mass = np.asarray(mass, dtype=np.float64).copy()
        pos = np.ones_like(mass, dtype=np.int64)
        while pos[0] < self.leaves:
            left, right = self.tree[2 * pos], self.tree[2 * pos + 1]
            go_right = ((mass >= left) & (right > 0)) | (left <= 0)
            mass = np.where(go_right, mass - left, mass)
            pos = 2 * pos + go_right
        return pos - self.leaves

    def state_dict(self) -> dict:
        return {"capacity": self.capacity, "tree": torch.from_numpy(self.tree.copy())}

    def load_state_dict(self, state: dict) -> None:
        if int(state["capacity"]) != self.capacity:
            raise ValueError(f"sum tree capacity {state['capacity']} != {self.capacity}")
        self.tree[:] = state["tree"].numpy()


class PrioritizedSampler:
    """Priorities over replay slots. A slot is sampleable only once ``set_max(index)`` made it valid
    (its n-step window is complete); ``invalidate`` takes a slot out (it is being overwritten)."""

    def __init__(self, capacity: int, alpha: float = 0.5, eps: float = 1e-6) -> None:
        self.tree = SumTree(capacity)
        self.alpha, self.eps = alpha, eps
        self.max_priority = 1.0  # raw priority |δ|, before the exponent α

    def set_max(self, index: np.ndarray) -> None:
        self.tree.update(index, self.max_priority**self.alpha)

    def invalidate(self, index: np.ndarray) -> None:
        self.tree.update(index, 0.0)

    def update(self, index: np.ndarray, priority: np.ndarray) -> None:
        """New raw priorities (|TD error| or the KL loss), stored as (p + eps)^α."""
        priority = np.asarray(priority, dtype=np.float64) + self.eps
        self.max_priority = max(self.max_priority, float(priority.max()))
        self.tree.update(index, priority**self.alpha)

    def probabilities(self, index: np.ndarray) -> np.ndarray:
        return self.tree.get(index) / self.tree.total

    def sample(self, batch_size: int, beta: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Stratified draw of ``batch_size`` slots; returns (indices, importance weights normalized to max 1)."""
        total = self.tree.total
        if total <= 0:
            raise ValueError("no valid replay slot to sample from")
        bounds = np.linspace(0.0, total, batch_size + 1)
        mass = rng.uniform(bounds[:-1], bounds[1:])
        index = self.tree.find(np.minimum(mass, np.nextafter(total, 0)))
        valid = int(np.count_nonzero(self.tree.tree[self.tree.leaves:self.tree.leaves + self.tree.capacity]))
        weights = (valid * self.probabilities(index)) ** (-beta)
        return index, weights / weights.max()

    def state_dict(self) -> dict:
        return {"tree": self.tree.state_dict(), "max_priority": self.max_priority}

    def load_state_dict(self, state: dict) -> None:
        self.tree.load_state_dict(state["tree"])
        self.max_priority = float(state["max_priority"])

