#!/usr/bin/env bash
# Max RSS and wall time of Atari training at the paper shapes (docs/benchmarks.md, "Atari at scale on the CPU").
#
#   scripts/measure_atari_memory.sh dt [STEPS] [THREADS]       # experiment=dt-atari: 6 layers, 8 heads, embed 128, K=30, batch 128
#   scripts/measure_atari_memory.sh dmamba [STEPS] [THREADS]   # experiment=dmamba-atari: 6 blocks, embed 128, K=30, batch 256
#
# Needs the dataset dqn-replay/breakout/1pct-v0 in $MINARI_DATASETS_PATH, e.g. from the synthetic set:
#   python scripts/make_synthetic_dqn_replay.py /work/atari-scale/Breakout
#   decision-seq datasets import-dqn-replay /work/atari-scale/Breakout --game Breakout
# Prints the run's step lines, then the wall time and the maximum resident set size (from /usr/bin/time -v).
# The presets' settings (target 90, sampled actions, the token schedule), but STEPS steps and one evaluation
# episode at the end, cut at 2000 steps.
# glibc keeps freed large blocks in its heap (its mmap threshold grows up to 32 MiB as tensors are freed); with
# MALLOC_MMAP_THRESHOLD_=1048576 in the environment they go back to the system and the peak is the live memory.
set -euo pipefail
case "${1:-}" in
  dt) model=(experiment=dt-atari) ;;
  dmamba) model=(experiment=dmamba-atari) ;;
  -h | --help | "") sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "measure_atari_memory.sh: unknown model '$1'; valid: dt, dmamba" >&2; exit 2 ;;
esac
steps=${2:-3}
threads=${3:-1}
[[ $steps =~ ^[1-9][0-9]*$ && $threads =~ ^[1-9][0-9]*$ ]] || {
  echo "measure_atari_memory.sh: STEPS and THREADS must be integers >= 1, got '$steps' '$threads'" >&2
  exit 2
}
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
OMP_NUM_THREADS=$threads /usr/bin/time -v -o "$out/time.txt" .venv/bin/decision-seq train \
  "${model[@]}" dataset=atari-breakout \
  trainer.steps="$steps" trainer.num_threads="$threads" trainer.progress=false \
  trainer.status_every_sec=1 trainer.log_every=1 trainer.device=cpu trainer.checkpoint_every=0 \
  eval.every=0 eval.episodes=1 eval.max_steps=2000 \
  logger=none hydra.run.dir="$out/run" 2>&1 | grep -E "step [0-9]+/|eval @|Error|error" || true
grep -E "Elapsed|Maximum resident" "$out/time.txt"
