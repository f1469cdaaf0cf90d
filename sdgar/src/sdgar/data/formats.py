"""One reader per raw file format of spec §3.2. Each returns a DataFrame with columns ``user, item`` (the ids as
written in the file) and, when the format has them, ``rating`` and ``timestamp``.

A line that does not parse raises :class:`DataFormatError` naming the file, the line number and what was expected.
Readers use pandas' C parser for speed and re-scan the file line by line only to locate an error.
"""

from __future__ import annotations

import gzip
import io
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from neurips20_common import UserError

PathLike = str | os.PathLike


class DataFormatError(UserError):
    """A data file that does not have the expected format (message names file and line)."""


def _open_text(path: Path) -> io.TextIOBase:
    if not path.is_file():
        raise DataFormatError(f"{path}: file not found")
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    return path.open(encoding="utf-8", errors="replace")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with _open_text(path) as fh:
        for no, line in enumerate(fh, 1):
            yield no, line.rstrip("\r\n")


def _fail(path: Path, line_no: int, line: str, expected: str) -> DataFormatError:
    shown = line if len(line) <= 80 else line[:77] + "..."
    return DataFormatError(f"{path}, line {line_no}: expected {expected}, got {shown!r}; fix or remove that line")


def _check_lines(path: Path, check: Callable[[list[str]], bool], sep: str | None, expected: str,
                 skip_header: bool = False) -> None:
    """Find the first line that fails ``check`` and raise for it (called after the fast parser failed)."""
    for no, line in _lines(path):
        if skip_header and no == 1:
            continue
        if not line.strip():
            continue
        if not check(line.split(sep) if sep != "::" else line.split("::")):
            raise _fail(path, no, line, expected)
    raise DataFormatError(f"{path}: could not be parsed as {expected}")


def _is_int(s: str) -> bool:
    s = s.strip()
    return s.lstrip("-").isdigit()


def _is_float(s: str) -> bool:
    """A finite number (NaN / inf scores are refused with the line named)."""
    try:
        return bool(np.isfinite(float(s)))
    except ValueError:
        return False


def _token_ok(token: str, kind: str) -> bool:
    if kind == "int":
        return _is_int(token)
    if kind == "float":
        return _is_float(token)
    return token.strip() != ""


def _read_table(path: Path, sep: str, names: list[str], kinds: list[str], expected: str,
                header: bool = False) -> pd.DataFrame:
    """Fixed-column text file; ``kinds`` per column: 'int', 'float' or 'str'."""

    def ok(tokens: list[str]) -> bool:
        if len(tokens) != len(kinds):
            return False
        return all(_token_ok(t, k) for t, k in zip(tokens, kinds, strict=True))

    dtype = {i: {"int": "int64", "float": "float64", "str": "string"}[k] for i, k in enumerate(kinds)}
    try:
        df = pd.read_csv(path, sep=sep, header=None, skiprows=1 if header else 0, dtype=dtype,
                         skip_blank_lines=True, engine="c" if len(sep) == 1 else "python",
                         compression="infer", on_bad_lines="error", keep_default_na=False)
        if df.shape[1] != len(names):
            raise ValueError("wrong number of fields")
        df.columns = names
        strings = df.select_dtypes("string")
        if df.isna().to_numpy().any() or (strings == "").to_numpy().any():
            raise ValueError("missing fields")
        return df
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError):
        _check_lines(path, ok, sep if sep != r"\s+" else None, expected, skip_header=header)
        raise  # unreachable: _check_lines always raises


def _check_finite(path: Path, df: pd.DataFrame, header: bool = False) -> pd.DataFrame:
    """Refuse NaN/inf ratings and timestamps, naming the first such line (blank lines are not counted by pandas, so
    the line is found by rescanning)."""
    for col in ("rating", "timestamp"):
        if col in df.columns and pd.api.types.is_numeric_dtype(df[col]):
            bad = ~np.isfinite(df[col].to_numpy(np.float64))
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                seen = -1
                for no, line in _lines(path):
                    if (header and no == 1) or not line.strip():
                        continue
                    seen += 1
                    if seen == row:
                        raise _fail(path, no, line, f"a finite {col}")
                raise DataFormatError(f"{path}: {int(bad.sum())} rows have a NaN/inf {col}; fix or remove them")
    return df


# ---------------------------------------------------------------------------------------------- readers


def read_triplets(path: PathLike) -> pd.DataFrame:
    """SD-GAR / IRGAN ``user<TAB>item<TAB>score`` with 0-based integer ids (binarise with the threshold later)."""
    path = Path(path)
    return _check_finite(path, _read_table(path, "\t", ["user", "item", "rating"], ["int", "int", "float"],
                                           "'user<TAB>item<TAB>score' with integer ids and a numeric score"))


