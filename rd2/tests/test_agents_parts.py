"""Agent building blocks on hand-made data: C51 projection, DRDRL convolution, sum tree / PER, n-step returns,
noisy layers and heads."""

import copy
import itertools

import numpy as np
import pytest
import torch

from rd2.agents.distributional import convolve, project, support
from rd2.agents.networks import NoisyLinear, QNetwork, ValueHead, reset_noise
from rd2.agents.prioritized import PrioritizedSampler, SumTree
from rd2.replay import nstep_return


def test_projection_hand_computed() -> None:
    # support {-2,-1,0,1,2}; Z is a point mass at 0.5 shifted by r=0.25, γ=1 → 0.75: 25% on 0, 75% on 1
    z = support(-2, 2, 5)
    out = project(torch.tensor([[1.0]]), torch.tensor([0.5]), torch.tensor([0.25]), torch.tensor([1.0]), -2, 2, 5)
    assert torch.allclose(out, torch.tensor([[0.0, 0.0, 0.25, 0.75, 0.0]]))
    # exact landing, clipping at both ends, and terminal (discount 0 → all mass at r)
    p = torch.tensor([[0.2, 0.3, 0.5, 0.0, 0.0]])
    out = project(p, z, torch.tensor([1.0]), torch.tensor([1.0]), -2, 2, 5)  # -2→-1, -1→0, 0→1
    assert torch.allclose(out, torch.tensor([[0.0, 0.2, 0.3, 0.5, 0.0]]))
    out = project(torch.tensor([[0.5, 0, 0, 0, 0.5]]), z, torch.tensor([3.0]), torch.tensor([1.0]), -2, 2, 5)
    assert torch.allclose(out, torch.tensor([[0.0, 0.0, 0.0, 0.5, 0.5]]))  # -2+3=1; 2+3=5 clipped to 2
    out = project(torch.full((1, 5), 0.2), z, torch.tensor([-0.5]), torch.tensor([0.0]), -2, 2, 5)
    assert torch.allclose(out, torch.tensor([[0.0, 0.5, 0.5, 0.0, 0.0]]))


def test_projection_preserves_mass_and_mean() -> None:
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(16, 51, generator=g), dim=1)
    z = support(-10, 10, 51)
    r = torch.rand(16, generator=g) * 2 - 1
    d = torch.full((16,), 0.99**3)
    out = project(p, z, r, d, -10, 10, 51)
    assert torch.allclose(out.sum(1), torch.ones(16), atol=1e-6)
    # no clipping happens here (|r| + 0.97·10 < 10 for these atoms only partly) → check the mean where in range
    mean_in = r + d * (p * z).sum(1)
    tz = r.unsqueeze(1) + d.unsqueeze(1) * z
    inside = ((tz >= -10) & (tz <= 10)).all(1)
    assert torch.allclose((out * z).sum(1)[inside], mean_in[inside], atol=1e-5)


def test_convolution_equals_distribution_of_sum() -> None:
    # three channels on supports with spacing 0.5; compare with brute-force enumeration of the sum
    g = torch.Generator().manual_seed(1)
    probs = torch.softmax(torch.randn(2, 3, 4, generator=g), dim=-1)
    starts, delta = [-1.0, -0.5, 0.0], 0.5
    out = convolve(probs)
    assert out.shape == (2, 3 * 3 + 1)
    base = sum(starts)
    for b in range(2):
        expected = torch.zeros(10)
        for i, j, k in itertools.product(range(4), repeat=3):
            value = (starts[0] + i * delta) + (starts[1] + j * delta) + (starts[2] + k * delta)
            expected[round((value - base) / delta)] += probs[b, 0, i] * probs[b, 1, j] * probs[b, 2, k]
        assert torch.allclose(out[b], expected, atol=1e-6)
    # crafted: two fair coins on {0,1} → {0,1,2} with 1/4, 1/2, 1/4
    coins = torch.tensor([[[0.5, 0.5], [0.5, 0.5]]])
    assert torch.allclose(convolve(coins), torch.tensor([[0.25, 0.5, 0.25]]))


def test_sum_tree_find_and_update() -> None:
    tree = SumTree(5)
    tree.update(np.arange(5), np.array([1.0, 0.0, 2.0, 3.0, 4.0]))
    assert tree.total == 10.0
    # prefix sums: [0,1) → 0, [1,3) → 2 (slot 1 has zero mass), [3,6) → 3, [6,10) → 4
    found = tree.find(np.array([0.0, 0.99, 1.0, 2.99, 3.0, 5.99, 6.0, 9.999]))
    assert found.tolist() == [0, 0, 2, 2, 3, 3, 4, 4]
    tree.update(np.array([4, 4]), np.array([9.0, 0.5]))  # last write wins
    assert tree.total == 6.5 and tree.get(np.array([4]))[0] == 0.5


