import gymnasium as gym
import numpy as np
import pytest
from neurips20_common import UserError

from rd2.envs import Collector, MonsterTreasureEnv, make_env, make_vector_env, native_vector_available, resolve_env_id
from rd2.envs.toy import TRUE_MASKS, collect_toy
from rd2.replay import ReplayBuffer


@pytest.mark.parametrize("name,gym_id", [("Pong", "ALE/Pong-v5"), ("ALE/Pong-v5", "ALE/Pong-v5"),
                                         ("PongNoFrameskip-v4", "PongNoFrameskip-v4"), ("pong", "ALE/Pong-v5")])
def test_env_id_forms(name: str, gym_id: str) -> None:
    spec = resolve_env_id(name)
    assert (spec.game, spec.rom, spec.gym_id) == ("Pong", "pong", gym_id)


def test_camel_case_games_and_unknown_game() -> None:
    assert resolve_env_id("UpNDownNoFrameskip-v4").rom == "up_n_down"
    assert resolve_env_id("ALE/MsPacman-v5").rom == "ms_pacman"
    with pytest.raises(UserError, match="unknown Atari game"):
        resolve_env_id("Pongg")


@pytest.mark.parametrize("name", ["ALE/Pong-v5", "PongNoFrameskip-v4"])
def test_single_env_preprocessing_shapes_and_raw_rewards(name: str) -> None:
    env = make_env(name, seed=0)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert (obs[:3] == 0).all() and obs[3].any()  # zero padding at the episode start
    rewards = []
    for _ in range(400):
        obs, r, _term, _trunc, _ = env.step(env.action_space.sample())
        rewards.append(r)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert set(np.unique(rewards)) <= {-1.0, 0.0, 1.0} and -1.0 in rewards  # a random Pong agent loses points


def test_gopher_rewards_are_raw_not_clipped() -> None:
    env = make_vector_env("Gopher", 2, backend="ale" if native_vector_available() else "gymnasium")
    col = Collector(env, ReplayBuffer(20_000, 2))
    rng = np.random.default_rng(0)
    col.run(2500, lambda o: rng.integers(0, env.single_action_space.n, size=len(o)))
    raw = col.replay.reward_raw[col.replay.valid]
    clipped = col.replay.reward_clipped[col.replay.valid]
    assert raw.max() >= 20 and set(np.unique(clipped)) <= {0.0, 1.0} and clipped.max() == 1.0


@pytest.mark.parametrize("backend", ["ale", "gymnasium"])
def test_vector_backends_agree_on_format(backend: str) -> None:
    if backend == "ale" and not native_vector_available():
        pytest.skip("this ale-py has no native AtariVectorEnv")
    env = make_vector_env("Pong", 2, backend=backend)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    obs, r, _term, _trunc, _ = env.step(np.array([0, 1]))
    assert obs.shape == (2, 4, 84, 84) and r.shape == (2,)
    env.close()


def test_toy_sub_rewards_sum_to_reward_and_depend_on_their_features() -> None:
    env = MonsterTreasureEnv(size=5, distractors=2, magnitudes=(1.0, -2.0), chase_prob=0.3)
    data = collect_toy(env, 3000, seed=0)
    assert data["obs"].shape == (3000, 8)
    np.testing.assert_allclose(data["sub_rewards"].sum(1), data["reward"])
    assert (data["sub_rewards"][:, 0] > 0).sum() > 10 and (data["sub_rewards"][:, 1] < 0).sum() > 10
    assert set(np.unique(data["sub_rewards"][:, 1])) == {-2.0, 0.0}
    # r_gold is a function of the (agent, treasure) coordinates of s_{t+1} only: equal inputs -> equal sub-reward
    for k, feats in enumerate(TRUE_MASKS):
        key = data["next_obs"][:, list(feats)]
        _, inv = np.unique(key, axis=0, return_inverse=True)
        for g in np.unique(inv):
            assert len(np.unique(data["sub_rewards"][inv.reshape(-1) == g, k])) == 1


def test_toy_registered_with_gymnasium() -> None:
    env = gym.make("rd2/MonsterTreasure-v0", size=6)
    obs, _ = env.reset(seed=3)
    assert obs.shape == (6,) and obs.min() >= 0 and obs.max() <= 1
