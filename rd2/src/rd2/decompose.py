"""``rd2 decompose``: collect Atari transitions, train only the RD² decomposition (L_dec), measure channel purity.

Run dir: ``config.json``, ``collection.json`` (episodes and reward values seen), ``replay.npz`` (the collected
transitions, so a resumed run does not collect again), ``metrics.csv`` (losses, mask sizes, purity, updates/s),
``checkpoints/`` (model, optimizer, RNG, update counter: ``--resume`` continues exactly), and at the end
``sub_rewards.csv`` (learned r̂_k of every nonzero-reward transition and a sample of zero-reward ones),
``channel_stats.csv``, ``purity.json``, ``masks.png`` and ``scatter.png``.
"""

from __future__ import annotations

import dataclasses
import json
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

from rd2.config import DecomposeConfig
from rd2.decomposition import RewardDecomposition, decomposition_loss
from rd2.envs.atari import AtariSpec, make_vector_env, resolve_env_id
from rd2.envs.collector import Collector, random_policy
from rd2.plots import mask_maps, plot_mask_maps, plot_scatter
from rd2.purity import atari_purity, source_labels
from rd2.replay import ReplayBuffer
from rd2.torso import NatureCNN

FMAP = NatureCNN().fmap_shape  # (64, 7, 7) on 84×84 frames


RUN_FILES = ("config.json", "collection.json", "replay.npz", "metrics.csv", "sub_rewards.csv", "channel_stats.csv",
             "purity.json", "masks.png", "scatter.png")


def clear_run_dir(run: RunDir) -> None:
    """Remove what an earlier decompose run wrote into ``run`` (nothing else)."""
    for name in RUN_FILES:
        run.file(name).unlink(missing_ok=True)
    if run.checkpoints.is_dir():
        for p in run.checkpoints.glob("*.pt"):
            p.unlink()


def build_model(cfg: DecomposeConfig, n_actions: int) -> RewardDecomposition:
    return RewardDecomposition(cfg.decomposition, n_features=int(np.prod(FMAP)), n_actions=n_actions,
                               torso=NatureCNN(), fmap_channels=FMAP[0])


def agent_policy(path: str, epsilon: float, game: str, n_actions: int, rng: np.random.Generator,
                 device: torch.device) -> Callable[[np.ndarray], np.ndarray]:
    """ε-greedy over an agent checkpointed by ``rd2 train`` (same preprocessing: rd2.envs.make_env)."""
    from rd2.train import load_agent

    agent, tcfg, _ = load_agent(path, str(device))
    if resolve_env_id(tcfg.env).game != game:
        raise UserError(f"{path} is an agent for {tcfg.env}, not {game}; pass a checkpoint trained on {game}")
    if agent.n_actions != n_actions:
        raise UserError(f"{path}: the agent has {agent.n_actions} actions, the env {n_actions}")

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return agent.act(obs, epsilon, rng)

    return act


def collect(cfg: DecomposeConfig, spec: AtariSpec, device: torch.device, show: bool | None,
            log: Callable[[str], None]) -> tuple[ReplayBuffer, dict]:
    env = make_vector_env(spec, cfg.num_envs, backend=cfg.backend)
    n_actions = int(env.single_action_space.n)
    # 4 slots per episode go to its first stack and final frame: leave room so nothing is overwritten.
    replay = ReplayBuffer(int(cfg.steps * 1.05) + 64 * cfg.num_envs, cfg.num_envs)
    rng = np.random.default_rng(cfg.seed + 1)
    if cfg.policy == "agent" or cfg.agent_ckpt:
        if not cfg.agent_ckpt:
            raise UserError("--policy agent needs --agent-ckpt PATH")
        policy = agent_policy(cfg.agent_ckpt, cfg.epsilon, spec.game, n_actions, rng, device)
    else:
        policy = random_policy(env.single_action_space, rng)
    col = Collector(env, replay, seed=cfg.seed)
    bar = progress(total=cfg.steps, desc=f"collect {spec.game}", unit="step", disable=None if show else True)
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
    info = {"game": spec.game, "rom": spec.rom, "transitions": len(raw), "seconds": secs,
            "steps_per_s": len(raw) / secs, "n_actions": n_actions, "episodes": len(episodes),
            "mean_episode_return_raw": float(np.mean([e["return_raw"] for e in episodes])) if episodes else None,
            "reward_values": {f"{v:g}": int(c) for v, c in zip(values, counts, strict=True)}}
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


def _inputs(replay: ReplayBuffer, idx: np.ndarray, cfg: DecomposeConfig, device: torch.device,
            scale: float = 1.0):
    b = replay.get(idx)
    obs = b.next_obs if cfg.reward_input == "next" else b.obs
    target = b.reward_clipped if cfg.reward_target == "clipped" else b.reward_raw / np.float32(scale)
    return (torch.from_numpy(obs).to(device), torch.from_numpy(b.action).to(device),
            torch.from_numpy(target).to(device), b)