def test_prioritized_probabilities_and_weights() -> None:
    sampler = PrioritizedSampler(4, alpha=0.5, eps=0.0)
    sampler.update(np.arange(4), np.array([1.0, 4.0, 9.0, 0.0]))  # p^α = 1, 2, 3, 0
    assert np.allclose(sampler.probabilities(np.arange(4)), [1 / 6, 2 / 6, 3 / 6, 0.0])
    rng = np.random.default_rng(0)
    counts = np.zeros(4)
    for _ in range(3000):
        idx, w = sampler.sample(6, beta=1.0, rng=rng)
        counts += np.bincount(idx, minlength=4)
        # w_i ∝ (N P(i))^-β with N = 3 valid slots, normalized by the batch max
        raw = (3 * sampler.probabilities(idx)) ** -1.0
        assert np.allclose(w, raw / raw.max())
    assert counts[3] == 0
    assert np.allclose(counts[:3] / counts.sum(), [1 / 6, 2 / 6, 3 / 6], atol=0.01)
    # stratification: with one segment per unit of mass, a batch of 6 hits 0 once, 1 twice and 2 three times
    idx, _ = sampler.sample(6, beta=0.4, rng=rng)
    assert sorted(idx.tolist()) == [0, 1, 1, 2, 2, 2]
    sampler.invalidate(np.array([2]))
    assert np.allclose(sampler.probabilities(np.arange(3)), [1 / 3, 2 / 3, 0.0])
    sampler.set_max(np.array([3]))  # new slots get the largest priority seen (9)
    assert sampler.tree.get(np.array([3]))[0] == pytest.approx(3.0)


def test_nstep_return_hand_made() -> None:
    gamma = 0.5
    r = np.array([[1.0, 2.0, 4.0]] * 5, np.float32)
    term = np.array([[0, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0], [0, 0, 0]], bool)
    trunc = np.array([[0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 1, 1], [0, 0, 0]], bool)
    valid = np.array([[1, 1, 1]] * 4 + [[1, 1, 0]], bool)  # the last window reaches the newest stored step
    g, disc, steps, alive = nstep_return(r, term, trunc, gamma, valid=valid)
    assert np.allclose(g, [1 + 1 + 1.0, 1 + 1.0, 1.0, 1 + 1.0, 1 + 1.0])
    assert np.allclose(disc, [0.125, 0.0, 0.0, 0.25, 0.25])  # truncation bootstraps from s_{t+2}
    assert steps.tolist() == [3, 2, 1, 2, 2]
    assert alive[1].tolist() == [True, True, False]
    _, disc, _, _ = nstep_return(r, term, trunc, gamma, bootstrap_truncated=False)
    assert disc[3] == 0.0
    # vector rewards (B, n, K): each channel gets its own discounted sum
    rk = np.stack([r, 2 * r], axis=-1)
    gk, _, _, _ = nstep_return(rk, term, trunc, gamma, valid=valid)
    assert np.allclose(gk[:, 0], g) and np.allclose(gk[:, 1], 2 * g)


def test_noisy_linear_noise_and_eval_mode() -> None:
    torch.manual_seed(0)
    layer = NoisyLinear(8, 3, sigma0=0.5)
    x = torch.randn(2, 8)
    a = layer(x)
    layer.reset_noise()
    b = layer(x)
    assert not torch.allclose(a, b)
    layer.eval()
    assert torch.allclose(layer(x), x @ layer.weight_mu.T + layer.bias_mu)
    # factorized: the weight noise is an outer product (rank one)
    assert torch.linalg.matrix_rank(layer.weight_eps) == 1


def test_dueling_head_and_network_shapes() -> None:
    head = ValueHead(10, n_actions=4, hidden=16, atoms=5, dueling=True, noisy=True)
    out = head(torch.randn(3, 10))
    assert out.shape == (3, 4, 5)
    net = QNetwork((4, 84, 84), 6, atoms=51, dueling=True, noisy=True)
    q = net(torch.randint(0, 255, (2, 4, 84, 84), dtype=torch.uint8))
    assert q.shape == (2, 6, 51)
    reset_noise(net)
    assert QNetwork((6,), 5)(torch.randn(7, 6)).shape == (7, 5, 1)


def test_noisy_linear_loads_the_old_noise_matrix() -> None:
    """Checkpoints from before the two stored noise vectors held weight_eps = outer(eps_out, eps_in), bias_eps."""
    torch.manual_seed(0)
    old = NoisyLinear(5, 3)
    state = {k: v for k, v in old.state_dict().items() if k not in ("eps_in", "eps_out")}
    state["weight_eps"], state["bias_eps"] = torch.outer(old.eps_out, old.eps_in), old.eps_out.clone()
    new = NoisyLinear(5, 3)
    new.load_state_dict(state)
    x = torch.randn(4, 5)
    assert torch.allclose(new(x), old(x), atol=1e-6)


