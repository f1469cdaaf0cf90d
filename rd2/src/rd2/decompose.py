"""``rd2 decompose``: collect transitions from any environment, train only the RD² decomposition (L_dec, spec §3.2)
and measure channel purity against the true reward sources (spec §6.3; headline: balanced purity).

Run dir: ``config.json`` (with the resolved device), ``collection.json`` (episodes, reward values, the observation
shape and a SHA-256 fingerprint of the collected transitions), ``metrics.csv`` (losses, head output spread, balanced
and plain purity, updates/s), ``checkpoints/`` (model, optimizer, RNG, update counter), and at the end
``sub_rewards.csv`` (r̂_k of every nonzero-reward transition and a sample of zero-reward ones), ``samples.npz``
(model inputs and r̂_k of up to 256 of those rows, to check :func:`load_decomposition` against),
``channel_stats.csv``, ``purity.json`` (balanced purity first, health checks, confusion), ``masks.png`` and
``scatter.png``.

The replay (375 MB for the demo preset) is **not** kept by default: ``--resume`` collects the same transitions
again (same seeds: the collection is deterministic, and the fingerprint in collection.json is checked, so a resumed
run trains on exactly the original data or stops with a message). ``--keep-replay`` writes ``replay.npz`` into the
run dir instead, and resume then loads it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from neurips20_common import (
    CheckpointManager,
    RunDir,
    RunningMean,
    UserError,
    capture_rng_state,
    load_checkpoint,
    progress,
    restore_rng_state,
    seed_everything,
)
from neurips20_common.guard import FiniteGuard

from rd2.config import DecomposeConfig
from rd2.decomposition import RewardDecomposition, decomposition_loss
from rd2.envs.collector import Collector, random_policy
from rd2.envs.generic import EnvSpec, resolve_env
from rd2.plots import mask_maps, plot_mask_maps, plot_scatter
from rd2.purity import PurityResult, parse_reward_sources, reward_purity, source_labels
from rd2.replay import ReplayBuffer
from rd2.saliency import jacobian_saliency
from rd2.torso import make_torso, reinit_


class DecompositionCollapsed(UserError):
    """The learned sub-rewards do not depend on the input (``--strict`` turns the warning into exit code 4)."""

    exit_code = 4


def validate(cfg: DecomposeConfig) -> None:
    """Counts and sizes must be positive, fractions in range (issue 15): one message naming the flag."""
    for name in ("steps", "num_envs", "iters", "batch_size", "eval_every", "eval_samples", "ckpt_every", "threads"):
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise UserError(f"--{name.replace('_', '-')} must be a positive integer, got {v!r}")
    if cfg.decomposition.K < 1 or cfg.decomposition.hidden < 1:
        raise UserError(f"--K and the hidden width must be positive, got K={cfg.decomposition.K}, "
                        f"hidden={cfg.decomposition.hidden}")
    if not (cfg.lr > 0 and np.isfinite(cfg.lr)):
        raise UserError(f"--lr must be a positive number, got {cfg.lr!r}")
    if not 0 < cfg.nonzero_fraction < 1:
        raise UserError(f"nonzero_fraction must be in (0, 1), got {cfg.nonzero_fraction!r}")
    if not 0 < cfg.collapse_fraction <= 1:
        raise UserError(f"collapse_fraction must be in (0, 1], got {cfg.collapse_fraction!r}")
    if cfg.csv_zero_rows < 0 or cfg.warmup < 0:
        raise UserError("csv_zero_rows and warmup must be >= 0")
    if cfg.reward_sources:
        try:
            parse_reward_sources(cfg.reward_sources)
        except ValueError as exc:
            raise UserError(str(exc)) from None


def build_model(cfg: DecomposeConfig, model_shape: tuple[int, ...], n_actions: int) -> RewardDecomposition:
    """Torso from the observation shape (Nature CNN for frames, MLP for vectors; ``torso=none``: masks on the raw
    vector features, spec §3.1 toy), state/const masks and K reward heads (:class:`RewardDecomposition`)."""
    if cfg.torso == "none":
        if len(model_shape) != 1:
            raise UserError(f"--torso none needs vector observations, got shape {model_shape}")
        torso, n_features, fmap = None, int(model_shape[0]), None
    else:
        torso = make_torso(model_shape, cfg.decomposition.hidden)
        n_features = torso.out_dim
        fmap = torso.fmap_shape[0] if torso.fmap_shape is not None else None
    model = RewardDecomposition(cfg.decomposition, n_features=n_features, n_actions=n_actions, torso=torso,
                                fmap_channels=fmap)
    if cfg.init == "he":
        reinit_(model.torso if torso is not None else None)
        for head in model.heads:
            reinit_(head)
    return model


def agent_policy(path: str, epsilon: float, spec: EnvSpec, rng: np.random.Generator,
                 device: torch.device) -> Callable[[np.ndarray], np.ndarray]:
    """ε-greedy over an agent checkpointed by ``rd2 train`` (same preprocessing)."""
    from rd2.evaluate import load_agent

    if spec.kind != "atari":
        raise UserError("--policy agent is available for Atari games only")
    agent = load_agent(path, str(device))
    tcfg = agent.train_config
    if resolve_env(tcfg.env).game != spec.game:
        raise UserError(f"{path} is an agent for {tcfg.env}, not {spec.game}; pass a checkpoint trained on "
                        f"{spec.game}")
    if agent.n_actions != spec.n_actions:
        raise UserError(f"{path}: the agent has {agent.n_actions} actions, the env {spec.n_actions}")

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return agent.act(obs, epsilon, rng)

    return act


def fingerprint(replay: ReplayBuffer) -> str:
    """SHA-256 of everything a decomposition run reads from the replay (frames, actions, rewards, flags)."""
    h = hashlib.sha256()
    for name in ("frames", "action", "reward_raw", "terminated", "truncated", "valid"):
        h.update(np.ascontiguousarray(getattr(replay, name)).tobytes())
    return h.hexdigest()


def collect(cfg: DecomposeConfig, spec: EnvSpec, device: torch.device, show: bool | None,
            log: Callable[[str], None]) -> tuple[ReplayBuffer, dict]:
    env = spec.make_vector(cfg.num_envs, cfg.backend)
    # ``stack`` slots per episode go to its first stack and final frame: leave room so nothing is overwritten.
    replay = ReplayBuffer(int(cfg.steps * 1.05) + (16 + 16 * spec.stack) * cfg.num_envs, cfg.num_envs,
                          frame_shape=spec.frame_shape, stack=spec.stack, frame_dtype=spec.frame_dtype)
    rng = np.random.default_rng(cfg.seed + 1)
    if cfg.policy == "agent" or cfg.agent_ckpt:
        if not cfg.agent_ckpt:
            raise UserError("--policy agent needs --agent-ckpt PATH")
        policy = agent_policy(cfg.agent_ckpt, cfg.epsilon, spec, rng, device)
    else:
        policy = random_policy(env.single_action_space, rng)
    col = Collector(env, replay, seed=cfg.seed)
    bar = progress(total=cfg.steps, desc=f"collect {spec.game}", unit="step", disable=_disable(show))
    t0 = time.perf_counter()
    episodes: list[dict] = []

    def tick(n: int) -> None:
        bar.update(n)
        episodes.extend(col.pop_episodes())
        bar.set_postfix(steps_s=f"{col.steps / max(time.perf_counter() - t0, 1e-9):.0f}", episodes=len(episodes))

    col.run(cfg.steps, policy, callback=tick)
    bar.close()
    env.close()
    secs = time.perf_counter() - t0
    raw = replay.reward_raw[replay.valid]
    values, counts = np.unique(raw[raw != 0], return_counts=True)
    info = {"env": spec.name, "game": spec.game, "kind": spec.kind, "model_shape": list(spec.model_shape),
            "transitions": len(raw), "seconds": secs, "steps_per_s": len(raw) / secs, "n_actions": spec.n_actions,
            "episodes": len(episodes),
            "mean_episode_return_raw": float(np.mean([e["return_raw"] for e in episodes])) if episodes else None,
            "reward_values": {f"{v:g}": int(c) for v, c in zip(values, counts, strict=True)},
            "fingerprint": fingerprint(replay)}
    log(f"collected {len(raw)} transitions in {secs:.0f}s ({info['steps_per_s']:.0f} steps/s), "
        f"{len(episodes)} episodes; nonzero rewards: {info['reward_values']}")
    if len(values) == 0:
        raise UserError(f"{spec.game}: no nonzero reward in {len(raw)} transitions; collect more (--steps)")
    return replay, info


def auto_signs(replay: ReplayBuffer, K: int) -> str:
    """``head_signs=auto``: every channel non-negative when all rewards are ≥ 0 (non-positive when all ≤ 0), so no
    channel can cancel another; with rewards of both signs, ⌈K/2⌉ positive and ⌊K/2⌋ negative channels (the sign
    prior of [CODE] MuDE, spec §3.1)."""
    clipped = replay.reward_clipped.reshape(-1)[replay.valid_indices()]
    pos, neg = bool((clipped > 0).any()), bool((clipped < 0).any())
    if pos and neg:
        return ",".join(["+"] * ((K + 1) // 2) + ["-"] * (K // 2))
    if pos or neg:
        return ",".join(["+" if pos else "-"] * K)
    return ""


def reward_scale(replay: ReplayBuffer, cfg: DecomposeConfig) -> float:
    """Divisor of the raw reward: 1 for ``raw``, the largest |raw reward| collected for ``scaled`` (§3.2)."""
    if cfg.reward_target != "scaled":
        return 1.0
    raw = np.abs(replay.reward_raw.reshape(-1)[replay.valid_indices()])
    return float(raw.max()) if raw.size and raw.max() > 0 else 1.0


def _disable(show: bool | None) -> bool | None:
    """Progress bars: ``None`` = on an interactive terminal (not under CI), True/False = always on/off."""
    return None if show is None else not show


def model_input(obs: np.ndarray | torch.Tensor, model_shape: tuple[int, ...]) -> torch.Tensor:
    """Replay layout (B, stack, *frame) -> what the torso reads (B, *model_shape)."""
    t = torch.as_tensor(obs)
    return t.reshape(t.shape[0], *model_shape)


def _inputs(replay: ReplayBuffer, idx: np.ndarray, cfg: DecomposeConfig, shape: tuple[int, ...],
            device: torch.device, scale: float = 1.0):
    b = replay.get(idx)
    obs = b.next_obs if cfg.reward_input == "next" else b.obs
    target = b.reward_clipped if cfg.reward_target == "clipped" else b.reward_raw / np.float32(scale)
    return (model_input(obs, shape).to(device), torch.from_numpy(b.action).to(device),
            torch.from_numpy(target).to(device), b)


@torch.no_grad()
def predict(model: RewardDecomposition, replay: ReplayBuffer, idx: np.ndarray, cfg: DecomposeConfig,
            shape: tuple[int, ...], device: torch.device, chunk: int = 256,
            keep_masks: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    model.eval()
    subs, masks = [], []
    for s in range(0, len(idx), chunk):
        obs, act, _, _ = _inputs(replay, idx[s:s + chunk], cfg, shape, device)
        out = model(obs, act)
        subs.append(out["sub_rewards"].cpu().numpy())
        if keep_masks:
            masks.append(out["masks"].cpu().numpy())
    model.train()
    return np.concatenate(subs), (np.concatenate(masks) if keep_masks else None)


def health(sub: np.ndarray, target: np.ndarray, l_sum_final: float, cfg: DecomposeConfig) -> dict:
    """Does the decomposition depend on its input? (issue 18.) ``baseline`` is the L_sum of the best constant
    prediction on reward-balanced data (the variance of the target), the value a collapsed model sits at."""
    baseline = float(np.var(target))
    head_std = [float(s) for s in sub.std(0)]
    total_std = float(sub.sum(1).std())
    reasons, warnings = [], []
    ratio = l_sum_final / baseline if baseline > 0 else 0.0
    if baseline > 0 and not ratio <= cfg.collapse_fraction:
        reasons.append(f"L_sum {l_sum_final:.3f} is not below {cfg.collapse_fraction:g} × its constant-prediction "
                       f"value {baseline:.3f}")
    elif ratio > 0.5:
        warnings.append(f"L_sum {l_sum_final:.3f} is still {ratio:.0%} of its constant-prediction value "
                        f"{baseline:.3f}: under-fitted, more --iters may help")
    if baseline > 0 and total_std < 1e-3 * np.sqrt(baseline):
        reasons.append(f"the summed sub-reward is constant over the input (std {total_std:.1e})")
    return {"collapsed": bool(reasons), "reasons": reasons, "warnings": warnings, "L_sum_final": l_sum_final,
            "L_sum_constant_prediction": baseline, "L_sum_ratio": ratio, "sum_std": total_std, "head_std": head_std}


def load_or_collect(cfg: DecomposeConfig, spec: EnvSpec, run: RunDir, device: torch.device, resume: bool,
                    show: bool | None, log: Callable[[str], None]) -> tuple[ReplayBuffer, dict]:
    replay_path = run.file("replay.npz")
    info_path = run.file("collection.json")
    if resume and info_path.is_file():
        info = json.loads(info_path.read_text())
        if replay_path.is_file():
            replay = ReplayBuffer.load(replay_path)
            log(f"resuming: loaded {len(replay)} transitions from {replay_path}")
        else:
            log("resuming: collecting the same transitions again (the replay is not kept; --keep-replay keeps it)")
            replay, _ = collect(cfg, spec, device, show, log)
        got = fingerprint(replay)
        if info.get("fingerprint") and got != info["fingerprint"]:
            raise UserError(f"{run.path}: the transitions differ from the original run's (fingerprint {got[:12]} "
                            f"vs {info['fingerprint'][:12]} in collection.json); it cannot be resumed exactly. "
                            "Start a new run, or pass --keep-replay next time")
        return replay, info
    replay, info = collect(cfg, spec, device, show, log)
    if cfg.keep_replay:
        replay.save(replay_path)
    run.write_json("collection.json", info)
    return replay, info


def run_decompose(cfg: DecomposeConfig, run: RunDir | str | os.PathLike, device: torch.device | str = "auto",
                  resume: bool = False, show_progress: bool | None = None, log: Callable[[str], None] = print,
                  tensorboard: bool = False) -> dict:
    """The whole job; returns the contents of purity.json. ``run`` is a RunDir or a path (a new or empty folder,
    or with ``resume`` an existing run). Raises :class:`DecompositionCollapsed` only through :func:`check_strict`
    (the CLI's ``--strict``); a NaN/Inf loss or parameter stops with ``NonFiniteError``."""
    validate(cfg)
    if not isinstance(run, RunDir):
        from neurips20_common.cli import prepare_run_dir

        run = prepare_run_dir(run, resume=resume)
    if not isinstance(device, torch.device):
        from neurips20_common import select_device

        device = select_device(device)
    gens = seed_everything(cfg.seed)
    torch.set_num_threads(cfg.threads)
    spec = resolve_env(cfg.env)
    shape = spec.model_shape
    replay, info = load_or_collect(cfg, spec, run, device, resume, show_progress, log)
    if cfg.decomposition.head_signs == "auto":
        cfg.decomposition.head_signs = auto_signs(replay, cfg.decomposition.K)
        log(f"sign prior from the collected rewards: head_signs={cfg.decomposition.head_signs or 'none'}")
    run.write_config(cfg, extra={"device": str(device)})
    model = build_model(cfg, shape, spec.n_actions).to(device)
    opt = torch.optim.Adam(model.param_groups(cfg.lr, cfg.mask_lr_scale, cfg.torso_lr_scale))
    base_lrs = [g["lr"] for g in opt.param_groups]
    ckpts = CheckpointManager(run.checkpoints, keep_last=2)
    guard = FiniteGuard(every=1, checkpoints=ckpts, what="update")
    start = 0
    if resume and ckpts.latest() is not None:
        state = load_checkpoint(ckpts.latest())
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        restore_rng_state(state["rng"], gens)
        start = int(state["step"])
        log(f"resuming from update {start} ({ckpts.latest()})")
    metrics = run.metrics(resume_step=start, tensorboard=tensorboard)
    scale = reward_scale(replay, cfg)
    table = parse_reward_sources(cfg.reward_sources) if cfg.reward_sources else spec.reward_sources()

    # A fixed set of nonzero-reward transitions for the running purity (its own RNG: training draws are untouched).
    valid = replay.valid_indices()
    raw_all = replay.reward_raw.reshape(-1)[valid]
    eval_rng = np.random.default_rng(cfg.seed + 2)
    nonzero = valid[raw_all != 0]
    eval_idx = np.sort(eval_rng.choice(nonzero, size=min(cfg.eval_samples, len(nonzero)), replace=False))
    eval_raw = replay.reward_raw.reshape(-1)[eval_idx]

    def purity_now() -> PurityResult:
        sub, _ = predict(model, replay, eval_idx, cfg, shape, device)
        return reward_purity(sub, eval_raw, spec.game, table)

    def save(step: int) -> None:
        ckpts.save(step, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                          "rng": capture_rng_state(gens), "config": dataclasses.asdict(cfg)})

    running, recent = RunningMean(), RunningMean()
    bar = progress(total=cfg.iters, initial=start, desc=f"decompose {spec.game}", unit="upd",
                   disable=_disable(show_progress))
    t0, c0, done_since = time.perf_counter(), time.process_time(), 0
    post = {"upd_s": "-", "bal_purity": "-", "L_sum": "-"}
    l_sum_last = float("nan")
    for it in range(start, cfg.iters):
        step = it + 1
        warm = min(1.0, step / cfg.warmup) if cfg.warmup else 1.0  # linear warm-up (a function of the step only)
        for g, lr in zip(opt.param_groups, base_lrs, strict=True):
            g["lr"] = lr * warm
        idx = replay.sample_indices(cfg.batch_size, gens["numpy"], balance=cfg.balance,
                                    nonzero_fraction=cfg.nonzero_fraction)
        obs, act, target, _ = _inputs(replay, idx, cfg, shape, device, scale)
        out = model(obs, act)
        loss, terms = decomposition_loss(out, target, cfg.decomposition)
        guard.check(step, loss=loss)  # NaN/Inf: stop before the step, name the last finite checkpoint
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sub_std = float(out["sub_rewards"].detach().std(0).max())
        running.update(loss=loss.detach(), r_hat_std=sub_std, **terms)
        recent.update(L_sum=terms["L_sum"])
        done_since += 1
        if step % 10 == 0:
            post["L_sum"] = f"{recent.means()['L_sum']:.3f}"
            recent.reset()
            bar.set_postfix(post, refresh=False)
        if step % cfg.eval_every == 0 or step == cfg.iters:
            guard.check_module(step, model, force=True)
            res = purity_now()
            ups = done_since / (time.perf_counter() - t0)
            # CPU seconds per update (all threads): wall time on a shared machine says little, this does.
            cpu = (time.process_time() - c0) / done_since
            means = running.means()
            l_sum_last = means["L_sum"]
            metrics.log({"step": step, **means, "balanced_purity": res.balanced, "purity": res.purity,
                         "updates_per_s": ups, "cpu_s_per_update": cpu})
            running.reset()
            t0, c0, done_since = time.perf_counter(), time.process_time(), 0
            post.update(upd_s=f"{ups:.1f}", bal_purity=f"{res.balanced:.3f}")
            bar.set_postfix(post)
        if step % cfg.ckpt_every == 0 or step == cfg.iters:
            save(step)
        bar.update(1)
    bar.close()
    metrics.close()
    if start >= cfg.iters:  # nothing left to train: the final L_sum is in metrics.csv
        rows = pd.read_csv(run.file("metrics.csv"))
        l_sum_last = float(rows["L_sum"].iloc[-1]) if len(rows) else float("nan")
    return finish(cfg, model, replay, spec, run, device, info, table, scale, l_sum_last, log)


