#!/usr/bin/env bash
# Install contract: in a fresh venv that has only torch, `pip install ./<pkg>` alone must work and pull
# common-utils from this repository (a file:// direct reference), never from a registry.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
work=".ci/_work"
rm -rf "$work"
python3 -m venv "$work/venv"
py="$work/venv/bin/python"
"$py" -m pip install --quiet "$TORCH_SPEC"
for pkg in sdgar rd2 sarigan; do
  echo "== pip install ./$pkg (fresh venv with torch only)"
  "$py" -m pip install --quiet "./$pkg"
  "$work/venv/bin/$pkg" --help >/dev/null
  "$work/venv/bin/$pkg" --version
  "$py" - <<'PY'
import json
from importlib.metadata import distribution
d = distribution("neurips20-common-utils")
url = json.loads(d.read_text("direct_url.json") or "{}").get("url", "")
assert url.startswith("file:") and url.rstrip("/").endswith("common-utils"), f"common-utils came from {url!r}"
print(f"common-utils {d.version} from {url}")
PY
  "$py" -m pip uninstall --quiet -y "$pkg" neurips20-common-utils
done
rm -rf "$work"
echo "install contract: OK"
