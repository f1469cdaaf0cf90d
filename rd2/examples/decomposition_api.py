"""The rd2 decomposition as a library, notebook style (CPU, about 15 s): learn a decomposition of the toy
Monster-Treasure game, load it back and use it. Run: python examples/decomposition_api.py [RUN_DIR]
(CI runs it through tests/test_examples.py and it asserts what it prints)."""

import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import rd2
from rd2 import load_decomposition, make_config, run_decompose

print("rd2 exports:", ", ".join(n for n in dir(rd2) if not n.startswith("_")))

# 1. Learn: 5000 random-policy transitions of the toy game (vector observations -> MLP torso), 300 updates.
run_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()) / "toy"
cfg = make_config(env="toy", steps=5000, num_envs=2, iters=300, eval_every=100, ckpt_every=100, threads=1)
summary = run_decompose(cfg, run_dir, device="cpu", show_progress=False, log=lambda line: None)
print(f"balanced purity {summary['balanced_purity']:.3f} (purity {summary['purity']:.3f}), "
      f"channels -> {summary['mapping']}, collapsed: {summary['health']['collapsed']}")
assert not summary["health"]["collapsed"] and summary["balanced_purity"] >= 0.9

# 2. Load it back: the decomposition the run wrote, from its run dir.
dec = load_decomposition(run_dir)
print(f"loaded: K={dec.K}, sources {dec.sources}, trained for {dec.step} updates")

# 3. r̂_k of a batch (numpy in -> numpy out) reproduces what the run wrote (samples.npz and sub_rewards.csv).
samples = np.load(run_dir / "samples.npz")
r_hat = dec.sub_rewards(samples["obs"])
print("sub_rewards of 3 transitions:\n", np.round(r_hat[:3], 3))
assert r_hat.shape == (len(samples["obs"]), dec.K)
np.testing.assert_allclose(r_hat, samples["sub_rewards"], rtol=0, atol=1e-5)
table = pd.read_csv(run_dir / "sub_rewards.csv").set_index("index")
written = table.loc[samples["index"], [f"r_hat_{k}" for k in range(dec.K)]].to_numpy()
np.testing.assert_allclose(r_hat, written, rtol=0, atol=1e-5)

# 4. torch in -> torch out; one observation without the batch axis -> (K,).
t = dec.sub_rewards(torch.from_numpy(samples["obs"]))
assert isinstance(t, torch.Tensor) and torch.allclose(t, torch.from_numpy(r_hat), atol=1e-6)
assert dec.sub_rewards(samples["obs"][0]).shape == (dec.K,)

# 5. The channels mean something: the "gold" channel pays on +1 (treasure) steps, the "monster" one on -1 steps.
channel = {name: int(k.split("_")[1]) for k, name in summary["mapping"].items()}
reward = table.loc[samples["index"], "reward_raw"].to_numpy()
gold, monster = r_hat[reward == 1], r_hat[reward == -1]
print(f"mean r̂ on treasure steps {gold.mean(0).round(2)}, on monster steps {monster.mean(0).round(2)}")
g, m = channel["gold"], channel["monster"]
assert gold[:, g].mean() > gold[:, m].mean() + 0.2 and monster[:, m].mean() < monster[:, g].mean() - 0.2
print("ok")