def read_uir(path: PathLike) -> pd.DataFrame:
    """Whitespace-separated ``user item [rating [timestamp]]`` with integer ids, one interaction per line: the ready
    splits of SELFRec, RecBole exports and many repos. Every line must have the same number of fields."""
    path = Path(path)
    first = next((line for _, line in _lines(path) if line.strip()), None)
    if first is None:
        raise DataFormatError(f"{path}: the file is empty")
    n = len(first.split())
    if not 2 <= n <= 4:
        raise _fail(path, 1, first, "'user item [rating [timestamp]]' (2 to 4 whitespace-separated fields)")
    names = ["user", "item", "rating", "timestamp"][:n]
    kinds = ["int", "int", "float", "float"][:n]
    return _check_finite(path, _read_table(path, r"\s+", names, kinds,
                                           f"{n} whitespace-separated fields 'user item"
                                           + (" rating" if n > 2 else "") + (" timestamp" if n > 3 else "")
                                           + "' with integer ids"))


def read_lightgcn(path: PathLike) -> pd.DataFrame:
    """LightGCN / NGCF: one line per user, ``user item item ...`` (space separated, integer ids)."""
    path = Path(path)
    users: list[np.ndarray] = []
    items: list[np.ndarray] = []
    for no, line in _lines(path):
        tokens = line.split()
        if not tokens:
            continue
        try:
            ids = np.array(tokens, dtype=np.int64)
        except ValueError:
            raise _fail(path, no, line, "'user item item ...' with integer ids") from None
        if (ids < 0).any():
            raise _fail(path, no, line, "non-negative integer ids")
        users.append(np.full(len(ids) - 1, ids[0], dtype=np.int64))
        items.append(ids[1:])
    if not users:
        raise DataFormatError(f"{path}: the file is empty")
    return pd.DataFrame({"user": np.concatenate(users), "item": np.concatenate(items)})


def read_snap_gowalla(path: PathLike) -> pd.DataFrame:
    """SNAP ``loc-gowalla_totalCheckins.txt(.gz)``: ``user<TAB>time<TAB>lat<TAB>lon<TAB>location``."""
    df = _read_table(Path(path), "\t", ["user", "time", "lat", "lon", "item"], ["int", "str", "float", "float", "int"],
                     "'user<TAB>ISO time<TAB>latitude<TAB>longitude<TAB>location id'")
    ts = pd.to_datetime(df["time"], errors="coerce", utc=True)
    return pd.DataFrame({"user": df["user"], "item": df["item"],
                         "timestamp": (ts.astype("int64") // 10**9).where(ts.notna(), 0)})


def read_movielens_dat(path: PathLike) -> pd.DataFrame:
    """MovieLens-10M/1M ``ratings.dat``: ``UserID::MovieID::Rating::Timestamp``."""
    path = Path(path)
    return _check_finite(path, _read_table(path, "::", ["user", "item", "rating", "timestamp"],
                                           ["int", "int", "float", "int"], "'UserID::MovieID::Rating::Timestamp'"))


def read_echonest(path: PathLike) -> pd.DataFrame:
    """Echonest Taste Profile ``train_triplets.txt``: ``user_hash<TAB>song_id<TAB>play_count``."""
    path = Path(path)
    return _check_finite(path, _read_table(path, "\t", ["user", "item", "rating"], ["str", "str", "float"],
                                           "'user<TAB>song<TAB>play count'"))


def read_amazon_csv(path: PathLike) -> pd.DataFrame:
    """Amazon ratings-only CSV (McAuley): ``user,item,rating,unix_time`` without a header."""
    path = Path(path)
    return _check_finite(path, _read_table(path, ",", ["user", "item", "rating", "timestamp"],
                                           ["str", "str", "float", "int"], "'user,item,rating,unix time'"))


def read_amazon_json(path: PathLike) -> pd.DataFrame:
    """Amazon 5-core reviews, one JSON object per line (``.json`` or ``.json.gz``): reviewerID, asin, overall."""
    path = Path(path)
    rows: list[tuple[str, str, float, int]] = []
    for no, line in _lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            rows.append((str(obj["reviewerID"]), str(obj["asin"]), float(obj.get("overall", 5.0)),
                         int(obj.get("unixReviewTime", 0))))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise _fail(path, no, line, "a JSON object with 'reviewerID', 'asin' and 'overall'") from None
    return pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])


def read_citeulike_users(path: PathLike) -> pd.DataFrame:
    """citeulike-a/-t ``users.dat``: line u is ``count id1 ... id_count`` (0-based item ids); user = line index."""
    path = Path(path)
    users, items = [], []
    user = 0
    for no, line in _lines(path):
        tokens = line.split()
        if not tokens:
            continue
        try:
            ids = np.array(tokens, dtype=np.int64)
        except ValueError:
            raise _fail(path, no, line, "'count item item ...' with integers") from None
        if ids[0] != len(ids) - 1 or (ids < 0).any():
            raise _fail(path, no, line, f"a count equal to the number of ids that follow ({len(ids) - 1})")
        users.append(np.full(len(ids) - 1, user, dtype=np.int64))
        items.append(ids[1:])
        user += 1
    if not users:
        raise DataFormatError(f"{path}: the file is empty")
    return pd.DataFrame({"user": np.concatenate(users), "item": np.concatenate(items)})


def read_recbole(path: PathLike) -> pd.DataFrame:
    """RecBole atomic ``.inter``: TSV with a typed header, e.g. ``user_id:token item_id:token rating:float``."""
    path = Path(path)
    with _open_text(path) as fh:
        header = fh.readline().rstrip("\r\n").split("\t")
    names = [h.split(":")[0] for h in header]
    if "user_id" not in names or "item_id" not in names or any(":" not in h for h in header):
        raise _fail(path, 1, "\t".join(header), "a typed header such as 'user_id:token<TAB>item_id:token'")
    kinds = ["float" if h.endswith((":float", ":float_seq")) else "str" for h in header]
    df = _check_finite(path, _read_table(path, "\t", names, kinds, "fields matching the header " + "\t".join(header),
                                         header=True), header=True)
    out = pd.DataFrame({"user": df["user_id"], "item": df["item_id"]})
    if "rating" in names:
        out["rating"] = df["rating"]
    if "timestamp" in names:
        out["timestamp"] = df["timestamp"]
    return out


def read_csv(path: PathLike, sep: str = ",", user_col: str = "user", item_col: str = "item",
             rating_col: str | None = None, timestamp_col: str | None = None) -> pd.DataFrame:
    """Generic CSV/TSV with a header naming the user/item (and optional rating/timestamp) columns."""
    path = Path(path)
    try:
        df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, on_bad_lines="error")
    except pd.errors.ParserError as exc:
        raise DataFormatError(f"{path}: {exc}; fix or remove that line") from None
    for col in [user_col, item_col, rating_col, timestamp_col]:
        if col is not None and col not in df.columns:
            raise DataFormatError(f"{path}: no column {col!r} in the header (columns: {', '.join(df.columns)}); "
                                  "name the columns with --user-col/--item-col/--rating-col")
    out = pd.DataFrame({"user": df[user_col], "item": df[item_col]})
    bad = (out["user"] == "") | (out["item"] == "")
    for col, name in [(rating_col, "rating"), (timestamp_col, "timestamp")]:
        if col is not None:
            values = pd.to_numeric(df[col], errors="coerce")
            bad |= ~np.isfinite(values.to_numpy(np.float64))
            out[name] = values
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataFormatError(f"{path}, line {row + 2}: empty id or a non-numeric / NaN / inf value; "
                              "fix or remove that line")
    return out


