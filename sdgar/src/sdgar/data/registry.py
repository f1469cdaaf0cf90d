"""Dataset registry: ``--data gowalla|citeulike|synthetic|PATH`` -> :class:`~sdgar.data.dataset.Dataset`.

A dataset NAME is a folder ``<root>/<NAME>`` under the first data root that has it: ``--data-root``, then
``$SDGAR_DATA``, then the user cache dir (``$XDG_CACHE_HOME/sdgar`` or ``~/.cache/sdgar``). A folder holds either
a ready split (``train.txt`` + ``test.txt`` in SD-GAR triplet or LightGCN format) or one raw file in any format of
:mod:`sdgar.data.formats`, which is binarised, k-core filtered, remapped and split per user with a seed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from neurips20_common import UserError

from sdgar.data import formats
from sdgar.data.dataset import Dataset, from_interactions, from_split, with_validation
from sdgar.data.synthetic import SIZES, SyntheticSpec, generate

ENV_VAR = "SDGAR_DATA"


@dataclass
class DataConfig:
    data: str = "synthetic"  # a registry name, 'synthetic', or a path to a folder/file
    data_root: str | None = None
    format: str = "auto"  # one of formats.READERS, or auto
    # rating ≥ this is positive. None = the format's own: 4 for rated formats (official loader: r > 3.99, spec
    # 'Porting gotchas'), none for implicit-feedback formats (uir exports such as SELFRec's list every positive
    # with rating 1; echonest play counts; SNAP check-ins)
    pos_threshold: float | None = None
    min_count: int | None = None  # k-core of raw files; None = the dataset's default (10 for SNAP Gowalla, else 1)
    test_frac: float = 0.2  # ⌈20%⌉ of each user's items (spec §3.1)
    # validation split taken from train, on which the best checkpoint is chosen. None = by the data: 0 for the
    # registered datasets and synthetic data (the official protocol selects on test, spec §2), 0.1 for a PATH
    # (a user's own data); load_dataset writes the resolved value back.
    valid_frac: float | None = None
    split: str = "random"  # random (spec §3.1) | temporal | leave_last (both need timestamps; raw files only)
    split_seed: int = 0
    synthetic_size: str = "demo"  # tiny | demo | citeulike | gowalla (spec §6 G0)
    synthetic_seed: int = 0
    csv_sep: str = ","
    user_col: str = "user"
    item_col: str = "item"
    rating_col: str | None = None
    timestamp_col: str | None = None

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise UserError(f"split {self.split!r}: choose one of {', '.join(SPLITS)}")
        if not 0 <= self.test_frac < 1:
            raise UserError(f"test_frac {self.test_frac}: must be in [0, 1)")
        if self.valid_frac is not None and not 0 <= self.valid_frac < 1:
            raise UserError(f"valid_frac {self.valid_frac}: must be in [0, 1)")
        if self.min_count is not None and self.min_count < 1:
            raise UserError(f"min_count {self.min_count}: must be a positive integer")


SPLITS = ("random", "temporal", "leave_last")
USER_VALID_FRAC = 0.1  # validation share on a user's own data (issue 16)


@dataclass(frozen=True)
class Remote:
    url: str
    filename: str
    sha256: str | None = None
    extract: str | None = None  # zip member suffix to extract


@dataclass(frozen=True)
class Entry:
    description: str
    expected: str  # which files, in which format
    source: str  # where to get them by hand
    files: tuple[Remote, ...] = field(default_factory=tuple)
    min_count: int = 1
    aliases: tuple[str, ...] = ()  # other folder names accepted under a root


KNOWN: dict[str, Entry] = {
    "gowalla": Entry(
        "Gowalla check-ins, LightGCN/NGCF 10-core split (29,858 users, 40,981 items)",
        "train.txt and test.txt in LightGCN format ('user item item ...'), or the raw SNAP "
        "loc-gowalla_totalCheckins.txt.gz (then 10-core + ⌈20%⌉ split)",
        "https://github.com/gusye1234/LightGCN-PyTorch/tree/master/data/gowalla (split) or "
        "https://snap.stanford.edu/data/loc-gowalla.html (raw)",
        (Remote("https://raw.githubusercontent.com/gusye1234/LightGCN-PyTorch/master/data/gowalla/train.txt",
                "train.txt", "0f086326b28a56c2e6dcb81d86ee72d4ccb7eed3a8d26788392356d8f51111cc"),
         Remote("https://raw.githubusercontent.com/gusye1234/LightGCN-PyTorch/master/data/gowalla/test.txt",
                "test.txt", "099a2a73924e4b754dc6efd730d764f492321b53c38eb93298850c83acf57be3")),
        min_count=10),
    "citeulike": Entry(
        "CiteULike-t as split by the official SD-GAR code (7,947 users, 25,584 item ids)",
        "train.txt and test.txt as 'user<TAB>item<TAB>score' (score ≥ 4 is positive), or citeulike-t users.dat",
        "https://github.com/BinbinJin/SD-GAR/tree/master/data/citeulike",
        (Remote("https://raw.githubusercontent.com/BinbinJin/SD-GAR/master/data/citeulike/train.txt",
                "train.txt", "4b218ad38809d7c2f2e197a61aa3d3626dabb888af168c6b83932a2cc2dd933c"),
         Remote("https://raw.githubusercontent.com/BinbinJin/SD-GAR/master/data/citeulike/test.txt",
                "test.txt", "0b27f60342ffdc6adb58e72a9ee3dc63a55a3896442a76e972772f5eaeb5ebea")),
        aliases=("citeulike-t",)),
    "gowalla-snap": Entry(
        "Raw SNAP Gowalla check-ins (10-core, ⌈20%⌉ split made here)",
        "loc-gowalla_totalCheckins.txt.gz ('user<TAB>time<TAB>lat<TAB>lon<TAB>location')",
        "https://snap.stanford.edu/data/loc-gowalla.html",
        (Remote("https://snap.stanford.edu/data/loc-gowalla_totalCheckins.txt.gz",
                "loc-gowalla_totalCheckins.txt.gz"),),
        min_count=10),
    "ml10m": Entry(
        "MovieLens 10M, ratings ≥ 4 are positive",
        "ratings.dat ('UserID::MovieID::Rating::Timestamp')",
        "https://grouplens.org/datasets/movielens/10m/",
        (Remote("https://files.grouplens.org/datasets/movielens/ml-10m.zip", "ratings.dat", None,
                extract="ratings.dat"),)),
    "echonest": Entry(
        "Echonest Taste Profile subset (play counts; every triplet is positive)",
        "train_triplets.txt ('user<TAB>song<TAB>count')",
        "http://millionsongdataset.com/tasteprofile/"),
    "amazon": Entry(
        "An Amazon review category (McAuley), ratings ≥ 4 positive",
        "a ratings CSV 'user,item,rating,time' or a 5-core reviews_*.json.gz",
        "https://cseweb.ucsd.edu/~jmcauley/datasets/amazon/links.html"),
}

RATED_THRESHOLD = 4.0
IMPLICIT_FORMATS = ("uir", "echonest", "snap-gowalla")  # every line is a positive unless --pos-threshold says
SPLIT_FORMATS = ("sdgar", "lightgcn", "uir")  # formats of a ready train.txt + test.txt
RAW_PATTERNS = ("loc-gowalla_totalCheckins.txt*", "ratings.dat", "train_triplets.txt*", "users.dat", "*.inter",
                "ratings_*.csv", "*.json.gz", "*.json", "*.csv", "*.tsv")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sdgar"


def data_roots(data_root: str | os.PathLike | None = None) -> list[Path]:
    roots = [Path(data_root)] if data_root else []
    if os.environ.get(ENV_VAR):
        roots.append(Path(os.environ[ENV_VAR]))
    roots.append(cache_dir())
    return roots


def find_folder(name: str, data_root: str | os.PathLike | None = None) -> Path:
    """The folder of a registered dataset, or a :class:`UserError` saying exactly what to put where."""
    roots = data_roots(data_root)
    entry = KNOWN[name]
    for root in roots:
        for folder_name in (name, *entry.aliases):
            folder = root / folder_name
            if folder.is_dir() and any(p for p in folder.iterdir() if not p.name.endswith(".part")):
                return folder
    dl = f" or run `sdgar data download {name}`" if entry.files else ""
    raise UserError(f"dataset {name!r} not found; looked in {', '.join(str(r / name) for r in roots)}. "
                    f"Put {entry.expected} into {roots[0] / name}/ (get them from {entry.source}){dl}; "
                    f"choose the root with --data-root or ${ENV_VAR}.")


def load_folder(folder: Path, cfg: DataConfig, name: str, min_count: int = 1) -> Dataset:
    train, test = folder / "train.txt", folder / "test.txt"
    if train.is_file() and test.is_file():
        fmt, why = (cfg.format, "--format") if cfg.format != "auto" else formats.detect(train)
        if fmt not in SPLIT_FORMATS:
            raise UserError(f"{train}: a ready split must be in {'/'.join(SPLIT_FORMATS)} format, not {fmt!r}")
        if cfg.split != "random":
            raise UserError(f"{folder} is already split (train.txt + test.txt); --split {cfg.split} applies to "
                            "a single raw file")
        read = formats.READERS[fmt]
        tr, te = read(train), read(test)
        data = from_split(name, tr, te, threshold_for(fmt, cfg) if "rating" in tr.columns else None, (train, test))
        data.report.insert(0, f"{folder}: ready split train.txt + test.txt, format {fmt} ({why}); "
                              f"{len(tr)} train / {len(te)} test lines")
        return with_validation(data, cfg.valid_frac or 0.0, cfg.split_seed)
    if train.is_file() != test.is_file():
        missing = test if train.is_file() else train
        raise UserError(f"{folder} has {'train' if train.is_file() else 'test'}.txt but no {missing.name}; "
                        f"put both files of the split there")
    for pattern in RAW_PATTERNS:
        found = sorted(p for p in folder.glob(pattern) if not p.name.endswith((".part", ".tmp")))
        if found:
            return load_file(found[0], cfg, name, min_count)
    raise UserError(f"{folder} holds no data file sdgar can read: expected train.txt + test.txt, or one raw file "
                    f"matching {', '.join(RAW_PATTERNS)}")


def threshold_for(fmt: str, cfg: DataConfig) -> float | None:
    if cfg.pos_threshold is not None:
        return cfg.pos_threshold
    return None if fmt in IMPLICIT_FORMATS else RATED_THRESHOLD


def load_file(path: Path, cfg: DataConfig, name: str, min_count: int = 1) -> Dataset:
    fmt, why = (cfg.format, "--format") if cfg.format != "auto" else formats.detect(path)
    if fmt not in formats.READERS:
        raise UserError(f"unknown format {fmt!r}; known: {', '.join(formats.READERS)}")
    if fmt == "csv":
        df = formats.read_csv(path, cfg.csv_sep, cfg.user_col, cfg.item_col, cfg.rating_col, cfg.timestamp_col)
    else:
        df = formats.READERS[fmt](path)
    if fmt == "snap-gowalla" and cfg.min_count is None:
        min_count = 10
    k = cfg.min_count if cfg.min_count is not None else min_count
    threshold = threshold_for(fmt, cfg)
    data = from_interactions(name, df, threshold, k, cfg.test_frac, cfg.valid_frac or 0.0, cfg.split_seed,
                             cfg.split)
    data.report.insert(0, f"{path}: format {fmt} ({why}); {len(df)} rows with columns {', '.join(df.columns)}")
    return data


def synthetic(cfg: DataConfig) -> Dataset:
    spec = SyntheticSpec.preset(cfg.synthetic_size, seed=cfg.synthetic_seed)
    return from_interactions(f"synthetic-{cfg.synthetic_size}", generate(spec), None, 1, cfg.test_frac,
                             cfg.valid_frac or 0.0, cfg.split_seed, cfg.split)


def load_dataset(cfg: DataConfig) -> Dataset:
    """Resolve ``cfg.data`` (name, 'synthetic' or path) and load it. Sets ``cfg.valid_frac`` when it was None."""
    if cfg.valid_frac is None:
        cfg.valid_frac = 0.0 if cfg.data == "synthetic" or cfg.data in KNOWN else USER_VALID_FRAC
    if cfg.data == "synthetic":
        if cfg.synthetic_size not in SIZES:
            raise UserError(f"unknown synthetic size {cfg.synthetic_size!r}; known: {', '.join(SIZES)}")
        return synthetic(cfg)
    if cfg.data in KNOWN:
        entry = KNOWN[cfg.data]
        return load_folder(find_folder(cfg.data, cfg.data_root), cfg, cfg.data, entry.min_count)
    path = Path(cfg.data).expanduser()
    if path.is_dir():
        return load_folder(path, cfg, path.name)
    if path.is_file():
        return load_file(path, cfg, path.stem)
    raise UserError(f"--data {cfg.data!r} is neither a known dataset ({', '.join(['synthetic', *KNOWN])}) "
                    "nor an existing folder or file")
