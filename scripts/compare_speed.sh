#!/usr/bin/env bash
# Side-by-side training and eval images/s of cellnas binaries and PyTorch CPU on the reference
# network, alternating the programs in one sitting (the machine drifts; compare ratios within a
# round). Usage:
#   scripts/compare_speed.sh ROUNDS CHANNELS LAYERS BIN [BIN...]
# Needs ../shared/bench (torch_darts.py, reference.genotype.txt) and a venv with torch in
# $TORCH_PY (default: ../tv/bin/python; see ../shared/bench/README.md). One JSON line per
# measurement on stdout: {"round", "program", "train", "eval"}.
set -euo pipefail
rounds=$1 channels=$2 layers=$3
shift 3
bench=$(cd "$(dirname "$0")/../../shared/bench" && pwd)
py=${TORCH_PY:-$(dirname "$0")/../../tv/bin/python}
for r in $(seq 1 "$rounds"); do
    for bin in "$@"; do
        j=$("$bin" bench --net --json --spec "$bench/reference.genotype.txt" --channels "$channels" --layers "$layers" --steps 8 --reps 3 --warmup 2 2>/dev/null)
        python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print(json.dumps({"round": int(sys.argv[2]), "program": sys.argv[3], "train": round(j["train"]["images_per_s"], 1), "eval": round(j["eval"]["images_per_s"], 1), "train_device_ms": j["train"]["device_ms"], "train_host_ms": j["train"]["host_ms"], "dispatches": j["train"]["dispatches_per_step"]}))' "$j" "$r" "$bin"
    done
    t=$("$py" "$bench/torch_darts.py" --genotype "$bench/reference.genotype.txt" --channels "$channels" --layers "$layers" 2>/dev/null | tail -1)
    python3 -c 'import re,sys,json; t=sys.argv[1]; m=re.search(r"train ([0-9.]+) img/s, eval ([0-9.]+) img/s", t); print(json.dumps({"round": int(sys.argv[2]), "program": "pytorch", "train": float(m.group(1)), "eval": float(m.group(2))}))' "$t" "$r"
done