def finish(cfg: DecomposeConfig, model: RewardDecomposition, replay: ReplayBuffer, spec: EnvSpec, run: RunDir,
           device: torch.device, info: dict, table: dict[float, str] | None, scale: float, l_sum_final: float,
           log: Callable[[str], None]) -> dict:
    """Sub-rewards CSV, per-channel stats, purity on every nonzero-reward transition, health checks, figures."""
    shape = spec.model_shape
    valid = replay.valid_indices()
    raw = replay.reward_raw.reshape(-1)[valid]
    rng = np.random.default_rng(cfg.seed + 3)
    zeros = valid[raw == 0]
    idx = np.sort(np.concatenate([valid[raw != 0], rng.choice(zeros, min(cfg.csv_zero_rows, len(zeros)), False)]))
    sub, masks = predict(model, replay, idx, cfg, shape, device, keep_masks=True)
    if not np.isfinite(sub).all():
        from neurips20_common import NonFiniteError

        raise NonFiniteError("the learned sub-rewards are NaN/Inf; no purity is reported. Lower --lr and start "
                             "again")
    flat = replay.reward_raw.reshape(-1)
    raw_idx, clip_idx = flat[idx], replay.reward_clipped.reshape(-1)[idx]
    labels, names, _ = source_labels(raw_idx, spec.game, table)
    K = sub.shape[1]
    res = reward_purity(sub[raw_idx != 0], raw_idx[raw_idx != 0], spec.game, table)
    env_id, slot = idx // replay.cap, idx % replay.cap
    rows = pd.DataFrame({"index": idx, "env": env_id, "slot": slot, "action": replay.action.reshape(-1)[idx],
                         "reward_raw": raw_idx, "reward_clipped": clip_idx,
                         "source": [names[i] if i >= 0 else "" for i in labels]})
    for k in range(K):
        rows[f"r_hat_{k}"] = sub[:, k]
    rows["channel"] = np.where(raw_idx != 0, np.abs(sub).argmax(1), -1)
    rows.to_csv(run.file("sub_rewards.csv"), index=False)
    # model inputs of up to 256 rows (nonzero rewards first), so a loaded decomposition can be checked against them
    pick = np.concatenate([np.flatnonzero(raw_idx != 0), np.flatnonzero(raw_idx == 0)])[:256]
    b = replay.get(idx[pick])
    obs = b.next_obs if cfg.reward_input == "next" else b.obs
    np.savez_compressed(run.file("samples.npz"), index=idx[pick], obs=model_input(obs, shape).numpy(),
                        action=b.action, sub_rewards=sub[pick])

    mask_size = masks.sum(2)  # (n, K)
    # |r̂_k| / Σ_j |r̂_j|: how much of a transition's reward its channels carry. Purity (argmax) cannot tell a
    # separated decomposition from channels that each hold a fixed mixture of every source (Gopher, issue 18).
    shares = np.abs(sub) / np.maximum(np.abs(sub).sum(1, keepdims=True), 1e-12)
    separation = {names[s]: float(np.median(shares[labels == s, k])) for k, s in res.mapping.items()
                  if (labels == s).any()}
    stats = []
    for k in range(K):
        row = {"channel": k, "mean": float(sub[:, k].mean()), "std": float(sub[:, k].std()),
               "mean_on_zero_reward": float(sub[raw_idx == 0, k].mean()) if (raw_idx == 0).any() else None,
               "share_of_nonzero_assigned": float((rows["channel"] == k).sum() / max((raw_idx != 0).sum(), 1)),
               "mask_size_mean": float(mask_size[:, k].mean()), "mask_mean": float(masks[:, k].mean()),
               "matched_source": res.sources[res.mapping[k]] if k in res.mapping else ""}
        for s, name in enumerate(names):
            sel = labels == s
            if sel.any():
                row[f"mean_on[{name}]"] = float(sub[sel, k].mean())
                row[f"share_on[{name}]"] = float(np.median(shares[sel, k]))
        stats.append(row)
    pd.DataFrame(stats).to_csv(run.file("channel_stats.csv"), index=False)

    checks = health(*_health_inputs(model, replay, cfg, spec, device, scale), l_sum_final, cfg)
    checks["separation"] = separation
    if len(names) < 2:
        checks["warnings"].append(f"only one reward source ({names[0] if names else 'none'}): nothing to "
                                 "decompose, the purity says nothing")
    elif separation and min(separation.values()) < cfg.separation_warn:
        checks["warnings"].append("the channels mix the reward sources: the matched channel carries a median "
                                  + ", ".join(f"{v:.0%} of {n}" for n, v in separation.items())
                                  + " (1/K when every channel holds the same share)")
    _figures(cfg, model, replay, spec, run, device, idx, raw_idx, labels, names, masks, sub, res)

    # r̂_k (sub_rewards.csv, scatter.png) are in units of the regression target: raw reward / reward_scale.
    summary = {"env": spec.name, "game": spec.game, "K": K, **res.as_dict(), "health": checks,
               "confusion": res.confusion.tolist(), "reward_target": cfg.reward_target, "reward_scale": scale,
               "head_signs": cfg.decomposition.head_signs, "sources": res.sources, "collection": info}
    run.write_json("purity.json", summary)
    log(f"confusion (rows: channel, cols: {', '.join(res.sources)}):\n{res.confusion}")
    log(f"wrote {run.path}/{{sub_rewards.csv, channel_stats.csv, purity.json, masks.png, scatter.png}}")
    line = (f"{spec.game}: balanced purity {res.balanced:.3f} (purity {res.purity:.3f}) over {res.n} nonzero-reward "
            f"transitions; channels -> {res.as_dict()['mapping']}")
    if checks["collapsed"]:
        log(f"WARNING: the decomposition FAILED (collapsed): {'; '.join(checks['reasons'])}. The sub-rewards have "
            f"not learned to depend on the input, so this is not a result: {line}. Try more --iters, another --seed "
            "or a lower --lr")
    else:
        for warning in checks["warnings"]:
            log(f"warning: {warning}")
        log(line)
    return summary


