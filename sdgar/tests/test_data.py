import gzip
import hashlib
import json
import threading
from functools import partial
from http.server import HTTPServer, SimpleHTTPRequestHandler
from pathlib import Path

import numpy as np
import pytest
from neurips20_common import UserError

from sdgar.data import DataConfig, DataFormatError, load_dataset
from sdgar.data import formats as F
from sdgar.data.dataset import from_interactions
from sdgar.data.download import download
from sdgar.data.split import per_user_split
from sdgar.data.synthetic import SyntheticSpec, generate


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def bad_line(exc: pytest.ExceptionInfo, path: Path, line: int) -> None:
    msg = str(exc.value)
    assert str(path) in msg and f"line {line}" in msg, msg


def test_triplets(tmp_path: Path) -> None:
    df = F.read_triplets(write(tmp_path / "t.txt", "0\t3\t4.0\n1\t2\t3.0\n"))
    assert df["user"].tolist() == [0, 1] and df["rating"].tolist() == [4.0, 3.0]
    for body, line in [("0\t3\t4.0\n1\tx\t4.0\n", 2), ("0\t3\t4.0\n0\t1\n", 2), ("0\t1\t4\t9\n", 1)]:
        with pytest.raises(DataFormatError) as exc:
            F.read_triplets(write(tmp_path / "bad.txt", body))
        bad_line(exc, tmp_path / "bad.txt", line)


def test_lightgcn(tmp_path: Path) -> None:
    df = F.read_lightgcn(write(tmp_path / "train.txt", "0 1 2 3\n1 4\n\n2 0 5\n"))
    assert list(zip(df["user"], df["item"], strict=True)) == [(0, 1), (0, 2), (0, 3), (1, 4), (2, 0), (2, 5)]
    with pytest.raises(DataFormatError) as exc:
        F.read_lightgcn(write(tmp_path / "bad.txt", "0 1 2\n1 a 3\n"))
    bad_line(exc, tmp_path / "bad.txt", 2)


def test_snap_gowalla_dedupes_and_kcores(tmp_path: Path) -> None:
    rows = []
    for u in range(4):
        for loc in range(3):
            rows += [f"{u}\t2010-10-19T23:55:27Z\t30.2\t-97.7\t{100 + loc}"] * 2  # duplicates
    rows.append("9\t2010-10-19T23:55:27Z\t30.2\t-97.7\t555")  # filtered by the 2-core
    path = tmp_path / "loc-gowalla_totalCheckins.txt.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(rows) + "\n")
    assert F.sniff(path) == "snap-gowalla"
    data = load_dataset(DataConfig(data=str(path), min_count=2))
    assert (data.n_users, data.n_items) == (4, 3)
    assert data.train.nnz + data.valid.nnz + data.test.nnz == 12  # duplicates removed
    assert data.valid.nnz == 4  # a path is the user's own data: 10% validation split by default
    bad = write(tmp_path / "x_totalCheckins.txt", "0\t2010-10-19T23:55:27Z\t30.2\t-97.7\t1\n0\tT\tnorth\t1\t2\n")
    with pytest.raises(DataFormatError) as exc:
        F.read_snap_gowalla(bad)
    bad_line(exc, bad, 2)


def test_movielens_dat(tmp_path: Path) -> None:
    path = write(tmp_path / "ratings.dat", "1::122::5::838985046\n1::185::3.5::838983525\n")
    df = F.read_movielens_dat(path)
    assert df["rating"].tolist() == [5.0, 3.5] and df["item"].tolist() == [122, 185]
    with pytest.raises(DataFormatError) as exc:
        F.read_movielens_dat(write(tmp_path / "bad.dat", "1::122::5::838985046\n1::185::3.5\n"))
    bad_line(exc, tmp_path / "bad.dat", 2)


def test_echonest(tmp_path: Path) -> None:
    path = write(tmp_path / "train_triplets.txt", "b80344d0\tSOAKIMP12A8C130995\t1\nb80344d0\tSOBBMDR12A8C13253B\t2\n")
    df = F.read_echonest(path)
    assert df["item"].tolist() == ["SOAKIMP12A8C130995", "SOBBMDR12A8C13253B"]
    with pytest.raises(DataFormatError) as exc:
        F.read_echonest(write(tmp_path / "bad_triplets.txt", "a\tb\t1\na\tb\tmany\n"))
    bad_line(exc, tmp_path / "bad_triplets.txt", 2)


