# Sourced by bin/run and bin/check: make sure uv and the locked virtualenv exist.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export UV_PYTHON_DOWNLOADS=never
# Where `pip install --user` puts uv: looked at first, so that each bin/ command after the first
# neither reinstalls uv nor prints pip's warnings.
export PATH="$HOME/.local/bin:$PATH"
if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install --quiet --user uv || python3 -m pip install --quiet uv
fi
uv sync --frozen --quiet --python "${BIPSYNC_PYTHON:-python3.11}"
