import numpy as np
import pytest

from rd2.purity import assign_channels, channel_purity, reward_purity, source_labels


def test_purity_is_permutation_invariant() -> None:
    labels = np.array([0, 0, 1, 1, 1])
    for channels in ([0, 0, 1, 1, 1], [1, 1, 0, 0, 0]):
        res = channel_purity(np.array(channels), labels, K=2, n_sources=2)
        assert res.purity == 1.0 and res.balanced == 1.0
    assert channel_purity(np.array([1, 1, 0, 0, 0]), labels, 2, 2).mapping == {0: 1, 1: 0}


def test_one_channel_taking_everything_is_exposed_by_balanced_purity() -> None:
    labels = np.array([0] * 9 + [1])
    res = channel_purity(np.zeros(10, int), labels, K=2, n_sources=2)
    assert res.purity == pytest.approx(0.9) and res.balanced == pytest.approx(0.5)


def test_three_channels_two_sources_and_mixed_case() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1])
    channels = np.array([2, 2, 0, 1, 1, 1])  # source 0 split over channels 2 and 0: best match keeps 2 of 3
    res = channel_purity(channels, labels, K=3, n_sources=2)
    assert res.purity == pytest.approx(5 / 6) and res.mapping[2] == 0 and res.mapping[1] == 1


def test_atari_labels_from_raw_values() -> None:
    raw = np.array([100.0, 20.0, 0.0, 120.0, 20.0])
    labels, names, ok = source_labels(raw, "Gopher")
    assert names == ["gopher bonked", "hole filled"]
    assert labels.tolist() == [0, 1, -1, -1, 1] and ok.tolist() == [True, True, False, False, True]
    sub = np.array([[0.9, 0.1], [0.2, 0.8], [0, 0], [0.5, 0.5], [-0.1, 0.7]])
    assert assign_channels(sub).tolist() == [0, 1, 0, 0, 1]
    res = reward_purity(sub[raw != 0], raw[raw != 0], "Gopher")
    assert res.purity == 1.0 and res.n == 3 and res.n_unlabelled == 1  # 120 = 100 + 20 in one step: left out
    pong = reward_purity(np.array([[-1.0, 0.0], [0.0, 1.0]]), np.array([-1.0, 1.0]), "Pong")
    assert pong.purity == 1.0 and set(pong.as_dict()["mapping"].values()) == {"point lost", "point won"}
    unknown, names, _ = source_labels(np.array([5.0, 0.0, 7.0]), "NoSuchGame")
    assert names == ["reward 5", "reward 7"] and unknown.tolist() == [0, -1, 1]
