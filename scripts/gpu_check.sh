#!/usr/bin/env bash
# The whole GPU check in one command, sized for one 10-minute run on an offline H100/H200 box
# (Python 3.12, torch with CUDA 13, nvcc 13, 16 cores, no network): everything it installs comes from
# CARRY_DIR, made here by scripts/make_gpu_carry.sh.
#
# Steps, in order, each with its own log and time cap (estimates for an H100/H200 with 16 cores):
#   env               python / torch / CUDA / nvcc / GPU report                                ~5 s
#   deps              the carried dependency wheels (pip --no-index --no-deps)                  ~15 s
#   kernels           mamba-ssm + causal-conv1d: built for sm_90 only with all cores (the two
#                     builds run side by side; ~5-6 min, the big one), or installed from kernel
#                     wheel pieces carried back from an earlier run (~15 s); then saved as
#                     pieces of <= 15 MiB with sha256 manifests in OUT_DIR/kernel-wheels/
#   project           this project, --no-deps (the carried wheel, else this checkout)           ~10 s
#   pytest            pytest -m gpu tests/gpu                                                   ~2 min
#   train-fp32        bench_train.py --device cuda, every backbone, kernel and torch paths      ~40 s
#   train-bf16        the same under bf16 autocast                                              ~40 s
#   eval              bench_eval.py --device cuda, every backbone, window and recurrent modes   ~1.5 min
#   train-fp32-compile, train-bf16-compile  the training benches under torch.compile           ~2-3 min each
# A step that fails or runs out of time is recorded and the next one runs; the exit status is 1 if any
# step failed or was cut. The first run (with the build) leaves the compiled benches no time: run it again
# with OUT_DIR/kernel-wheels carried in CARRY_DIR/kernel-wheels, which skips the build.
#
# Usage: scripts/gpu_check.sh --help
set -uo pipefail  # no -e: a failing step is recorded, and the check goes on

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON="${PYTHON:-python3}"
ARCHS="90"
BUDGET=""  # seconds for the whole check; default 570 (10 minutes less a margin), 2400 for a dry run
DRY_RUN=0
ONLY=""
STEPS_ALL="env deps kernels project pytest train-fp32 train-bf16 eval train-fp32-compile train-bf16-compile"

