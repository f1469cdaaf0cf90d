"""Environments: the Monster-Treasure toy game and preprocessed Atari (single and vector)."""

import gymnasium as gym

from rd2.envs.atari import AtariConfig, AtariSpec, make_env, make_vector_env, native_vector_available, resolve_env_id
from rd2.envs.collector import Collector, random_policy
from rd2.envs.toy import MonsterTreasureEnv

if "rd2/MonsterTreasure-v0" not in gym.registry:
    gym.register("rd2/MonsterTreasure-v0", entry_point="rd2.envs.toy:MonsterTreasureEnv")

__all__ = ["AtariConfig", "AtariSpec", "Collector", "MonsterTreasureEnv", "make_env", "make_vector_env",
           "native_vector_available", "random_policy", "resolve_env_id"]