READERS: dict[str, Callable[..., pd.DataFrame]] = {
    "sdgar": read_triplets,
    "uir": read_uir,
    "lightgcn": read_lightgcn,
    "snap-gowalla": read_snap_gowalla,
    "ml10m": read_movielens_dat,
    "echonest": read_echonest,
    "amazon-csv": read_amazon_csv,
    "amazon-json": read_amazon_json,
    "citeulike-dat": read_citeulike_users,
    "recbole": read_recbole,
    "csv": read_csv,
}


def sniff(path: PathLike) -> str:
    """Guess a file's format from its name and first lines (raises when it cannot tell)."""
    return detect(path)[0]


def detect(path: PathLike) -> tuple[str, str]:
    """(format, why) from a file's name and first 50 lines; raises when it cannot tell."""
    path = Path(path)
    name = path.name.lower()
    for test, fmt, why in [("totalcheckins" in name, "snap-gowalla", "file name *totalCheckins*"),
                           (name.endswith((".json", ".json.gz")), "amazon-json", "file name *.json"),
                           (name.endswith(".inter"), "recbole", "file name *.inter"),
                           (name == "users.dat", "citeulike-dat", "file name users.dat"),
                           (name.endswith(".dat"), "ml10m", "file name *.dat"),
                           ("triplets" in name, "echonest", "file name *triplets*")]:
        if test:
            return fmt, why
    head = [line for _, line in zip(range(50), _lines(path), strict=False)]
    head = [line for _, line in head if line.strip()]
    if not head:
        raise DataFormatError(f"{path}: the file is empty")
    if name.endswith(".csv"):
        first = head[0].split(",")
        if len(first) == 4 and _is_float(first[2]) and _is_int(first[3]):
            return "amazon-csv", "*.csv whose first line has 4 fields 'user,item,rating,unix time' and no header"
        return "csv", "*.csv with a header line"
    tab3 = all(len(line.split("\t")) == 3 for line in head)
    if tab3 and any("." in line.split("\t")[2] for line in head):
        return "sdgar", "3 tab-separated fields with a decimal score"
    counts = {len(line.split()) for line in head}
    all_int = all(all(_is_int(t) for t in line.split()) for line in head)
    if counts == {2} and all_int:
        return "uir", "2 whitespace-separated integer fields 'user item' on every line"
    if len(counts) == 1 and counts <= {3, 4} and all(_is_int(line.split()[0]) and _is_int(line.split()[1])
                                                    and all(_is_float(t) for t in line.split()[2:])
                                                    for line in head) and not all_int:
        return "uir", f"{counts.pop()} whitespace-separated fields 'user item rating ...' with a non-integer rating"
    if counts != {3} and all_int:
        return "lightgcn", "integer lines of varying length 'user item item ...'"
    raise DataFormatError(f"{path}: cannot tell the format from the first lines (if every line has 3 integer "
                          "fields it may be 'user item rating' or a LightGCN list); pass --format uir|lightgcn|...")
