"""SariGAN: semantic-aware normalization for GANs (NeurIPS 2020), StyleGAN2 in pure PyTorch."""

__version__ = "0.1.0"
