"""Disentanglement metric: the factor predictor learns real shapes, and the effect / concentration math."""

import numpy as np
import pytest
import torch

from sarigan.config import get_preset
from sarigan.data import load_shapes
from sarigan.metrics.disentanglement import (
    as_layer_group_matrix,
    concentration,
    edit_units,
    effect_matrix,
    evaluate_disentanglement,
    exclusivity,
    format_matrix,
    real_pair_baseline,
)
from sarigan.metrics.features import factor_distance, label_net_accuracy, train_label_net
from sarigan.networks import Generator


@pytest.fixture(scope="module")
def predictor():
    data = load_shapes(8, n=2000, seed=0)
    return train_label_net(data.images, data.labels, steps=150, batch=64)


def test_factor_predictor_reads_held_out_shapes(predictor) -> None:
    held = load_shapes(8, n=500, seed=7)
    acc = label_net_accuracy(predictor, held.images, held.labels)
    # chance: x/y MAE 0.2 (uniform on [0.2, 0.8]), hue circular MAE 0.25
    assert acc["x_mae"] < 0.1 and acc["y_mae"] < 0.1 and acc["hue_mae"] < 0.15 and acc["bg_hue_mae"] < 0.15


def test_factor_distances() -> None:
    assert factor_distance("angle", torch.tensor([0.95]), torch.tensor([0.05])).item() == pytest.approx(0.1)
    p, q = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert factor_distance("cat", p, q).item() == 1.0
    assert factor_distance("real", torch.tensor([0.3]), torch.tensor([0.5])).item() == pytest.approx(0.2)


def test_concentration_math() -> None:
    effects = np.array([[1.0, 0.5, 0.2],
                        [0.0, 0.5, 0.2],
                        [0.5, 0.1, 0.2]])
    gaps, top = concentration(effects)
    np.testing.assert_allclose(gaps, [0.5, 0.0, 0.0])
    assert top[0] == 0
    excl = exclusivity(effects, np.array([0, 1, 0]))
    np.testing.assert_allclose(excl, [1.0 / 1.7, 0.5 / 0.7, 0.2 / 1.7])


def test_units_partition_every_layer(predictor) -> None:
    torch.manual_seed(0)
    for grouping in ("learned", "uniform", "none"):
        G = Generator(get_preset("tiny").replace(grouping=grouping))
        for kind in ("model", "random"):
            units = edit_units(G, kind, seed=1)
            for layer, module in enumerate(G.styled_layers()):
                chans = torch.cat([u.channels for u in units if u.layer == layer]).sort().values
                assert torch.equal(chans, torch.arange(module.conv.weight.shape[1]))
        if grouping == "none":
            sizes = {u.channels.numel() for u in edit_units(G)}
            assert sizes == {G.cfg.channels(8) // G.cfg.groups}  # C/G channels per random subset


def test_zero_edit_has_zero_effect_and_record_is_complete(predictor) -> None:
    torch.manual_seed(0)
    G = Generator(get_preset("tiny")).eval()
    real = load_shapes(8, n=300, seed=3).images
    units = edit_units(G)
    base = real_pair_baseline(predictor, real, n=200)
    zero = effect_matrix(G, predictor, units, base, n_seeds=4, deltas=(0.0,))
    assert np.abs(zero).max() == 0
    rec = evaluate_disentanglement(G, predictor, real, n_seeds=4)
    assert 0.0 <= rec["score"] <= 1.0
    assert set(rec["factors"]) == {"shape", "hue", "x", "y", "scale", "bg_hue"}
    matrix = np.array(rec["effect_matrix"], dtype=float)
    assert matrix.shape == (len(G.styled_layers()), G.cfg.groups, 6)
    assert "concentration" in format_matrix(rec)
    empty = as_layer_group_matrix(np.ones((1, 2)), units[:1], 2, 3)
    assert np.isnan(empty[1]).all() and not np.isnan(empty[units[0].layer, units[0].group]).any()
