"""examples/ run in CI: each script asserts its own outcomes; here we run it and check its last line."""

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parents[1] / "examples"


def test_decomposition_api_example(tmp_path) -> None:
    res = subprocess.run([sys.executable, str(EXAMPLES / "decomposition_api.py"), str(tmp_path / "toy")],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip().splitlines()[-1] == "ok"
    assert "load_decomposition" in res.stdout and (tmp_path / "toy" / "purity.json").is_file()