@torch.no_grad()
def predict(model: RewardDecomposition, replay: ReplayBuffer, idx: np.ndarray, cfg: DecomposeConfig,
            device: torch.device, chunk: int = 256, keep_masks: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    model.eval()
    subs, masks = [], []
    for s in range(0, len(idx), chunk):
        obs, act, _, _ = _inputs(replay, idx[s:s + chunk], cfg, device)
        out = model(obs, act)
        subs.append(out["sub_rewards"].cpu().numpy())
        if keep_masks:
            masks.append(out["masks"].cpu().numpy())
    model.train()
    return np.concatenate(subs), (np.concatenate(masks) if keep_masks else None)


def input_saliency(model: RewardDecomposition, stacks: np.ndarray, actions: np.ndarray,
                   device: torch.device) -> np.ndarray:
    """|∂r̂_k/∂s| summed over the stacked frames (spec §6.5): (n, K, 84, 84)."""
    model.eval()
    x = torch.from_numpy(stacks).to(device).float().requires_grad_(True)
    sub = model(x, torch.from_numpy(actions).to(device))["sub_rewards"]
    maps = []
    for k in range(sub.shape[1]):
        (g,) = torch.autograd.grad(sub[:, k].sum(), x, retain_graph=True)
        maps.append(g.abs().sum(1))
    model.train()
    return torch.stack(maps, 1).cpu().numpy()


def run_decompose(cfg: DecomposeConfig, run: RunDir, device: torch.device, resume: bool = False,
                  show_progress: bool | None = None, log: Callable[[str], None] = print) -> dict:
    gens = seed_everything(cfg.seed)
    torch.set_num_threads(max(1, cfg.threads))
    spec = resolve_env_id(cfg.env)
    replay_path = run.file("replay.npz")
    if resume and replay_path.is_file():
        replay = ReplayBuffer.load(replay_path)
        info = json.loads(run.file("collection.json").read_text())
        log(f"resuming: loaded {len(replay)} transitions from {replay_path}")
    else:
        replay, info = collect(cfg, spec, device, show_progress, log)
        replay.save(replay_path)
        run.file("collection.json").write_text(json.dumps(info, indent=2) + "\n")
    if cfg.decomposition.head_signs == "auto":
        cfg.decomposition.head_signs = auto_signs(replay, cfg.decomposition.K)
        run.write_config(cfg)
        log(f"sign prior from the collected rewards: head_signs={cfg.decomposition.head_signs or 'none'}")
    model = build_model(cfg, info["n_actions"]).to(device)
    opt = torch.optim.Adam(model.param_groups(cfg.lr, cfg.mask_lr_scale))
    ckpts = CheckpointManager(run.checkpoints, keep_last=2)
    start = 0
    if resume and ckpts.latest() is not None:
        state = load_checkpoint(ckpts.latest())
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        restore_rng_state(state["rng"], gens)
        start = int(state["step"])
        log(f"resuming from update {start} ({ckpts.latest()})")
    metrics = run.metrics(resume_step=start)
    scale = reward_scale(replay, cfg)

    # A fixed set of nonzero-reward transitions for the running purity (its own RNG: training draws are untouched).
    valid = replay.valid_indices()
    raw_all = replay.reward_raw.reshape(-1)[valid]
    eval_rng = np.random.default_rng(cfg.seed + 2)
    nonzero = valid[raw_all != 0]
    eval_idx = np.sort(eval_rng.choice(nonzero, size=min(cfg.eval_samples, len(nonzero)), replace=False))
    eval_raw = replay.reward_raw.reshape(-1)[eval_idx]

    def purity_now() -> float:
        sub, _ = predict(model, replay, eval_idx, cfg, device)
        return atari_purity(sub, eval_raw, spec.game).purity

    def save(step: int) -> None:
        ckpts.save(step, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                          "rng": capture_rng_state(gens), "config": dataclasses.asdict(cfg)})

    running = RunningMean()
    bar = progress(total=cfg.iters, initial=start, desc=f"decompose {spec.game}", unit="upd",
                   disable=None if show_progress else True)
    t0, c0, done_since = time.perf_counter(), time.process_time(), 0
    purity = float("nan")
    for it in range(start, cfg.iters):
        idx = replay.sample_indices(cfg.batch_size, gens["numpy"], balance=cfg.balance,
                                    nonzero_fraction=cfg.nonzero_fraction)
        obs, act, target, _ = _inputs(replay, idx, cfg, device, scale)
        out = model(obs, act)
        loss, terms = decomposition_loss(out, target, cfg.decomposition)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running.update(loss=loss.detach(), **terms)
        done_since += 1
        step = it + 1
        if step % cfg.eval_every == 0 or step == cfg.iters:
            purity = purity_now()
            ups = done_since / (time.perf_counter() - t0)
            # CPU seconds per update (all threads): wall time on a shared machine says little, this does.
            cpu = (time.process_time() - c0) / done_since
            metrics.log({"step": step, **running.means(), "purity": purity, "updates_per_s": ups,
                         "cpu_s_per_update": cpu})
            running.reset()
            t0, c0, done_since = time.perf_counter(), time.process_time(), 0
            bar.set_postfix(upd_s=f"{ups:.1f}", purity=f"{purity:.3f}", loss=f"{terms['L_sum']:.3f}")
        if step % cfg.ckpt_every == 0 or step == cfg.iters:
            save(step)
        bar.update(1)
    bar.close()
    metrics.close()
    return finish(cfg, model, replay, spec, run, device, info, log)


