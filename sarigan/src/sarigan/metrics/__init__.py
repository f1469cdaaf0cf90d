"""Sample-quality metrics: the Fréchet distance math and feature extractors."""
