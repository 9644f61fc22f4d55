#!/usr/bin/env bash
# Recipe: the smoke sweep (DT and DMamba x 2 seeds, tiny, on the built-in default dataset) through the
# local parallel launcher, then its leaderboard. A few minutes on a 2-core CPU.
#   scripts/smoke_leaderboard.sh [SWEEP_DIR] [extra overrides...]
# Same shape at paper scale: replace experiment=smoke by experiment=dt-paper (and =dmamba-paper),
# and hydra/launcher=joblib by hydra/launcher=slurm on a cluster.
set -euo pipefail

DS=${DECISION_SEQ:-decision-seq}
SWEEP_DIR=${1:-multirun/smoke/$(date +%Y-%m-%d_%H-%M-%S)}
shift || true

# Jobs that fail are named at the end and make the sweep exit 1; the others' results are kept, so the
# leaderboard is built either way.
status=0
"$DS" train -m experiment=smoke hydra/launcher=joblib "hydra.sweep.dir=$SWEEP_DIR" "$@" || status=$?
"$DS" leaderboard "$SWEEP_DIR"
echo "leaderboard files: $SWEEP_DIR/leaderboard/"
exit "$status"
