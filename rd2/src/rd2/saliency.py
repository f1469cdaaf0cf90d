"""`rd2 saliency`: per-channel Jacobian saliency (spec §6.5) of a checkpointed agent along a greedy rollout.

For each step the maps are |∂ f / ∂ s| summed over the 4 stacked frames, for f = r̂_k(s) (RD²'s learned
sub-reward of channel k, the decomposition reads s as the s_{t+1} of a transition), f = Q_k(s, a*) (the channel's
value of the greedy action a* = argmax_a Σ_k Q_k) and, for undecomposed agents, Q(s, a*). As in the dueling paper,
the newest grayscale frame goes into G and B and the normalized saliency into R. RD²'s state-dependent masks m_k(s)
are drawn the same way: the mean over the 64 feature maps of the 7×7 mask, upsampled to 84×84.
Writes step_XXXX.png every ``png_every`` steps, saliency.gif (every step) and saliency.csv.
On the toy game (coordinates, not frames) it writes the mean |∂ f / ∂ feature| per channel as a bar plot.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from neurips20_common import progress
from PIL import Image, ImageDraw

if TYPE_CHECKING:
    from rd2.agents import Agent

SCALE = 2  # 84 → 168 pixels per tile
LABEL = 14  # label strip height


def jacobian_saliency(fn: Callable[[torch.Tensor], torch.Tensor], obs: torch.Tensor,
                      sum_stack: bool = True) -> torch.Tensor:
    """Jacobian saliency |∂f_j/∂s| (spec §6.5; the dueling paper's maps) of every output of ``fn``.

    ``fn`` maps a batch ``obs`` (B, *shape) to (B, T) values, each row depending only on its own sample. Returns
    (B, T, *shape), or (B, T, H, W) for stacked frames (B, stack, H, W) when ``sum_stack`` (summed over the stack).
    The package's one saliency function: ``rd2 decompose`` (masks.png) and ``rd2 saliency`` use it.
    """
    with torch.enable_grad():
        x = obs.detach().float().requires_grad_(True)
        out = fn(x)
        maps = []
        for j in range(out.shape[1]):
            (g,) = torch.autograd.grad(out[:, j].sum(), x, retain_graph=j + 1 < out.shape[1])
            maps.append(g.abs())
    sal = torch.stack(maps, 1)
    return sal.sum(2) if sum_stack and x.dim() == 4 else sal


def saliency_step(agent: Agent, obs: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, float], int]:
    """Maps (name → array shaped like one observation without the stack axis, or (84, 84) masks), scalar values
    and the greedy action, for one observation ``obs`` (without batch axis)."""
    net = agent.online
    x = torch.as_tensor(obs[None], device=agent.device).float()
    values: dict[str, float] = {}
    maps: dict[str, np.ndarray] = {}
    with torch.no_grad():
        if agent.name == "rd2":
            out = net(x)
            total = out["q"].sum(1) if agent.cfg.mode == "sum" else agent.action_values(net, x)
            masks = out["masks"][0]
            k = masks.shape[0]
            names = [f"r{i + 1}" for i in range(k)] + [f"Q{i + 1}" for i in range(out["q"].shape[1])]
        else:
            total = agent.action_values(net, x)
            comps = agent.components(x)
            names = ["Q"] + [f"Q{i + 1}" for i in range(comps["q"].shape[1])] if "q" in comps else ["Q"]
    a_star = int(total.argmax(1))

    def targets(inp: torch.Tensor) -> torch.Tensor:
        if agent.name == "rd2":
            return torch.cat([net.decomposition(inp)["sub_rewards"], net(inp)["q"][:, :, a_star]], 1)
        cols = [agent.action_values(net, inp)[:, a_star:a_star + 1]]
        if len(names) > 1:
            cols.append(agent.components(inp)["q"][:, :, a_star])
        return torch.cat(cols, 1)

    sal = jacobian_saliency(targets, x)[0]
    with torch.no_grad():
        vals = targets(x)[0]
    for j, name in enumerate(names):
        maps[f"sal_{name}"] = sal[j].cpu().numpy()
        values[name] = float(vals[j])
    if agent.name == "rd2":
        if masks.shape[-1] == 64 * 7 * 7:
            for i in range(k):
                m = masks[i].view(64, 7, 7).mean(0).cpu().numpy()
                maps[f"mask{i + 1}"] = np.asarray(Image.fromarray((m * 255).astype(np.uint8)).resize(
                    (obs.shape[-1], obs.shape[-2]), Image.BILINEAR), np.float32) / 255.0
                values[f"mask{i + 1}_mean"] = float(masks[i].mean())
        else:
            for i in range(k):
                values[f"mask{i + 1}_mean"] = float(masks[i].mean())
    return maps, values, a_star


def _tile(frame: np.ndarray, heat: np.ndarray | None, label: str, normalize: bool) -> Image.Image:
    rgb = np.repeat(frame[..., None], 3, axis=2).astype(np.float32)
    if heat is not None:
        h = heat / (np.percentile(heat, 99.5) + 1e-12) if normalize else heat
        rgb[..., 0] = np.maximum(rgb[..., 0] * 0.5, np.clip(h, 0, 1) * 255)
        rgb[..., 1:] *= 0.8
    img = Image.fromarray(rgb.astype(np.uint8)).resize((frame.shape[1] * SCALE, frame.shape[0] * SCALE),
                                                      Image.NEAREST)
    canvas = Image.new("RGB", (img.width, img.height + LABEL), "white")
    canvas.paste(img, (0, LABEL))
    ImageDraw.Draw(canvas).text((3, 1), label, fill="black")
    return canvas


def render_panel(obs: np.ndarray, maps: dict[str, np.ndarray], caption: str) -> Image.Image:
    frame = obs[-1]
    tiles = [_tile(frame, None, "frame", False)]
    for name in sorted(k for k in maps if k.startswith("sal_")):
        label = name[4:].replace("r", "saliency r^", 1) if name.startswith("sal_r") else f"saliency {name[4:]}"
        tiles.append(_tile(frame, maps[name], label, True))
    for name in sorted(k for k in maps if k.startswith("mask")):
        tiles.append(_tile(frame, maps[name], f"mask m{name[4:]}(s)", False))
    w, h = tiles[0].size
    panel = Image.new("RGB", (w * len(tiles), h + LABEL), "white")
    for i, t in enumerate(tiles):
        panel.paste(t, (i * w, 0))
    ImageDraw.Draw(panel).text((3, h + 1), caption, fill="black")
    return panel


def run_saliency(ckpt: str | Path, steps: int = 200, out_dir: str | Path | None = None, png_every: int = 20,
                 epsilon: float | None = None, seed: int = 0, device: str = "auto",
                 show_progress: bool = True) -> dict[str, Any]:
    from rd2.evaluate import load_agent
    from rd2.train import episode_seed, make_env

    agent = load_agent(ckpt, device)
    cfg, state = agent.train_config, {"step": agent.step}
    agent.online.eval()
    ckpt = Path(ckpt)
    out = Path(out_dir) if out_dir else ckpt.parent.parent / f"saliency-{int(state.get('step', 0)):09d}"
    out.mkdir(parents=True, exist_ok=True)
    eps = agent.cfg.eps_eval if epsilon is None else epsilon
    rng = np.random.default_rng(seed)
    env = make_env(cfg)
    obs, _ = env.reset(seed=episode_seed(seed, 0, 0))
    episode = 0
    rows: list[dict[str, Any]] = []
    frames: list[Image.Image] = []
    image = len(obs.shape) == 3
    for t in progress(range(steps), total=steps, desc="saliency", disable=None if show_progress else True):
        maps, values, a_star = saliency_step(agent, obs)
        action = a_star if rng.random() >= eps else int(rng.integers(0, agent.n_actions))
        next_obs, reward, term, trunc, _ = env.step(action)
        rows.append({"step": t, "episode": episode, "action": action, "reward": float(reward), **values,
                     **({} if image else {f"{k}_feature{i}": float(v) for k, m in maps.items()
                                          for i, v in enumerate(m)})})
        if image:
            caption = f"t={t} a={action} r={reward:g} " + " ".join(
                f"{k}={v:.2f}" for k, v in values.items() if not k.startswith("mask"))
            panel = render_panel(obs, maps, caption)
            frames.append(panel)
            if t % png_every == 0:
                panel.save(out / f"step_{t:04d}.png")
        obs = next_obs
        if term or trunc:
            episode += 1
            obs, _ = env.reset(seed=episode_seed(seed, 0, episode))
    env.close()
    with (out / "saliency.csv").open("w", newline="") as fh:
        keys = list(dict.fromkeys(k for r in rows for k in r))
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    files = {"csv": str(out / "saliency.csv")}
    if image and frames:
        frames[0].save(out / "saliency.gif", save_all=True, append_images=frames[1:], duration=80, loop=0)
        files["gif"] = str(out / "saliency.gif")
        files["png"] = str(sorted(out.glob("step_*.png"))[0])
    else:
        files["png"] = str(_toy_plot(rows, out / "feature_saliency.png", f"{cfg.algo} on {cfg.env}"))
    return {"out_dir": str(out), "steps": steps, "episodes_started": episode + 1, **files}


def _toy_plot(rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({k.rsplit("_feature", 1)[0] for k in rows[0] if "_feature" in k})
    n_feat = len([k for k in rows[0] if k.startswith(names[0] + "_feature")])
    feats = ["a_x", "a_y", "t_x", "t_y", "m_x", "m_y"] + [f"d{i}" for i in range(max(0, n_feat - 6))]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / len(names)
    for j, name in enumerate(names):
        vals = np.array([[r[f"{name}_feature{i}"] for i in range(n_feat)] for r in rows]).mean(0)
        ax.bar(np.arange(n_feat) + j * width, vals / (vals.max() + 1e-12), width, label=name[4:])
    ax.set_xticks(np.arange(n_feat) + 0.4 - width / 2, feats[:n_feat])
    ax.set_ylabel("mean |∂f/∂feature| (max = 1)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