usage() {
    cat <<EOF
Usage: $(basename "$0") [options] CARRY_DIR OUT_DIR
       $(basename "$0") --dry-run [CARRY_DIR] OUT_DIR

Run the GPU check: install the carried wheels, build (or reinstall) the mamba-ssm kernels, run
pytest -m gpu and the training / evaluation benchmarks over every backbone on CUDA, and write
OUT_DIR/gpu_check.json and OUT_DIR/gpu_check.md (results), OUT_DIR/logs/ (one log per step),
OUT_DIR/bench/ (each benchmark's JSON and Markdown) and OUT_DIR/kernel-wheels/ (the built kernels).

CARRY_DIR (made by scripts/make_gpu_carry.sh): the mamba-ssm and causal-conv1d sdists (*.tar.gz), the
dependency wheels, the project's wheel (decision_seq-*.whl), and optionally kernel-wheels/ (pieces
from an earlier run's OUT_DIR/kernel-wheels/: the build is then skipped).

Options:
  --dry-run         Run every step here on the CPU without installing or building anything: CPU
                    device, --quick benchmarks (the compiled ones: the mlp backbone, traced by
                    the eager backend, no code generation),
                    pytest -m gpu --collect-only. CARRY_DIR is optional; its sdists are unpacked and
                    patched (no compile) and its kernel-wheels/ pieces joined and verified.
  --archs LIST      GPU archs for the kernel build (default: 90, i.e. H100/H200).
  --budget SEC      Seconds for the whole check (default: 570; 2400 with --dry-run, whose step caps
                    are 4x the GPU ones: a CPU is slower). Each step gets its cap or what is left;
                    a step with no time left is recorded as cut.
  --only LIST       Run only these steps (comma list), e.g. --only train-fp32-compile,train-bf16-compile
                    after a run that did the rest (steps: ${STEPS_ALL// /, }).
  -h, --help        Show this help.

Environment: PYTHON (default: python3) is the Python whose environment is checked and installed into;
MAX_JOBS (default: nproc) parallel compile jobs.
EOF
}

die() { echo "gpu_check: error: $*" >&2; exit 2; }
log() { echo "gpu_check: $*"; }

ARGS=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --dry-run) DRY_RUN=1; shift ;;
        --archs) [[ $# -ge 2 ]] || die "--archs needs a value (e.g. 90)"; ARCHS="$2"; shift 2 ;;
        --budget) [[ $# -ge 2 ]] || die "--budget needs a value in seconds"; BUDGET="$2"; shift 2 ;;
        --only) [[ $# -ge 2 ]] || die "--only needs a comma list of steps"; ONLY="$2"; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        -*) die "unknown option '$1' (see --help)" ;;
        *) ARGS+=("$1"); shift ;;
    esac
done
CAP_SCALE=$((DRY_RUN == 1 ? 4 : 1))
BUDGET="${BUDGET:-$((DRY_RUN == 1 ? 2400 : 570))}"
[[ "$BUDGET" =~ ^[0-9]+$ && "$BUDGET" -gt 0 ]] || die "--budget must be a whole number of seconds > 0, got '$BUDGET'"
for step in ${ONLY//,/ }; do
    [[ " $STEPS_ALL " == *" $step "* ]] || die "--only: unknown step '$step' (valid: ${STEPS_ALL// /, })"
done
CARRY=""
if [[ ${#ARGS[@]} -eq 2 ]]; then
    CARRY="${ARGS[0]}"; OUT="${ARGS[1]}"
elif [[ ${#ARGS[@]} -eq 1 && "$DRY_RUN" == 1 ]]; then
    OUT="${ARGS[0]}"
else
    die "want CARRY_DIR OUT_DIR (or --dry-run [CARRY_DIR] OUT_DIR), got ${#ARGS[@]} argument(s); see --help"
fi
if [[ -n "$CARRY" ]]; then
    [[ -d "$CARRY" ]] || die "CARRY_DIR '$CARRY' is not a directory (make one with scripts/make_gpu_carry.sh)"
    CARRY=$(cd "$CARRY" && pwd)
fi
command -v "$PYTHON" >/dev/null || die "no '$PYTHON' on PATH (set PYTHON=/path/to/python)"
if [[ "$PYTHON" == */* ]]; then  # the steps run from the repo root: a relative path must still work
    PYTHON="$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")"
fi
mkdir -p "$OUT/logs" "$OUT/bench" || die "cannot create OUT_DIR '$OUT'"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d -t gpu_check.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
STATUS="$OUT/steps.tsv"
: >"$STATUS"
START=$(date +%s)
MAX_JOBS="${MAX_JOBS:-$(nproc)}"
export MAX_JOBS PYTHONUNBUFFERED=1
PIP=("$PYTHON" -m pip --disable-pip-version-check)
if [[ "$DRY_RUN" == 1 ]]; then
    BENCH=(--device cpu --quick --threads 1)
    # Inductor's C++ compile of every backbone takes many minutes on a CI CPU: trace one backbone only.
    COMPILED_BACKBONES=(--backbones mlp --compile-backend eager)
    export CUDA_VISIBLE_DEVICES=""
else
    BENCH=(--device cuda)
    COMPILED_BACKBONES=()
fi

# --- steps -----------------------------------------------------------------------------------------

# run_step NAME CAP_SECONDS FUNCTION: runs FUNCTION under `timeout` with min(CAP, time left), its output in
# logs/NAME.log, and appends "NAME<TAB>ok|failed|cut|skipped<TAB>seconds<TAB>note" to steps.tsv.
run_step() {
    local name="$1" cap=$(($2 * CAP_SCALE)) fn="$3" left limit t0 rc status note=""
    if [[ -n "$ONLY" && ",$ONLY," != *",$name,"* ]]; then
        return
    fi
    left=$((BUDGET - ($(date +%s) - START) - 15))  # 15 s kept for the summary
    limit=$((cap < left ? cap : left))
    if [[ "$limit" -lt 10 ]]; then
        printf '%s\tcut\t0\tno time left in the %s s budget\n' "$name" "$BUDGET" >>"$STATUS"
        log "$name: cut (no time left)"
        return
    fi
    log "$name: running (limit ${limit} s) ..."
    t0=$(date +%s)
    # A step runs in a child bash (exported functions), so `timeout` can stop it and everything it started.
    # shellcheck disable=SC2016  # $BENCH_DECL is expanded by the child bash
    timeout --kill-after=10 "$limit" bash -c 'eval "$BENCH_DECL"; '"$fn" >"$OUT/logs/$name.log" 2>&1
    rc=$?
    case "$rc" in
        0) status=ok ;;
        124 | 137) status="cut"; note="stopped at its ${limit} s limit" ;;
        3) status=skipped; note=$(tail -n 1 "$OUT/logs/$name.log") ;;
        *) status=failed; note="exit $rc: $(tail -n 1 "$OUT/logs/$name.log" | tr '\t' ' ' | cut -c1-200)" ;;
    esac
    printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$(($(date +%s) - t0))" "$note" >>"$STATUS"
    log "$name: $status ($(($(date +%s) - t0)) s) ${note}"
}

step_env() {
    echo "date: $(date -u +%FT%TZ), host $(hostname), $(nproc) cores, MAX_JOBS=$MAX_JOBS, dry run: $DRY_RUN"
    "$PYTHON" - "$DRY_RUN" <<'PY' || return 1
import platform, sys
import torch
dry = sys.argv[1] == "1"
print(f"python {platform.python_version()} ({sys.executable})")
print(f"torch {torch.__version__}, built with CUDA {torch.version.cuda}, cuda available: {torch.cuda.is_available()}")
if torch.cuda.is_available():
    for i in range(torch.cuda.device_count()):
        print(f"GPU {i}: {torch.cuda.get_device_name(i)}, capability {torch.cuda.get_device_capability(i)}")
elif not dry:
    sys.exit("no CUDA device visible to torch")
PY
    local nvcc="${CUDA_HOME:-/usr/local/cuda}/bin/nvcc"
    [[ -x "$nvcc" ]] || nvcc=$(command -v nvcc || true)
    if [[ -n "$nvcc" ]]; then
        "$nvcc" --version | tail -n 2
    elif [[ "$DRY_RUN" == 0 ]]; then
        echo "no nvcc (set CUDA_HOME to the CUDA toolkit)"; return 1
    else
        echo "no nvcc (fine for a dry run)"
    fi
    if command -v nvidia-smi >/dev/null; then nvidia-smi; fi
}

# Dependency wheels: every carried wheel but the project's own and the kernels'.
dep_wheels() {
    find "$CARRY" -maxdepth 1 -name '*.whl' ! -name 'decision_seq-*' ! -name 'mamba_ssm-*' ! -name 'causal_conv1d-*' | sort
}

step_deps() {
    if [[ -z "$CARRY" ]]; then
        echo "no CARRY_DIR given: nothing to install"; return 3
    fi
    local wheels
    mapfile -t wheels < <(dep_wheels)
    echo "${#wheels[@]} dependency wheel(s) in $CARRY"
    printf '  %s\n' "${wheels[@]##*/}"
    if [[ "$DRY_RUN" == 1 ]]; then
        echo "dry run: not installed"; return 3
    fi
    # --no-deps: the box's own packages (torch, numpy, ...) stay as they are; `pip check` below says what clashes.
    [[ ${#wheels[@]} -eq 0 ]] || "${PIP[@]}" install --no-index --no-deps --find-links "$CARRY" "${wheels[@]}" || return 1
    "${PIP[@]}" check || echo "(pip check reports the above; the check goes on)"
}

# Pieces of kernel wheels carried back from an earlier run: CARRY_DIR/kernel-wheels or CARRY_DIR itself.
carried_pieces() {
    local dir
    for dir in "$CARRY/kernel-wheels" "$CARRY"; do
        if [[ -n "$CARRY" && -f "$dir/wheels.sha256" ]]; then echo "$dir"; return; fi
    done
}

step_kernels() {
    local pieces wheels=() src jobs pids=() pid rc=0
    pieces=$(carried_pieces)
    mkdir -p "$WORK/wheels"
    if [[ -n "$pieces" ]]; then
        echo "kernel wheel pieces found in $pieces: joining them, no build"
        "$ROOT/scripts/wheel_pieces.sh" join "$pieces" "$WORK/wheels" || return 1
    elif [[ -n "$CARRY" ]] && compgen -G "$CARRY/mamba_ssm-*.tar.gz" >/dev/null; then
        # build_mamba_ssm.sh unpacks the sdists and patches their arch list; the wheels are built here
        # (it installs without keeping wheels, and the wheels are what a rerun reuses).
        PYTHON="$PYTHON" "$ROOT/scripts/build_mamba_ssm.sh" --patch-only --archs "$ARCHS" --sdist-dir "$CARRY" \
            --work-dir "$WORK/src" || return 1
        if [[ "$DRY_RUN" == 1 ]]; then
            echo "dry run: sources unpacked and patched, not compiled"; return 3
        fi
        export MAMBA_FORCE_BUILD=TRUE CAUSAL_CONV1D_FORCE_BUILD=TRUE  # compile; never try their wheel download
        # The two builds run side by side: causal-conv1d's four source files (4 jobs) fill the cores that
        # mamba-ssm's slowest files leave idle.
        for src in "$WORK"/src/causal_conv1d-* "$WORK"/src/mamba_ssm-*; do
            [[ -d "$src" ]] || continue
            jobs="$MAX_JOBS"
            [[ "$src" != */causal_conv1d-* ]] || jobs=$((MAX_JOBS < 4 ? MAX_JOBS : 4))
            MAX_JOBS="$jobs" "${PIP[@]}" wheel --no-build-isolation --no-deps --no-index -w "$WORK/wheels" "$src" \
                >"$OUT/logs/build-$(basename "$src").log" 2>&1 &
            pids+=($!)
        done
        for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
        [[ "$rc" == 0 ]] || { echo "a kernel build failed: see logs/build-*.log"; return 1; }
    else
        echo "no kernel sdists (mamba_ssm-*.tar.gz) nor kernel-wheels/ pieces in '${CARRY:-no CARRY_DIR}'"
        [[ "$DRY_RUN" == 1 ]] && return 3
        return 1
    fi
    mapfile -t wheels < <(find "$WORK/wheels" -name '*.whl' | sort)
    [[ ${#wheels[@]} -gt 0 ]] || { echo "no kernel wheels were made"; return 1; }
    printf 'wheel: %s\n' "${wheels[@]##*/}"
    if [[ -z "$pieces" ]]; then  # saved first, so a failing import below still leaves them for a rerun
        "$ROOT/scripts/wheel_pieces.sh" split "$OUT/kernel-wheels" "${wheels[@]}" || return 1
    fi
    if [[ "$DRY_RUN" == 1 ]]; then
        echo "dry run: joined and verified, not installed"; return 3
    fi
    "${PIP[@]}" install --no-index --no-deps --force-reinstall "${wheels[@]}" || return 1
    "$PYTHON" -c 'from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
from causal_conv1d import causal_conv1d_fn
print("mamba_ssm (selective scan, SSD) and causal_conv1d import")' || return 1
}

step_project() {
    local wheel=""
    [[ -z "$CARRY" ]] || wheel=$(find "$CARRY" -maxdepth 1 -name 'decision_seq-*.whl' | sort | tail -n 1)
    if [[ "$DRY_RUN" == 1 ]]; then
        echo "dry run: would install ${wheel:-$ROOT} --no-deps"
        "$PYTHON" -c 'import decision_seq, sys; print("decision_seq imports from", decision_seq.__file__)' || return 1
        return 3
    fi
    # --no-deps: its dependencies are the box's or the carried ones; no build isolation: nothing to fetch.
    "${PIP[@]}" install --no-index --no-deps --no-build-isolation "${wheel:-$ROOT}" || return 1
    "$PYTHON" -c 'import decision_seq; print("decision_seq imports from", decision_seq.__file__)'
}

step_pytest() {
    cd "$ROOT" || return 1
    if [[ "$DRY_RUN" == 1 ]]; then
        "$PYTHON" -m pytest -q -p no:cacheprovider -m gpu tests/gpu --collect-only
    else
        "$PYTHON" -m pytest -q -p no:cacheprovider -m gpu tests/gpu -rs --junitxml "$OUT/bench/pytest-gpu.xml"
    fi
}

bench() {  # $1: result name, then bench script and its arguments
    local name="$1"
    shift
    cd "$ROOT" || return 1
    "$PYTHON" "$@" "${BENCH[@]}" --json "$OUT/bench/$name.json" --markdown "$OUT/bench/$name.md"
}
step_train_fp32() { bench train-fp32 scripts/bench_train.py --dtype fp32 --path both; }
step_train_bf16() { bench train-bf16 scripts/bench_train.py --dtype bf16 --path both; }
step_eval() { bench eval scripts/bench_eval.py --path both --rounds 2 --episodes 10; }
step_train_fp32_compile() {
    bench train-fp32-compile scripts/bench_train.py --dtype fp32 --path both --compile ${COMPILED_BACKBONES[@]+"${COMPILED_BACKBONES[@]}"}
}
step_train_bf16_compile() {
    bench train-bf16-compile scripts/bench_train.py --dtype bf16 --path both --compile ${COMPILED_BACKBONES[@]+"${COMPILED_BACKBONES[@]}"}
}

export -f step_env dep_wheels step_deps carried_pieces step_kernels step_project step_pytest bench \
    step_train_fp32 step_train_bf16 step_eval step_train_fp32_compile step_train_bf16_compile
export ROOT PYTHON ARCHS DRY_RUN CARRY OUT WORK
# Arrays do not cross into the child bash: they travel as their declarations.
BENCH_DECL=$(declare -p BENCH COMPILED_BACKBONES PIP)
export BENCH_DECL

log "OUT_DIR=$OUT CARRY_DIR=${CARRY:-none} budget=${BUDGET}s dry-run=$DRY_RUN"
run_step env 30 step_env
run_step deps 60 step_deps
run_step kernels 480 step_kernels
run_step project 60 step_project
run_step pytest 240 step_pytest
run_step train-fp32 120 step_train_fp32
run_step train-bf16 120 step_train_bf16
run_step eval 150 step_eval
run_step train-fp32-compile 300 step_train_fp32_compile
run_step train-bf16-compile 300 step_train_bf16_compile

# --- summary ---------------------------------------------------------------------------------------

if ! "$PYTHON" - "$OUT" "$DRY_RUN" "$(($(date +%s) - START))" <<'PY'
import json, sys
from pathlib import Path
out, dry, seconds = Path(sys.argv[1]), sys.argv[2] == "1", int(sys.argv[3])
steps = []
for line in (out / "steps.tsv").read_text().splitlines():
    name, status, secs, note = (line.split("\t") + [""])[:4]
    steps.append({"step": name, "status": status, "seconds": int(secs), "note": note})
benches = {p.stem: json.loads(p.read_text()) for p in sorted((out / "bench").glob("*.json"))}
failed = [s["step"] for s in steps if s["status"] in ("failed", "cut")]
summary = {"dry_run": dry, "seconds": seconds, "ok": not failed, "failed": failed, "steps": steps, "benchmarks": benches}
(out / "gpu_check.json").write_text(json.dumps(summary, indent=2) + "\n")
md = [f"# GPU check{' (dry run on the CPU)' if dry else ''}: {'all steps passed' if not failed else 'FAILED: ' + ', '.join(failed)}",
      "", f"{seconds} s in all.", "", "| step | status | seconds | note |", "| --- | --- | --- | --- |"]
md += [f"| {s['step']} | {s['status']} | {s['seconds']} | {s['note'].replace('|', '/')} |" for s in steps]
for name in sorted((out / "bench").glob("*.md")):
    md += ["", f"## {name.stem}", "", name.read_text().strip()]
(out / "gpu_check.md").write_text("\n".join(md) + "\n")
print("\n".join(md[:len(steps) + 6]))
PY
then
    log "the summary failed"; exit 1
fi
FAILED=$(awk -F'\t' '$2 == "failed" || $2 == "cut" {print $1}' "$STATUS" | paste -sd' ')
if [[ -n "$FAILED" ]]; then
    log "FAILED steps: $FAILED (logs in $OUT/logs)"
    exit 1
fi
log "all steps passed ($(($(date +%s) - START)) s); results in $OUT/gpu_check.md"
