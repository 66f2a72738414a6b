#!/bin/bash
# Submits the three phases as dependent jobs: the shards start once the supernet has
# trained, the merge once every shard has finished.
#   RUN=/scratch/$USER/fmnist DATA=/scratch/$USER/fashion-mnist deploy/slurm/submit.sh
set -euo pipefail
: "${RUN:?set RUN to the run folder on the shared filesystem}"
here=$(cd "$(dirname "$0")" && pwd)
supernet=$(sbatch --parsable --export=ALL "$here/supernet.sbatch")
shards=$(sbatch --parsable --export=ALL --dependency="afterok:${supernet%%;*}" "$here/shard.sbatch")
merge=$(sbatch --parsable --export=ALL --dependency="afterok:${shards%%;*}" "$here/merge.sbatch")
echo "supernet ${supernet%%;*}, shards ${shards%%;*} (array), merge ${merge%%;*}"
