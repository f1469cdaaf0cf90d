"""Agents: DQN, Rainbow, RD² (sub-Q on a learned decomposition), DRDRL and HRA. ``ALGOS`` maps the CLI names to
(agent class, config class)."""

from rd2.agents.base import Agent, AgentConfig, TensorBatch
from rd2.agents.dqn import DQN, DQNConfig
from rd2.agents.drdrl import DRDRL, DRDRLConfig
from rd2.agents.hra import HRA, HRAConfig
from rd2.agents.rainbow import Rainbow, RainbowConfig
from rd2.agents.rd2 import RD2Agent, RD2Config

ALGOS: dict[str, tuple[type[Agent], type[AgentConfig]]] = {
    "dqn": (DQN, DQNConfig),
    "rainbow": (Rainbow, RainbowConfig),
    "rd2": (RD2Agent, RD2Config),
    "drdrl": (DRDRL, DRDRLConfig),
    "hra": (HRA, HRAConfig),
}

__all__ = ["ALGOS", "DQN", "DRDRL", "HRA", "Agent", "AgentConfig", "DQNConfig", "DRDRLConfig", "HRAConfig",
           "RD2Agent", "RD2Config", "Rainbow", "RainbowConfig", "TensorBatch"]