def _health_inputs(model: RewardDecomposition, replay: ReplayBuffer, cfg: DecomposeConfig, spec: EnvSpec,
                   device: torch.device, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """r̂ and targets on 2048 transitions drawn like the training batches (the health checks' data)."""
    idx = replay.sample_indices(2048, np.random.default_rng(cfg.seed + 4), balance=cfg.balance,
                                nonzero_fraction=cfg.nonzero_fraction)
    sub, _ = predict(model, replay, idx, cfg, spec.model_shape, device)
    flat = replay.reward_clipped if cfg.reward_target == "clipped" else replay.reward_raw / np.float32(scale)
    return sub, flat.reshape(-1)[idx]


def check_strict(summary: dict) -> None:
    """``--strict``: a collapsed decomposition is an error (exit code 4)."""
    if summary["health"]["collapsed"]:
        raise DecompositionCollapsed(f"{summary['game']}: the decomposition collapsed "
                                     f"({'; '.join(summary['health']['reasons'])}); --strict: exit 4")


def _figures(cfg: DecomposeConfig, model: RewardDecomposition, replay: ReplayBuffer, spec: EnvSpec, run: RunDir,
             device: torch.device, idx: np.ndarray, raw_idx: np.ndarray, labels: np.ndarray, names: list[str],
             masks: np.ndarray, sub: np.ndarray, res: PurityResult) -> None:
    """masks.png: up to 2 example transitions per source and one zero-reward one; scatter.png."""
    picks, titles = [], []
    for s, name in enumerate(names):
        where = np.flatnonzero(labels == s)[:2]
        picks += list(where)
        titles += [f"{name} ({raw_idx[i]:g})" for i in where]
    zero_rows = np.flatnonzero(raw_idx == 0)[:1]
    picks += list(zero_rows)
    titles += ["no reward"] * len(zero_rows)
    picks = np.asarray(picks, np.int64)
    where = replay.next_index(idx[picks]) if cfg.reward_input == "next" else idx[picks]
    x = model_input(replay.obs(where), spec.model_shape).to(device)
    act = torch.from_numpy(replay.action.reshape(-1)[idx[picks]]).to(device)
    model.eval()
    sal = jacobian_saliency(lambda inp: model(inp, act)["sub_rewards"], x).cpu().numpy()
    model.train()
    torso = model.torso
    if spec.is_image:
        frames = replay.obs(where)[:, -1]
        if frames.ndim == 4:  # (n, C, H, W) colour frames: show their mean
            frames = frames.mean(1)
        if sal.ndim == 5:
            sal = sal.sum(2)
        fmap = torso.fmap_shape
        plot_mask_maps(frames, mask_maps(masks[picks], fmap), titles, run.file("masks.png"), saliency=sal)
    else:
        plot_mask_maps(None, masks[picks], titles, run.file("masks.png"),
                       saliency=sal.reshape(len(picks), sal.shape[1], -1))
    nz = raw_idx != 0
    if nz.any():
        plot_scatter(sub[nz], raw_idx[nz], run.file("scatter.png"), seed=cfg.seed,
                     title=f"{spec.game}: balanced purity {res.balanced:.3f} (purity {res.purity:.3f})")


# --- Python API (issue 16) ---------------------------------------------------------------------------------------
class Decomposition:
    """A trained decomposition loaded from a run dir (:func:`load_decomposition`).

    ``sub_rewards(obs)`` gives r̂ (B, K) for a batch of observations in the layout the run trained on (s_{t+1} of a
    transition by default; Atari (B, 4, 84, 84) uint8, vectors (B, n)), as a numpy array for numpy input and a
    tensor for tensor input; one observation without the batch axis gives (K,). Values are in units of the
    regression target: multiply by ``reward_scale`` for points.
    """

    def __init__(self, model: RewardDecomposition, config: DecomposeConfig, model_shape: tuple[int, ...],
                 sources: list[str], reward_scale: float, step: int, device: torch.device) -> None:
        self.model, self.config, self.model_shape = model.eval(), config, tuple(model_shape)
        self.sources, self.reward_scale, self.step, self.device = sources, reward_scale, step, device

    @property
    def K(self) -> int:
        return self.config.decomposition.K

    def _forward(self, obs, action=None) -> tuple[dict[str, torch.Tensor], bool, bool, torch.device | None]:
        is_np = not isinstance(obs, torch.Tensor)
        t = torch.as_tensor(np.asarray(obs)) if is_np else obs
        single = tuple(t.shape) == self.model_shape or t.numel() == int(np.prod(self.model_shape))
        if single:
            t = t.reshape(1, *self.model_shape)
        t = model_input(t, self.model_shape)
        act = None
        if action is not None:
            act = torch.as_tensor(np.asarray(action) if not isinstance(action, torch.Tensor) else action)
            act = act.reshape(-1).to(self.device)
        with torch.no_grad():
            out = self.model(t.to(self.device), act)
        return out, is_np, single, (None if is_np else obs.device)

    def sub_rewards(self, obs, action=None):
        """r̂_k of each observation (``action`` only for runs with ``--reward-input current_action``)."""
        out, is_np, single, dev = self._forward(obs, action)
        r = out["sub_rewards"]
        r = r[0] if single else r
        return r.cpu().numpy() if is_np else r.to(dev)

    def masks(self, obs, action=None):
        """m_k(s) over the torso features: (B, K, N)."""
        out, is_np, single, dev = self._forward(obs, action)
        m = out["masks"][0] if single else out["masks"]
        return m.cpu().numpy() if is_np else m.to(dev)


def load_decomposition(run_dir, device: str | torch.device = "cpu") -> Decomposition:
    """The decomposition a ``rd2 decompose`` run wrote (its newest checkpoint, checksum-verified)."""
    from pathlib import Path

    from neurips20_common.cli import resolve_checkpoint

    from rd2.config import config_from_dict

    run = RunDir.open(Path(run_dir))
    cfg = config_from_dict(run.read_config())
    info_path = run.file("collection.json")
    if not info_path.is_file():
        raise UserError(f"{info_path} is missing: {run_dir} is not a finished or resumable rd2 decompose run")
    info = json.loads(info_path.read_text())
    ckpt = resolve_checkpoint(run.path, prefer="latest")
    state = load_checkpoint(ckpt)
    dev = torch.device(device)
    model = build_model(cfg, tuple(info["model_shape"]), int(info["n_actions"]))
    model.load_state_dict(state["model"])
    purity = json.loads(run.file("purity.json").read_text()) if run.file("purity.json").is_file() else {}
    return Decomposition(model.to(dev), cfg, tuple(info["model_shape"]), purity.get("sources", []),
                         float(purity.get("reward_scale", 1.0)), int(state["step"]), dev)
