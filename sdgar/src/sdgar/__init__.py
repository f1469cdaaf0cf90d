"""SD-GAR (NeurIPS 2020): sampling-decomposable GAN recommender, baselines, full-ranking evaluation."""

__version__ = "0.1.0"
