#!/usr/bin/env bash
# Create .venv-peers: the peer libraries that benchmarks/peers/bench_peers.py compares
# skal with, in their own environment, never in skal's dependencies.
#
#   bash benchmarks/peers/setup_peers.sh                    # full install (torch included)
#   bash benchmarks/peers/setup_peers.sh --reuse-torch .venv
#       # reuse torch/torchvision/skorch/POT... from an existing venv (skal's own .venv)
#       # through a .pth file, so that torch is not installed twice; the packages that
#       # must differ (scikit-learn 1.7.x and the peers) are installed in .venv-peers
#       # and take precedence.
#
# Why the special cases:
# * modAL-python 0.4.2.1 (its last release) pins skorch==0.9.0 and breaks on
#   scikit-learn >= 1.8 (force_all_finite): install it with --no-deps, next to
#   scikit-learn 1.7.x and a current skorch.
# * baal 2.1.0 lists jupyter as a hard dependency: install it with --no-deps plus its
#   runtime dependencies (structlog, torchmetrics).
# * skal itself is installed with --no-deps (editable), so it runs on the peers'
#   scikit-learn 1.7.x.
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV="${PEERS_VENV:-.venv-peers}"
REUSE=""
if [[ "${1:-}" == "--reuse-torch" ]]; then
    REUSE="$(cd "${2:?--reuse-torch needs a venv path}" && pwd)"
fi

python3 -m venv "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
python -m pip install --upgrade pip >/dev/null

if [[ -n "$REUSE" ]]; then
    site_dir="$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    reuse_site="$("$REUSE/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    # Appended after .venv-peers' own site-packages: its packages win.
    echo "$reuse_site" > "$site_dir/zz_reuse_torch.pth"
else
    pip install torch==2.14.1 torchvision==0.29.1
    pip install "skorch>=1.0" "pot>=0.9" "pulp>=2.7" "tqdm>=4.60" "matplotlib>=3.6" "scipy>=1.14"
fi

pip install "scikit-learn>=1.7,<1.8" "numpy>=2.1" pandas threadpoolctl joblib
pip install --no-deps modAL-python==0.4.2.1
pip install --no-deps baal==2.1.0
pip install "structlog>=22,<23" "torchmetrics>=1.7.3,<2" Pillow
pip install --no-deps scikit-activeml==1.0.1
pip install "makefun>=1.15.3"
pip install --no-deps -e .

python - <<'PY'
from importlib.metadata import version
names = ["torch", "skorch", "scikit-learn", "modAL-python", "baal", "scikit-activeml", "skal"]
import baal, modAL, skactiveml, skal  # noqa: F401  (fail here if an install is broken)
print("peers environment ready:", ", ".join(f"{n} {version(n)}" for n in names))
PY
echo "run: $VENV/bin/python benchmarks/peers/bench_peers.py --quick"
