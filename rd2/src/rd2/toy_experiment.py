"""Table-1-style toy experiment (spec §5, §10.1–10.3): RD² on Monster-Treasure against ablations, over seeds.

For every seed: collect random-policy transitions, train a decomposition with constant masks on s_{t+1} → r_t
(each head reads only its masked coordinates), then score it on fresh transitions against the
true (r_gold, r_monster): balanced channel-assignment accuracy (mean per-source recall; the headline, as in
``rd2 decompose``) and plain accuracy under the best channel→source matching (:func:`rd2.purity.channel_purity`),
sub-reward MSE, mask recovery and sum
error. Variants: full RD², RD² without L_mini, RD² without L_div1, and an unmasked K-head regressor.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch
from neurips20_common import seed_everything

from rd2.decomposition import DecompositionConfig, RewardDecomposition, decomposition_loss
from rd2.envs.toy import TRUE_MASKS, MonsterTreasureEnv, collect_toy
from rd2.purity import assign_channels, channel_purity


@dataclass
class ToyConfig:
    """Toy game and training budget (spec §5; the game details are a spec proposal, UNVERIFIED)."""

    size: int = 8  # grid side (§5)
    episode_len: int = 100  # §5
    magnitudes: tuple[float, float] = (1.0, -1.0)  # r_gold, r_monster (§5 option --magnitudes)
    chase_prob: float = 0.0  # monster random walk (§5)
    distractors: int = 0  # extra noise/clock features (§5 option, §10.3)
    train_steps: int = 50_000  # random-policy transitions for training
    eval_steps: int = 20_000  # fresh transitions for the metrics
    iters: int = 3000  # Adam updates
    batch_size: int = 256
    nonzero_fraction: float = 0.5  # reward-balanced sampling: this share of each batch has r ≠ 0
    lr: float = 3e-3  # Adam, cosine-decayed to 0 over ``iters``
    mask_lr_scale: float = 10.0  # constant masks learn faster than the heads (their scale is shared with the heads)
    reg_warmup: float = 0.0  # fraction of ``iters`` over which λ_mini and λ_div1 ramp up linearly from 0
    mask_threshold: float = 0.5  # §5 metric 3
    # §3.1 toy: constant masks. Shuffle gating, open initial masks (σ(2) ≈ 0.88) and λ_mini = 5e-2 are this
    # package's choices for the toy (with plain x ⊙ m the heads undo small masks by scaling, so thresholded masks
    # say little; with λ_mini = 1e-2 one unused feature stayed open in 4 of 5 seeds; see README); λ_div1, ε and
    # L_zero follow §3.2.
    decomposition: DecompositionConfig = field(default_factory=lambda: DecompositionConfig(
        mask_type="const", action_input=False, hidden=128, lambda_zero=1.0, mask_gate="shuffle", mask_init=2.0,
        lambda_mini=5e-2))


VARIANTS: dict[str, dict[str, object]] = {
    "rd2": {},
    "rd2_no_mini": {"lambda_mini": 0.0},
    "rd2_no_div1": {"lambda_div1": 0.0},
    "unmasked_k_heads": {"mask_type": "none"},
}


def _batches(reward: np.ndarray, cfg: ToyConfig, rng: np.random.Generator):
    nz, z = np.flatnonzero(reward != 0), np.flatnonzero(reward == 0)
    n_nz = round(cfg.batch_size * cfg.nonzero_fraction)
    while True:
        yield np.concatenate([nz[rng.integers(0, len(nz), n_nz)], z[rng.integers(0, len(z), cfg.batch_size - n_nz)]])


def train_toy(cfg: ToyConfig, dec: DecompositionConfig, seed: int, data: dict[str, np.ndarray]
              ) -> RewardDecomposition:
    gens = seed_everything(seed)
    torch.set_num_threads(1)  # tiny MLPs: one thread avoids sync overhead on a shared CPU
    model = RewardDecomposition(dec, n_features=data["next_obs"].shape[1], n_actions=5)
    opt = torch.optim.Adam(model.param_groups(cfg.lr, cfg.mask_lr_scale))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.iters)
    obs, act, rew = (torch.from_numpy(data[k]) for k in ("next_obs", "action", "reward"))
    batches = _batches(data["reward"], cfg, gens["numpy"])
    warm = max(1, round(cfg.reg_warmup * cfg.iters))
    for it in range(cfg.iters):
        idx = torch.from_numpy(next(batches))
        out = model(obs[idx], act[idx])
        ramp = min(1.0, (it + 1) / warm)
        cur = dec if ramp == 1.0 else dataclasses.replace(dec, lambda_mini=dec.lambda_mini * ramp,
                                                          lambda_div1=dec.lambda_div1 * ramp)
        loss, _ = decomposition_loss(out, rew[idx], cur)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model


@torch.no_grad()
def score_toy(model: RewardDecomposition, data: dict[str, np.ndarray], cfg: ToyConfig) -> dict[str, float]:
    out = model(torch.from_numpy(data["next_obs"]), torch.from_numpy(data["action"]))
    pred = out["sub_rewards"].numpy()
    masks = out["masks"][0].numpy()
    true = data["sub_rewards"]
    single = (true != 0).sum(1) == 1  # steps with exactly one active source
    res = channel_purity(assign_channels(pred[single]), np.abs(true[single]).argmax(1), pred.shape[1], true.shape[1])
    # perm[s] = the channel matched to source s (rd2.purity: Hungarian matching, the package's one purity function)
    perm = [next(k for k, src in res.mapping.items() if src == s) for s in range(true.shape[1])]
    acc, balanced = res.purity, res.balanced
    mse = float(np.mean((pred[:, perm] - true) ** 2))
    n = masks.shape[1]
    recovered, f1s = [], []
    for s, feats in enumerate(TRUE_MASKS):
        truth = np.zeros(n, bool)
        truth[list(feats)] = True
        got = masks[perm[s]] > cfg.mask_threshold
        recovered.append(bool((got == truth).all()))
        tp = (got & truth).sum()
        f1s.append(2 * tp / (got.sum() + truth.sum()) if got.sum() + truth.sum() else 1.0)
    distractor_weight = float(masks[:, 6:].mean()) if n > 6 else float("nan")
    return {"balanced_accuracy": balanced, "channel_accuracy": acc, "sub_reward_mse": mse,
            "mask_recovered": float(all(recovered)),
            "mask_f1": float(np.mean(f1s)), "sum_mse": float(np.mean((pred.sum(1) - data["reward"]) ** 2)),
            "distractor_mask_weight": distractor_weight,
            "masks": " | ".join(" ".join(f"{v:.2f}" for v in m) for m in masks)}


def _one_seed(cfg: ToyConfig, seed: int, variants: list[str]) -> list[dict]:
    env = MonsterTreasureEnv(cfg.size, cfg.episode_len, cfg.magnitudes, cfg.chase_prob, cfg.distractors)
    train = collect_toy(env, cfg.train_steps, seed=seed)
    test = collect_toy(env, cfg.eval_steps, seed=10_000 + seed)
    rows = []
    for name in variants:
        dec = dataclasses.replace(cfg.decomposition, **VARIANTS[name])
        model = train_toy(cfg, dec, seed, train)
        rows.append({"variant": name, "seed": seed, **score_toy(model, test, cfg)})
    return rows


def run_toy(cfg: ToyConfig, seeds: list[int], variants: list[str] | None = None, log=print,
            jobs: int = 1) -> list[dict]:
    """All variants × seeds (``jobs`` seeds in parallel processes); one row per (variant, seed)."""
    names = variants or list(VARIANTS)
    if jobs > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(min(jobs, len(seeds))) as pool:
            per_seed = pool.starmap(_one_seed, [(cfg, s, names) for s in seeds])
    else:
        per_seed = [_one_seed(cfg, s, names) for s in seeds]
    rows = [r for seed_rows in per_seed for r in seed_rows]
    for row in rows:
        log(f"seed {row['seed']} {row['variant']:17s} balanced acc {row['balanced_accuracy']:.3f} "
            f"acc {row['channel_accuracy']:.3f} "
            f"mse {row['sub_reward_mse']:.4f} masks_ok {int(row['mask_recovered'])} sum_mse {row['sum_mse']:.2e}  "
            f"masks [{row['masks']}]")
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    """Mean ± std per variant (mask recovery as the number of seeds with exactly recovered masks)."""
    out = []
    for name in dict.fromkeys(r["variant"] for r in rows):
        sel = [r for r in rows if r["variant"] == name]
        summary: dict[str, object] = {"variant": name, "seeds": len(sel)}
        for key in ("balanced_accuracy", "channel_accuracy", "sub_reward_mse", "mask_f1", "sum_mse",
                    "distractor_mask_weight"):
            vals = np.array([r[key] for r in sel], float)
            summary[f"{key}_mean"], summary[f"{key}_std"] = float(vals.mean()), float(vals.std())
        summary["masks_recovered"] = f"{int(sum(r['mask_recovered'] for r in sel))}/{len(sel)}"
        out.append(summary)
    return out
