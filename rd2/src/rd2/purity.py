"""Channel purity: how well learned channels match true reward sources, up to a permutation (spec §5, §6.2–6.3).

Each nonzero-reward transition is assigned to the channel with the largest |r̂_k| and labelled with its true source
(for Atari: from the raw reward value, table §6.2). Purity is the accuracy under the best one-to-one matching of
channels to sources (Hungarian algorithm on the confusion matrix; with K = #sources this is the best of the K!
permutations). **Balanced purity** (the headline number) averages the per-source recall under the same matching, so
that a majority source cannot hide a channel that absorbs everything (Pong under a random policy: 96% of the
rewards are "point lost", so one channel taking all of them has purity 0.96 but balanced purity 0.5). This is the
one purity function of the package: ``rd2 decompose``, the toy experiment and the agents all call it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

# Raw reward value -> source name (spec §6.2). Games not listed use each distinct nonzero raw value as a source.
# Gopher: the spec (from MD3QN) says +80 for bonking the gopher, but ale-py's Gopher pays 100 (random play shows
# 20, 100 and 120 = 100 + 20 in one step, never 80); both are listed.
REWARD_SOURCES: dict[str, dict[float, str]] = {
    "Pong": {1.0: "point won", -1.0: "point lost"},
    "Gopher": {100.0: "gopher bonked", 80.0: "gopher bonked", 20.0: "hole filled"},
    "UpNDown": {400.0: "enemy car destroyed", 100.0: "flag reached", 10.0: "alive"},
    "MsPacman": {10.0: "pellet", 200.0: "ghost", 400.0: "ghost", 800.0: "ghost", 1600.0: "ghost"},
    "MonsterTreasure": {1.0: "gold", -1.0: "monster"},  # the toy game's default magnitudes (spec §5)
}


def parse_reward_sources(text: str) -> dict[float, str]:
    """``--reward-sources 10=pellet,200=ghost,400=ghost`` -> {10.0: "pellet", 200.0: "ghost", 400.0: "ghost"}."""
    table: dict[float, str] = {}
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        value, sep, name = item.partition("=")
        try:
            v = float(value)
        except ValueError:
            v = float("nan")
        if not sep or not name.strip() or not np.isfinite(v) or v == 0:
            raise ValueError(f"--reward-sources: {item!r} is not VALUE=NAME with a nonzero number, "
                             "e.g. 10=pellet,200=ghost")
        table[v] = name.strip()
    if not table:
        raise ValueError("--reward-sources is empty; give VALUE=NAME pairs, e.g. 10=pellet,200=ghost")
    return table


@dataclass
class PurityResult:
    purity: float  # accuracy under the best matching
    balanced: float  # mean per-source recall under that matching
    mapping: dict[int, int]  # channel -> source index
    confusion: np.ndarray  # (K, S) counts: channel assigned × true source
    sources: list[str] = field(default_factory=list)
    n: int = 0  # labelled transitions used
    n_unlabelled: int = 0  # nonzero rewards whose raw value is not in the source table (left out)

    def as_dict(self) -> dict[str, object]:
        return {"balanced_purity": self.balanced, "purity": self.purity, "n_labelled": self.n,
                "n_unlabelled": self.n_unlabelled,
                "mapping": {f"channel_{k}": self.sources[s] for k, s in self.mapping.items()}}


def assign_channels(sub_rewards: np.ndarray) -> np.ndarray:
    """The channel that carries each transition's reward: argmax_k |r̂_k|."""
    return np.abs(sub_rewards).argmax(1)


def channel_purity(channels: np.ndarray, labels: np.ndarray, K: int, n_sources: int,
                   sources: list[str] | None = None) -> PurityResult:
    """Best one-to-one channel→source matching of ``channels`` (n,) against integer ``labels`` (n,)."""
    channels, labels = np.asarray(channels, np.int64), np.asarray(labels, np.int64)
    conf = np.zeros((K, n_sources), np.int64)
    np.add.at(conf, (channels, labels), 1)
    rows, cols = linear_sum_assignment(conf, maximize=True)
    mapping = {int(r): int(c) for r, c in zip(rows, cols, strict=True)}
    n = len(labels)
    correct = sum(conf[r, c] for r, c in mapping.items())
    per_source = conf.sum(0)
    recalls = [conf[r, c] / per_source[c] for r, c in mapping.items() if per_source[c]]
    recalls += [0.0 for c in range(n_sources) if per_source[c] and c not in mapping.values()]
    return PurityResult(purity=correct / n if n else float("nan"),
                        balanced=float(np.mean(recalls)) if recalls else float("nan"), mapping=mapping,
                        confusion=conf, sources=sources or [str(i) for i in range(n_sources)], n=n)


def source_labels(raw_rewards: np.ndarray, game: str | None = None, table: dict[float, str] | None = None
                  ) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Label nonzero raw rewards with their source (``table`` if given, else the game's entry of REWARD_SOURCES,
    else one source per distinct value). Returns (labels, source names, mask of labelled entries); labels are -1 for
    zero or unknown values. Sources sharing a name (MsPacman ghosts) share a label."""
    raw = np.asarray(raw_rewards, np.float64)
    table = table or REWARD_SOURCES.get(game or "")
    if table is None:
        table = {float(v): f"reward {v:g}" for v in np.unique(raw[raw != 0])}
    names = list(dict.fromkeys(table.values()))
    labels = np.full(len(raw), -1, np.int64)
    for value, name in table.items():
        labels[np.isclose(raw, value)] = names.index(name)
    return labels, names, labels >= 0


def reward_purity(sub_rewards: np.ndarray, raw_rewards: np.ndarray, game: str | None,
                 table: dict[float, str] | None = None) -> PurityResult:
    """Purity of the learned channels against the raw reward sources of ``game`` (or ``table``) (§6.3)."""
    labels, names, ok = source_labels(raw_rewards, game, table)
    nonzero = np.asarray(raw_rewards) != 0
    res = channel_purity(assign_channels(sub_rewards[ok]), labels[ok], sub_rewards.shape[1], len(names), names)
    res.n_unlabelled = int((nonzero & ~ok).sum())
    return res
