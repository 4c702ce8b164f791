#!/usr/bin/env bash
# The network's GPU stages (3 and 4 of the model card's recipe) on a lent GPU, in one device call,
# then the candidate and the served weights measured on the same held-out instances.
#
# Why one prepared script: a task is lent a GPU for 15 minutes in all, machine start included, and
# one command may run 10. The CPU stages (from ImageNet, 15 % held out; ~2 h on 2 cores) ran
# beforehand: INIT defaults to their committed weights (model_image/checkpoints/README.md). The
# training data travels packed (the machine receives at most 64 MiB a call; packed/ is ~45 MB and
# git-ignored), with the wheels the GPU machine's python3 lacks (.whl/, see scripts/device_latency.sh):
#   .venv/bin/python -m fewclick_model.pack ../shared/datasets packed           # once
# Then one call of the device tool: command "bash scripts/device_train.sh", carry ["packed", ".whl"],
# timeout_s 600.
#
# $OUT receives: stage3.pt and weights.pt (the candidate, fp16, ~6 MB), each stage's log, and
# eval/{candidate,served}/<set>/ (table, per-instance CSV, plot): the candidate on its own held-out
# instances (15 %), the served weights on theirs (5 %, nested inside those, so the per-instance
# CSVs compare the two on instances neither has seen). The boundary refiner is left out of both: it
# is bound to the served network, and a new one is trained beside a new network (`train-refiner`).
#
# Here, without a GPU, the test runs the same steps on a tiny synthetic set:
#   PYTHON=.venv/bin/python DATA=<folder> INIT=<tiny weights> STAGE3_MIN=0.05 STAGE4_MIN=0.05 \
#   TRAIN_ARGS="--size 64 --decoder-channels 16 --batch 2 --workers 0 --sim-threads 1" \
#   EVAL_ARGS="--input-size 64 --max-clicks 1" SERVED=<tiny weights> bash scripts/device_train.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
INIT=${INIT:-model_image/checkpoints/lite0-cpu-holdout15.pt}
DATA=${DATA:-packed}
OUT=${OUT:-artifacts/device-train}
WHEELS=${WHEELS:-.whl}
SERVED=${SERVED:-model_image/fewclick_model/weights/fewclick-lite0.pt}
# Stage 3 and 4 trained for 7.5 and 2.7 minutes; shortened so that training and both evaluations
# fit one 10-minute call (the data loads and the four evaluations: ~1.5 minutes on an H200, estimated).
STAGE3_MIN=${STAGE3_MIN:-5.0}
STAGE4_MIN=${STAGE4_MIN:-1.75}
TRAIN_ARGS=${TRAIN_ARGS:-"--batch 32 --workers 6 --sim-threads 6"}
EVAL_ARGS=${EVAL_ARGS:-"--max-clicks 5"}
for path in "$INIT" "$SERVED" "$DATA/coco_mval" "$DATA/davis"; do
    [ -e "$path" ] || { echo "device_train.sh: $path is missing (see the notes at the top)" >&2; exit 2; }
done
if compgen -G "$WHEELS/*.whl" >/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/fewclick-site "$WHEELS"/*.whl
    export PYTHONPATH=/tmp/fewclick-site
fi
export PYTHONPATH="$PWD:$PWD/model_image${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
mkdir -p "$OUT/eval"
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

# shellcheck disable=SC2086 # TRAIN_ARGS and EVAL_ARGS are word lists
{
    # No --holdout-share: a fine-tune holds out what INIT held out.
    echo "== stage 3: ${STAGE3_MIN} min, 50 % boundary clicks, from $INIT =="
    fewclick_module train --data "$DATA" --init "$INIT" --minutes "$STAGE3_MIN" --lr 3e-4 --boundary-share 0.5 \
        --seed 11 $TRAIN_ARGS --out "$OUT/stage3" --export "$OUT/stage3.pt" 2>&1 | tee "$OUT/stage3.log" | quiet "step/s\|s/step\|img/s\|s/img"
    echo "== stage 4: ${STAGE4_MIN} min, 70 % boundary clicks =="
    fewclick_module train --data "$DATA" --init "$OUT/stage3.pt" --minutes "$STAGE4_MIN" --lr 1.5e-4 --boundary-share 0.7 \
        --seed 12 $TRAIN_ARGS --out "$OUT/stage4" --export "$OUT/weights.pt" 2>&1 | tee "$OUT/stage4.log" | quiet "step/s\|s/step\|img/s\|s/img"
    for name in candidate served; do
        weights=$OUT/weights.pt
        [ "$name" = served ] && weights=$SERVED
        for set in coco_mval davis; do
            echo "== $name on $set's held-out instances =="
            fewclick_module evaluate --dataset "$DATA/$set" --weights "$weights" --holdout-only --no-boundary-refiner \
                --clicks region boundary $EVAL_ARGS --out "$OUT/eval/$name/$set" 2>&1 | tee "$OUT/eval/$name-$set.log" \
                | quiet "inst/s\|s/inst"
        done
    done
}
rm -rf "$OUT/stage3" "$OUT/stage4"  # checkpoints: large, and the exported weights say it all
echo "device_train.sh: done; candidate $OUT/weights.pt"
