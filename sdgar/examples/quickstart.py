# %% [markdown]
# # sdgar quickstart: the Python API on planted communities
#
# Four planted communities: user u belongs to block u mod 4 and has 10 items of that block's 40. A recommender
# that learned anything ranks the other 30 items of the user's own block first; chance is 1/4.
# Runs in about ten seconds on one CPU thread (CI runs it through tests/test_api.py). Every step asserts what
# it printed.

# %%
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

import sdgar
from sdgar import BPR, SDGAR

print(sorted(dir(sdgar)))
rng = np.random.default_rng(0)
N_USERS, N_ITEMS, BLOCKS, PER_USER = 200, 160, 4, 10
block_items = N_ITEMS // BLOCKS
rows, cols = [], []
for u in range(N_USERS):
    b = u % BLOCKS
    rows += [u] * PER_USER
    cols += list(rng.choice(np.arange(b * block_items, (b + 1) * block_items), PER_USER, replace=False))
user_items = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(N_USERS, N_ITEMS))
print(repr(user_items))


def block_precision(ids: np.ndarray, users: np.ndarray) -> float:
    """Share of recommended items that lie in the user's own block."""
    return float(((ids // block_items) == (users % BLOCKS)[:, None]).mean())


# %% [markdown]
# ## Fit SD-GAR on a users × items matrix

# %%
model = SDGAR(factors=16, negatives=5, iterations=10, learning_rate=0.01, batch_size=128, gen_emb_dim=4,
              gen_sample_num_item=16, gen_sample_num_user=16, num_threads=1, device="cpu", random_state=0)
model.fit(user_items, show_progress=False)
print(model)
print("user_factors", model.user_factors.shape, "item_factors", model.item_factors.shape)
assert model.user_factors.shape == (N_USERS, 16) and model.item_factors.shape == (N_ITEMS, 16)

# %% [markdown]
# ## recommend: one user, then every user at once

# %%
ids, scores = model.recommend(0, user_items[0], N=10, filter_already_liked_items=True)
print("user 0 (block 0):", ids, np.round(scores, 3))
assert len(ids) == 10 and not set(ids) & set(user_items[0].indices)  # liked items are filtered
assert (np.diff(scores) <= 0).all()

users = np.arange(N_USERS)
all_ids, all_scores = model.recommend(users, user_items[users], N=10)
sdgar_precision = block_precision(all_ids, users)
print(f"SD-GAR: {sdgar_precision:.3f} of the top-10 items are in the user's own block (chance 0.25)")
assert all_ids.shape == (N_USERS, 10)
assert sdgar_precision >= 0.9

# %% [markdown]
# ## similar_items: an item's neighbours come from its block

# %%
sim_ids, sim_scores = model.similar_items(3, N=6)
print("similar to item 3 (block 0):", sim_ids, np.round(sim_scores, 3))
assert sim_ids[0] == 3 and abs(sim_scores[0] - 1) < 1e-5  # an item is most similar to itself
assert (sim_ids[1:] // block_items == 0).mean() >= 0.8

# %% [markdown]
# ## A DataFrame with original ids: recommendations come back in those ids

# %%
coo = user_items.tocoo()
df = pd.DataFrame({"customer": [f"c{u:03d}" for u in coo.row], "sku": [f"sku-{i}" for i in coo.col]})
bpr = BPR(factors=16, iterations=10, learning_rate=0.01, batch_size=128, num_threads=1, device="cpu")
bpr.fit(df, show_progress=False, user_col="customer", item_col="sku")
ids, scores = bpr.recommend("c001", N=5)  # user_items defaults to the fitted interactions
print("BPR for customer c001 (block 1):", ids)
assert all(i.startswith("sku-") for i in ids) and not set(ids) & set(df.loc[df.customer == "c001", "sku"])
assert np.mean([int(i[4:]) // block_items == 1 for i in ids]) >= 0.6

# %% [markdown]
# ## save / load, and the weights-only export

# %%
with tempfile.TemporaryDirectory() as tmp:
    path = model.save(Path(tmp) / "sdgar.pt")
    print("saved", path, oct(path.stat().st_mode & 0o777))
    again = sdgar.load(path)
    print("loaded", again)
    ids1, scores1 = model.recommend(0, user_items[0], N=10)
    ids2, scores2 = again.recommend(0, user_items[0], N=10)
    assert (ids2 == ids1).all() and np.array_equal(scores2, scores1)
    assert path.stat().st_mode & 0o777 == 0o644
    weights, info = model.export(Path(tmp) / "sdgar")
    from safetensors.numpy import load_file

    tensors = load_file(weights)
    print("exported", sorted(tensors), info.name)
    manual = tensors["user_factors"][0] @ tensors["item_factors"].T + tensors["item_bias"]
    manual[user_items[0].indices] = -np.inf
    print("top 3 of user 0 from the exported factors:", np.argsort(-manual)[:3])
    assert (np.argsort(-manual)[:3] == ids1[:3]).all()

print("quickstart: all checks passed")
