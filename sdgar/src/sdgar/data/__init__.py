"""Data: raw-format readers, per-user split, synthetic generator, dataset registry and downloads."""

from sdgar.data.dataset import Dataset, from_interactions, from_split
from sdgar.data.formats import READERS, DataFormatError
from sdgar.data.registry import KNOWN, DataConfig, load_dataset

__all__ = ["KNOWN", "READERS", "DataConfig", "DataFormatError", "Dataset", "from_interactions", "from_split",
           "load_dataset"]
