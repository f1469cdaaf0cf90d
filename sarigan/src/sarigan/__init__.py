"""SariGAN: semantic-aware normalization for GANs (NeurIPS 2020), StyleGAN2 in pure PyTorch.

``from sarigan import load_generator``; ``G = load_generator(run_dir_or_checkpoint)``;
``G.generate(seeds=range(8), psi=0.7)`` → uint8 [N, H, W, 3]. ``sarigan.train(...)`` is ``sarigan train``.
"""

__version__ = "0.1.0"

from sarigan.api import PretrainedGenerator, load_generator, train
from sarigan.config import PRESETS, SariGANConfig, get_preset
from sarigan.data import ImageData, load_data

__all__ = ["PRESETS", "ImageData", "PretrainedGenerator", "SariGANConfig", "__version__", "get_preset",
           "load_data", "load_generator", "train"]
