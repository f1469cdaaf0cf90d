"""RD2: reward decomposition with representation disentanglement (NeurIPS 2020) on a toy game and Atari."""

__version__ = "0.1.0"