@pytest.mark.parametrize("algo", ["dqn", "rd2"])
def test_bf16_torso_keeps_float32_weights_and_passes_gradients(algo) -> None:
    from neurips20_common import UserError

    from rd2.agents import ALGOS
    from rd2.config import agent_config, validate_agent

    acfg = agent_config(algo, "cpu", {"hidden": 32, "torso_dtype": "bfloat16", "reward_target": "clipped"}
                        if algo == "rd2" else {"hidden": 32, "torso_dtype": "bfloat16"})
    torch.manual_seed(0)
    agent = ALGOS[algo][0](acfg, (4, 84, 84), 3, torch.device("cpu"), num_components=2)
    fp32 = ALGOS[algo][0](agent_config(algo, "cpu", {"hidden": 32}), (4, 84, 84), 3, torch.device("cpu"),
                          num_components=2)
    assert agent.online.state_dict().keys() == fp32.online.state_dict().keys()
    assert all(v.dtype != torch.bfloat16 for v in agent.online.state_dict().values())
    fp32.online.load_state_dict(agent.online.state_dict())
    obs = torch.randint(0, 255, (6, 4, 84, 84), dtype=torch.uint8)
    torso = agent.online.torso if algo == "dqn" else agent.online.decomposition.torso
    ref = (fp32.online.torso if algo == "dqn" else fp32.online.decomposition.torso)(obs)
    x = torso(obs)
    assert x.dtype == torch.float32
    assert torch.equal(copy.deepcopy(torso)(obs), x)  # a copy runs its own convs in bf16 too
    rel = float((x - ref).detach().norm() / ref.detach().norm())
    assert 0 < rel < 0.05  # bf16 rounding, not the float32 result and not garbage
    # gradients reach the conv weights in float32
    x.sum().backward()
    grad = torso.net[0].weight.grad
    assert grad is not None and grad.dtype == torch.float32 and float(grad.abs().sum()) > 0
    with pytest.raises(UserError, match="torso_dtype"):
        validate_agent(agent_config(algo, "cpu", {"torso_dtype": "float16"}))


@pytest.mark.parametrize("algo", ["dqn", "rainbow", "rd2"])
def test_bf16_head_layers_read_the_features_in_bf16_and_keep_float32_weights(algo) -> None:
    from neurips20_common import UserError

    from rd2.agents import ALGOS
    from rd2.agents.base import _BF16Linear, _BF16NoisyLinear
    from rd2.config import agent_config, validate_agent

    extra = {"reward_target": "clipped"} if algo == "rd2" else {}
    torch.manual_seed(0)
    agent = ALGOS[algo][0](agent_config(algo, "cpu", {"hidden": 32, "head_dtype": "bfloat16", **extra}),
                           (4, 84, 84), 3, torch.device("cpu"), num_components=2)
    fp32 = ALGOS[algo][0](agent_config(algo, "cpu", {"hidden": 32, **extra}), (4, 84, 84), 3, torch.device("cpu"),
                          num_components=2)
    assert agent.online.state_dict().keys() == fp32.online.state_dict().keys()
    assert all(v.dtype != torch.bfloat16 for v in agent.online.state_dict().values())
    fp32.online.load_state_dict(agent.online.state_dict())
    swapped = [m for m in agent.online.modules() if isinstance(m, (_BF16Linear, _BF16NoisyLinear))]
    wide = [m for m in fp32.online.modules() if isinstance(m, torch.nn.Linear | NoisyLinear) and m.in_features == 3136]
    assert len(swapped) == len(wide) > 0 and all(m.in_features == 3136 for m in swapped)
    # rd2: K sub-Q heads × (value, advantage) and K reward heads; dqn one layer; rainbow value + advantage
    assert len(swapped) == {"dqn": 1, "rainbow": 2, "rd2": 6}[algo]
    obs = torch.randint(0, 255, (20, 4, 84, 84), dtype=torch.uint8)
    agent.online.eval(), fp32.online.eval()
    with torch.no_grad():
        out, ref = agent.action_values(agent.online, obs), fp32.action_values(fp32.online, obs)
    assert out.dtype == torch.float32 and not torch.equal(out, ref)
    assert float((out - ref).norm() / ref.norm()) < 0.05
    with torch.no_grad():  # a copy keeps the bf16 layers
        assert torch.equal(agent.action_values(copy.deepcopy(agent.online), obs), out)
    agent.online.train()
    values = agent.action_values(agent.online, obs)  # 20 rows: the noisy layers build their weight
    (values * torch.rand_like(values)).sum().backward()  # random weights: Σ_a of a dueling head has no A gradient
    grads = [(m.weight_mu if isinstance(m, NoisyLinear) else m.weight).grad for m in swapped]
    grads = [g for g in grads if g is not None]  # rd2: the reward heads are not on the path of the action values
    assert len(grads) == {"dqn": 1, "rainbow": 2, "rd2": 4}[algo]
    assert all(g.dtype == torch.float32 and float(g.abs().sum()) > 0 for g in grads)
    with pytest.raises(UserError, match="head_dtype"):
        validate_agent(agent_config(algo, "cpu", {"head_dtype": "float16"}))
