import random

import numpy as np
import pytest
import torch

from neurips20_common import (
    UserError,
    capture_rng_state,
    restore_rng_state,
    seed_everything,
    select_device,
    torch_threads,
)


def _draw(gens):
    return (random.random(), float(np.random.rand()), float(torch.rand(1)),
            float(gens["numpy"].random()), float(torch.rand(1, generator=gens["torch"])))


def test_seed_everything_repeats_and_returns_generators() -> None:
    a = _draw(seed_everything(3))
    b = _draw(seed_everything(3))
    assert a == b
    assert _draw(seed_everything(4)) != a


def test_rng_state_roundtrip_through_weights_only_load(tmp_path) -> None:
    gens = seed_everything(11)
    _draw(gens)
    state = capture_rng_state(gens)
    torch.save(state, tmp_path / "s.pt")
    expected = _draw(gens)
    loaded = torch.load(tmp_path / "s.pt", weights_only=True)
    seed_everything(999)  # scramble
    restore_rng_state(loaded, gens)
    assert _draw(gens) == expected


def test_deterministic_flag_sets_torch_mode() -> None:
    try:
        seed_everything(0, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)


def test_select_device() -> None:
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(UserError, match="unknown device"):
        select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            select_device("cuda:0")


def test_torch_threads_scopes_the_thread_count_and_restores_it() -> None:
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    with torch_threads(other):
        assert torch.get_num_threads() == other
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads(other):
        raise RuntimeError("restored on the way out too")
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before