def test_amazon_csv_and_json(tmp_path: Path) -> None:
    df = F.read_amazon_csv(write(tmp_path / "ratings_Books.csv", "A1,0001,5.0,1400000000\nA2,0002,3.0,1400000001\n"))
    assert df["user"].tolist() == ["A1", "A2"] and df["rating"].tolist() == [5.0, 3.0]
    with pytest.raises(DataFormatError) as exc:
        F.read_amazon_csv(write(tmp_path / "b.csv", "A1,0001,5.0,1400000000\nA2,0002,good,1\n"))
    bad_line(exc, tmp_path / "b.csv", 2)
    path = tmp_path / "reviews_Books_5.json.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(json.dumps({"reviewerID": "A1", "asin": "B1", "overall": 4.0, "unixReviewTime": 1}) + "\n")
        fh.write(json.dumps({"reviewerID": "A2", "asin": "B1", "overall": 2.0}) + "\n")
    df = F.read_amazon_json(path)
    assert df["item"].tolist() == ["B1", "B1"] and df["rating"].tolist() == [4.0, 2.0]
    bad = tmp_path / "bad.json"
    bad.write_text('{"reviewerID": "A1", "asin": "B1", "overall": 4}\n{"reviewerID": "A1"}\n')
    with pytest.raises(DataFormatError) as exc:
        F.read_amazon_json(bad)
    bad_line(exc, bad, 2)


def test_citeulike_users_dat(tmp_path: Path) -> None:
    df = F.read_citeulike_users(write(tmp_path / "users.dat", "2 5 7\n1 0\n3 1 2 3\n"))
    assert df["user"].tolist() == [0, 0, 1, 2, 2, 2] and df["item"].tolist() == [5, 7, 0, 1, 2, 3]
    with pytest.raises(DataFormatError) as exc:
        F.read_citeulike_users(write(tmp_path / "bad.dat", "2 5 7\n3 1 2\n"))
    bad_line(exc, tmp_path / "bad.dat", 2)