def finish(cfg: DecomposeConfig, model: RewardDecomposition, replay: ReplayBuffer, spec: AtariSpec, run: RunDir,
           device: torch.device, info: dict, log: Callable[[str], None]) -> dict:
    """Sub-rewards CSV, per-channel stats, purity on every nonzero-reward transition, and the figures."""
    valid = replay.valid_indices()
    raw = replay.reward_raw.reshape(-1)[valid]
    rng = np.random.default_rng(cfg.seed + 3)
    zeros = valid[raw == 0]
    idx = np.sort(np.concatenate([valid[raw != 0], rng.choice(zeros, min(cfg.csv_zero_rows, len(zeros)), False)]))
    sub, masks = predict(model, replay, idx, cfg, device, keep_masks=True)
    flat = replay.reward_raw.reshape(-1)
    raw_idx, clip_idx = flat[idx], replay.reward_clipped.reshape(-1)[idx]
    labels, names, _ = source_labels(raw_idx, spec.game)
    K = sub.shape[1]
    res = atari_purity(sub[raw_idx != 0], raw_idx[raw_idx != 0], spec.game)
    env_id, slot = idx // replay.cap, idx % replay.cap
    table = pd.DataFrame({"index": idx, "env": env_id, "slot": slot, "action": replay.action.reshape(-1)[idx],
                          "reward_raw": raw_idx, "reward_clipped": clip_idx,
                          "source": [names[i] if i >= 0 else "" for i in labels]})
    for k in range(K):
        table[f"r_hat_{k}"] = sub[:, k]
    table["channel"] = np.where(raw_idx != 0, np.abs(sub).argmax(1), -1)
    table.to_csv(run.file("sub_rewards.csv"), index=False)

    mask_size = masks.sum(2)  # (n, K)
    stats = []
    for k in range(K):
        row = {"channel": k, "mean": float(sub[:, k].mean()), "std": float(sub[:, k].std()),
               "mean_on_zero_reward": float(sub[raw_idx == 0, k].mean()) if (raw_idx == 0).any() else None,
               "share_of_nonzero_assigned": float((table["channel"] == k).sum() / max((raw_idx != 0).sum(), 1)),
               "mask_size_mean": float(mask_size[:, k].mean()), "mask_mean": float(masks[:, k].mean()),
               "matched_source": res.sources[res.mapping[k]] if k in res.mapping else ""}
        for s, name in enumerate(names):
            sel = labels == s
            if sel.any():
                row[f"mean_on[{name}]"] = float(sub[sel, k].mean())
        stats.append(row)
    pd.DataFrame(stats).to_csv(run.file("channel_stats.csv"), index=False)

    # Mask maps: up to 2 examples per source and one zero-reward state.
    picks, titles = [], []
    for s, name in enumerate(names):
        where = np.flatnonzero(labels == s)[:2]
        picks += list(where)
        titles += [f"{name} ({raw_idx[i]:g})" for i in where]
    zero_rows = np.flatnonzero(raw_idx == 0)[:1]
    picks += list(zero_rows)
    titles += ["no reward"] * len(zero_rows)
    picks = np.asarray(picks, np.int64)
    stacks = replay.obs(replay.next_index(idx[picks]) if cfg.reward_input == "next" else idx[picks])
    sal = input_saliency(model, stacks, replay.action.reshape(-1)[idx[picks]], device)
    plot_mask_maps(stacks[:, -1], mask_maps(masks[picks], FMAP), titles, run.file("masks.png"), saliency=sal)
    nz = raw_idx != 0
    plot_scatter(sub, raw_idx, run.file("scatter.png"), seed=cfg.seed) if nz.any() else None

    # r̂_k (sub_rewards.csv, scatter.png) are in units of the regression target: raw reward / reward_scale.
    summary = {"game": spec.game, "K": K, **res.as_dict(), "confusion": res.confusion.tolist(),
               "reward_target": cfg.reward_target, "reward_scale": reward_scale(replay, cfg),
               "head_signs": cfg.decomposition.head_signs,
               "sources": res.sources, "collection": info}
    run.file("purity.json").write_text(json.dumps(summary, indent=2) + "\n")
    log(f"{spec.game}: purity {res.purity:.3f} (balanced {res.balanced:.3f}) over {res.n} nonzero-reward "
        f"transitions; channels -> {res.as_dict()['mapping']}")
    log(f"confusion (rows: channel, cols: {', '.join(res.sources)}):\n{res.confusion}")
    log(f"wrote {run.path}/{{sub_rewards.csv, channel_stats.csv, purity.json, masks.png, scatter.png}}")
    return summary
