#!/bin/bash
# Candidates per minute with 1, 2 and 4 local shards of one trained supernet, three rounds
# alternating (docs/PERFORMANCE.md, "Sharded scoring"). Usage: scripts/bench-shards.sh
# [CELLNAS=path/to/cellnas] [OUT=folder] [BUDGET=candidates]
set -euo pipefail
B=$(realpath "${CELLNAS:-target/release/cellnas}")
OUT=${OUT:-runs/bench-shards}
BUDGET=${BUDGET:-48}
mkdir -p "$OUT" && cd "$OUT"
rm -rf base r-*
"$B" search --out base --epochs 1 --budget "$BUDGET" --strategy random --phase supernet --quiet --no-report
ls -l base/supernet.safetensors
for rep in 1 2 3; do
  for n in 1 2 4; do
    d=r-$n-$rep; cp -r base $d
    t0=$(date +%s.%N)
    for ((i=0;i<n;i++)); do "$B" search --resume $d --shard $i/$n --quiet > $d.shard$i.log 2>&1 & done
    wait
    t1=$(date +%s.%N)
    "$B" merge $d --no-report > /dev/null
    echo "shards $n rep $rep wall $(echo "$t1 - $t0" | bc) s candidates $BUDGET"
  done
done