def test_recbole_inter(tmp_path: Path) -> None:
    path = write(tmp_path / "ml.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                                       "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    df = F.read_recbole(path)
    assert df["user"].tolist() == ["196", "186"] and df["rating"].tolist() == [3.0, 3.0]
    with pytest.raises(DataFormatError) as exc:
        F.read_recbole(write(tmp_path / "b.inter", "user_id:token\titem_id:token\trating:float\n1\t2\tx\n"))
    bad_line(exc, tmp_path / "b.inter", 2)
    with pytest.raises(DataFormatError) as exc:
        F.read_recbole(write(tmp_path / "c.inter", "user\titem\n1\t2\n"))
    bad_line(exc, tmp_path / "c.inter", 1)


def test_generic_csv(tmp_path: Path) -> None:
    path = write(tmp_path / "log.tsv", "uid\tiid\tstars\nu1\ti1\t5\nu2\ti1\t4\n")
    df = F.read_csv(path, "\t", "uid", "iid", "stars")
    assert df["rating"].tolist() == [5, 4]
    with pytest.raises(DataFormatError, match="no column 'user'"):
        F.read_csv(path, "\t")
    with pytest.raises(DataFormatError) as exc:
        F.read_csv(write(tmp_path / "b.csv", "user,item,r\nu,i,1\nu,i,x\n"), ",", rating_col="r")
    bad_line(exc, tmp_path / "b.csv", 3)


def test_ceil_split_and_validation() -> None:
    users = np.repeat(np.arange(5), [3, 5, 10, 15, 1])
    held = per_user_split(users, 0.2, np.random.default_rng(0))
    assert [int(held[users == u].sum()) for u in range(5)] == [1, 1, 2, 3, 1]  # ⌈0.2·n⌉, 0.2·15 = 3 exactly
    again = per_user_split(users, 0.2, np.random.default_rng(0))
    assert (held == again).all()
    import pandas as pd

    df = pd.DataFrame({"user": [f"u{u}" for u in users], "item": np.arange(len(users))})
    data = from_interactions("x", df, None, 1, 0.2, 0.25, seed=3)
    assert data.train.nnz + data.test.nnz + data.valid.nnz == len(users)
    assert (data.train.multiply(data.test)).nnz == 0 and (data.train.multiply(data.valid)).nnz == 0
    assert data.user_ids[data.user_index("u3")] == "u3"
    with pytest.raises(UserError, match="not in dataset"):
        data.user_index("nobody")


def test_presplit_folder_keeps_official_ids(tmp_path: Path) -> None:
    folder = tmp_path / "citeulike"
    folder.mkdir()
    write(folder / "train.txt", "0\t0\t4.0\n0\t5\t4.0\n2\t1\t4.0\n")
    write(folder / "test.txt", "0\t3\t4.0\n2\t9\t3.0\n")  # 3.0 < threshold: dropped
    data = load_dataset(DataConfig(data="citeulike", data_root=str(tmp_path)))
    assert (data.n_users, data.n_items) == (3, 10)  # max id + 1 over train ∪ test
    assert data.train.nnz == 3 and data.test.nnz == 1


def test_registry_errors_say_what_to_put_where(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SDGAR_DATA", raising=False)
    with pytest.raises(UserError) as exc:
        load_dataset(DataConfig(data="gowalla", data_root=str(tmp_path / "root")))
    msg = str(exc.value)
    assert "train.txt and test.txt" in msg and str(tmp_path / "root" / "gowalla") in msg
    assert "sdgar data download gowalla" in msg and str(tmp_path / "cache" / "sdgar" / "gowalla") in msg
    with pytest.raises(UserError, match="neither a known dataset"):
        load_dataset(DataConfig(data=str(tmp_path / "missing")))
    # $SDGAR_DATA is a root too
    env_root = tmp_path / "env"
    (env_root / "gowalla").mkdir(parents=True)
    write(env_root / "gowalla" / "train.txt", "0 1 2 3 4\n1 2 3 4\n")
    write(env_root / "gowalla" / "test.txt", "0 5\n1 1\n")
    monkeypatch.setenv("SDGAR_DATA", str(env_root))
    data = load_dataset(DataConfig(data="gowalla"))
    assert (data.n_users, data.n_items, data.train.nnz, data.test.nnz) == (2, 6, 7, 2)
    # only half a split
    (env_root / "gowalla" / "test.txt").unlink()
    with pytest.raises(UserError, match=r"no test\.txt"):
        load_dataset(DataConfig(data="gowalla"))


def test_synthetic_is_byte_identical_per_seed() -> None:
    spec = SyntheticSpec.preset("tiny", seed=5)
    a, b = generate(spec), generate(spec)
    assert a.to_numpy().tobytes() == b.to_numpy().tobytes()
    assert len(a) == spec.n_interactions and not a.duplicated().any()
    assert a.groupby("user").size().min() >= spec.min_per_user
    assert generate(SyntheticSpec.preset("tiny", seed=6)).to_numpy().tobytes() != a.to_numpy().tobytes()
    big = SyntheticSpec.preset("gowalla")
    assert (big.n_users, big.n_items) == (29_858, 40_988)


class RangeHandler(SimpleHTTPRequestHandler):
    """http.server with HTTP Range support (enough for resume tests)."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # the name http.server calls
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        if "Range" in self.headers:
            start = int(self.headers["Range"].split("=")[1].split("-")[0])
            self.send_response(206)
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server(tmp_path: Path):
    root = tmp_path / "www"
    root.mkdir()
    httpd = HTTPServer(("127.0.0.1", 0), partial(RangeHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_download_checksum_and_resume(server, tmp_path: Path) -> None:
    root, url = server
    payload = bytes(range(256)) * 1000
    (root / "train.txt").write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    dest = tmp_path / "data" / "train.txt"
    dest.parent.mkdir()
    # a previous download stopped half way
    (dest.parent / "train.txt.part").write_bytes(payload[:100_000])
    download(f"{url}/train.txt", dest, digest)
    assert dest.read_bytes() == payload and not (dest.parent / "train.txt.part").exists()
    with pytest.raises(UserError, match="SHA-256 mismatch"):
        download(f"{url}/train.txt", tmp_path / "other.txt", "0" * 64)
    assert not (tmp_path / "other.txt").exists()
    with pytest.raises(UserError, match="HTTP 404"):
        download(f"{url}/missing.txt", tmp_path / "m.txt")


def test_cli_download_into_registry_folder(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from sdgar.cli import main
    from sdgar.data import registry

    root, url = server
    (root / "train.txt").write_text("0 1 2 3\n1 2 3\n")
    (root / "test.txt").write_text("0 4\n1 1\n")
    files = tuple(registry.Remote(f"{url}/{n}", n, hashlib.sha256((root / n).read_bytes()).hexdigest())
                  for n in ("train.txt", "test.txt"))
    entry = registry.Entry("test set", "train.txt and test.txt", url, files)
    monkeypatch.setitem(registry.KNOWN, "loopback", entry)
    result = CliRunner().invoke(main, ["data", "download", "loopback", "--data-root", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    assert "sha256 ok" in result.output
    info = CliRunner().invoke(main, ["data", "info", "loopback", "--data-root", str(tmp_path / "data")])
    assert info.exit_code == 0, info.output
    assert "interactions: 7" in info.output


def test_uir_whitespace_splits_and_detection(tmp_path: Path) -> None:
    folder = tmp_path / "selfrec"
    folder.mkdir()
    write(folder / "train.txt", "0 1 1.0\n0 2 1.0\n1 2 1.0\n2 0 1.0\n")  # SELFRec / RecBole export style
    write(folder / "test.txt", "0 3 1.0\n1 0 1.0\n")
    assert F.detect(folder / "train.txt")[0] == "uir"
    data = load_dataset(DataConfig(data=str(folder)))
    assert (data.n_users, data.n_items, data.test.nnz) == (3, 4, 2)
    assert "format uir" in data.report[0]
    write(tmp_path / "pairs.txt", "7 1\n7 2\n8 2\n")
    assert F.detect(tmp_path / "pairs.txt")[0] == "uir"
    assert F.read_uir(tmp_path / "pairs.txt")["item"].tolist() == [1, 2, 2]
    with pytest.raises(DataFormatError) as exc:
        F.read_uir(write(tmp_path / "bad.txt", "0 1 1.0\n0 2\n"))
    bad_line(exc, tmp_path / "bad.txt", 2)


def test_headerless_amazon_csv_says_what_was_detected_and_dropped(tmp_path: Path) -> None:
    rows = [f"u{u},i{i},{5.0 if (u + i) % 3 else 2.0},{1000 + i}" for u in range(6) for i in range(5)]
    path = write(tmp_path / "ratings.csv", "\n".join(rows + rows[:2]) + "\n")
    data = load_dataset(DataConfig(data=str(path)))
    text = "\n".join(data.report)
    assert "format amazon-csv" in text and "no header" in text and "32 rows" in text
    assert "rating ≥ 4.0 kept 21 of 32 rows (11 dropped)" in text
    assert "1 duplicate (user, item) rows dropped" in text


def test_temporal_and_leave_last_splits() -> None:
    import pandas as pd

    users = np.repeat(np.arange(4), 5)
    stamps = np.tile(np.arange(5), 4) * 10 + users
    df = pd.DataFrame({"user": users, "item": np.arange(20), "timestamp": stamps})
    temporal = from_interactions("t", df, None, 1, 0.4, 0.0, seed=0, split="temporal")
    for u in range(4):
        latest = set(np.argsort(-stamps[users == u])[:2] + 5 * u)
        assert set(temporal.test[u].indices) == latest  # ⌈0.4·5⌉ = 2 newest items
    loo = from_interactions("l", df, None, 1, 0.2, 0.3, seed=0, split="leave_last")
    assert (np.diff(loo.test.indptr) == 1).all() and (np.diff(loo.valid.indptr) == 1).all()
    assert (loo.test.indices == np.arange(4) * 5 + 4).all() and (loo.valid.indices == np.arange(4) * 5 + 3).all()
    with pytest.raises(UserError, match="needs timestamps"):
        from_interactions("x", df.drop(columns="timestamp"), split="temporal")
    with pytest.raises(UserError, match="split 'later'"):
        DataConfig(split="later")


def test_validation_leaves_every_user_a_training_item() -> None:
    import pandas as pd

    users = np.repeat(np.arange(3), [2, 3, 10])
    df = pd.DataFrame({"user": users, "item": np.arange(len(users))})
    data = from_interactions("v", df, None, 1, 0.2, 0.1, seed=0)
    assert (np.diff(data.train.indptr) >= 1).all()
    assert np.diff(data.valid.indptr).tolist() == [0, 1, 1]  # ⌈0.1·n⌉ capped at n − 1
    tiny = from_interactions("w", df[df.user == 0], None, 1, 0.2, 0.1, seed=0)  # 2 items: 1 test, 1 train
    assert tiny.valid is None and any("no user has a training item to spare" in r for r in tiny.report)
