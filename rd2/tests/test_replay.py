import numpy as np
import pytest

from rd2.envs.collector import Collector
from rd2.replay import ReplayBuffer


class CounterVecEnv:
    """NEXT_STEP-autoreset vector env whose frames encode (env, global step) so stacks can be checked exactly."""

    def __init__(self, num_envs: int, ep_len: int = 7, stack: int = 4) -> None:
        self.num_envs, self.ep_len, self.stack = num_envs, ep_len + np.arange(num_envs), stack
        self.t = np.zeros(num_envs, np.int64)
        self.clock = 0
        self.need_reset = np.zeros(num_envs, bool)
        self.hist: list[list[np.ndarray]] = [[] for _ in range(num_envs)]
        self.log: list[tuple] = []  # (env, obs, action, reward, term, trunc, next_obs)

    def _frame(self, env: int) -> np.ndarray:
        self.clock += 1
        f = np.zeros((2, 2), np.uint8)
        f[0, 0], f[0, 1], f[1, 0] = env, self.clock % 256, self.clock // 256
        return f

    def _stacked(self, env: int) -> np.ndarray:
        frames = self.hist[env][-self.stack:]
        pad = [np.zeros((2, 2), np.uint8)] * (self.stack - len(frames))
        return np.stack(pad + frames)

    def _reset_one(self, env: int) -> np.ndarray:
        self.t[env] = 0
        self.hist[env] = [self._frame(env)]
        return self._stacked(env)

    def reset(self, seed=None):
        return np.stack([self._reset_one(e) for e in range(self.num_envs)]), {}

    def step(self, actions):
        n = self.num_envs
        obs, rew, term, trunc = [], np.zeros(n), np.zeros(n, bool), np.zeros(n, bool)
        for e in range(self.num_envs):
            if self.need_reset[e]:
                obs.append(self._reset_one(e))
                self.need_reset[e] = False
                continue
            before = self._stacked(e)
            self.t[e] += 1
            self.hist[e].append(self._frame(e))
            rew[e] = [0.0, 20.0, -3.0, 80.0][self.clock % 4]
            term[e] = self.t[e] == self.ep_len[e] and e % 2 == 0
            trunc[e] = self.t[e] == self.ep_len[e] and e % 2 == 1
            self.need_reset[e] = term[e] or trunc[e]
            obs.append(self._stacked(e))
            self.log.append((e, before, int(actions[e]), rew[e], term[e], trunc[e], obs[-1]))
        return np.stack(obs), rew, term, trunc, {}


def _fill(capacity: int, steps: int, num_envs: int = 2):
    env = CounterVecEnv(num_envs)
    rb = ReplayBuffer(capacity, num_envs, frame_shape=(2, 2))
    col = Collector(env, rb)
    rng = np.random.default_rng(0)
    indices = []
    for _ in range(steps):
        indices.append(col.step(rng.integers(0, 5, size=num_envs)))
    return env, rb, np.concatenate(indices)


def test_stacks_rebuilt_exactly_and_raw_and_clipped_rewards_stored() -> None:
    env, rb, idx = _fill(capacity=10_000, steps=60)
    assert len(idx) == len(env.log) == len(rb)
    b = rb.get(idx)
    for i, (_, obs, a, r, te, tr, nobs) in enumerate(env.log):
        np.testing.assert_array_equal(b.obs[i], obs)
        np.testing.assert_array_equal(b.next_obs[i], nobs)
        assert b.action[i] == a and b.reward_raw[i] == r and b.reward_clipped[i] == np.sign(r)
        assert b.terminated[i] == te and b.truncated[i] == tr
    assert set(np.unique(b.reward_raw)) == {0.0, 20.0, -3.0, 80.0}
    assert set(np.unique(b.reward_clipped)) == {0.0, 1.0, -1.0}


def test_ring_wraparound_keeps_only_intact_transitions() -> None:
    env, rb, _idx = _fill(capacity=2 * 24, steps=200)
    valid = rb.valid_indices()
    assert 0 < len(valid) < 2 * 24
    newest = {tuple(t[1].reshape(-1)): t for t in env.log}
    b = rb.get(valid)
    for i in range(len(valid)):  # every surviving transition is one the env really produced
        entry = newest[tuple(b.obs[i].reshape(-1))]
        np.testing.assert_array_equal(b.next_obs[i], entry[6])
        assert b.reward_raw[i] == entry[3]


def test_nstep_returns_stop_at_episode_end() -> None:
    env, rb, idx = _fill(capacity=10_000, steps=40, num_envs=1)
    gamma = 0.5
    b = rb.get(idx, n_step=3, gamma=gamma)
    log = env.log
    for i in range(len(log)):
        g, n, term = 0.0, 0, False
        for k in range(3):
            e = log[i + k] if i + k < len(log) else None
            if e is None:
                break
            g += gamma**k * np.sign(e[3])
            n += 1
            term = e[4]
            if e[4] or e[5]:
                break
        assert b.n_used[i] == n
        assert b.return_clipped[i] == pytest.approx(g)
        assert b.discount[i] == pytest.approx(0.0 if term else gamma**n)
        np.testing.assert_array_equal(b.next_obs[i], log[i + n - 1][6])


def test_balanced_sampling_and_save_load(tmp_path) -> None:
    _, rb, _ = _fill(capacity=10_000, steps=100)
    rng = np.random.default_rng(1)
    idx = rb.sample_indices(4000, rng, balance="raw", nonzero_fraction=0.6)
    r = rb.get(idx).reward_raw
    assert abs((r != 0).mean() - 0.6) < 0.03
    for v in (20.0, -3.0, 80.0):  # each nonzero value gets an equal share
        assert abs((r == v).mean() - 0.2) < 0.03
    path = rb.save(tmp_path / "replay.npz")
    rb2 = ReplayBuffer.load(path)
    np.testing.assert_array_equal(rb2.get(idx).obs, rb.get(idx).obs)
    assert rb2.total_added == rb.total_added and rb2.stack == rb.stack


def test_invalid_index_and_add_before_start() -> None:
    rb = ReplayBuffer(100, 1, frame_shape=(2, 2))
    with pytest.raises(RuntimeError):
        rb.add([0], [0], [1.0], [False], [False], np.zeros((1, 4, 2, 2), np.uint8))
    rb.start([0], np.zeros((1, 4, 2, 2), np.uint8))
    with pytest.raises(IndexError):
        rb.get(np.array([0]))
