#!/usr/bin/env bash
# Build and install mamba-ssm and causal-conv1d from their PyPI source distributions against the torch
# that is already installed (no build isolation, so pip never pulls another torch), for chosen GPU archs.
#
# Both projects hard-code their nvcc `-gencode` list in setup.py (a `cc_flag` list, sm_75..sm_121 with
# CUDA 13), and because those flags name an arch, torch's cpp_extension then ignores TORCH_CUDA_ARCH_LIST.
# So to build for fewer archs this script unpacks each sdist and overrides `cc_flag` before building.
# A one-arch build takes minutes; the upstream all-arch build 15-35 minutes.
#
# Usage: scripts/build_mamba_ssm.sh --help
set -euo pipefail

# Versions this script is meant for: the newest releases on PyPI when written (mamba-ssm 2.3.2.post1
# needs torch 2.x; its setup.py knows CUDA 11.6-13.x). Not yet verified on a GPU by us.
MAMBA_SSM_VERSION="2.3.2.post1"
CAUSAL_CONV1D_VERSION="1.7.0"

PYTHON="${PYTHON:-python}"
SDIST_DIR=""
ARCHS=""
MODE="install"  # install | patch-only | download-only
WORK_DIR=""
KEEP_WORK=0

usage() {
    cat <<EOF
Usage: $(basename "$0") [options]

Build mamba-ssm ${MAMBA_SSM_VERSION} and causal-conv1d ${CAUSAL_CONV1D_VERSION} from source against the
installed torch and install them into \$PYTHON's environment (PYTHON=${PYTHON}).

Options:
  --archs LIST        GPU archs to compile for: "80,90" / "80;90" / "8.0 9.0", or "all" for the
                      upstream list (sm_75..sm_121, 15-35 min). Default: this machine's GPU
                      (torch.cuda.get_device_capability(), else nvidia-smi).
  --sdist-dir DIR     Offline: take the sdists from DIR (pip --no-index --find-links DIR). Their
                      dependencies (einops, transformers, triton, ...) must be installed already or
                      be wheels in DIR.
  --download-only DIR Download the two sdists into DIR and stop (to prepare an offline build).
  --patch-only        Fetch, unpack and patch the sources, print the resulting arch flags, stop
                      before compiling (needs no GPU and no nvcc).
  --work-dir DIR      Where to unpack the sources (default: a temporary dir, removed at the end).
  --keep              Keep the work dir.
  -h, --help          Show this help.

Environment:
  PYTHON              Python whose environment gets the packages (default: python).
  MAX_JOBS            Parallel compile jobs (default: nproc). Each nvcc job runs 4 threads and can
                      take several GB of memory: lower MAX_JOBS if the build is killed.
  CUDA_HOME           CUDA toolkit root with bin/nvcc (default: torch's guess, e.g. /usr/local/cuda).

Always set here: MAMBA_FORCE_BUILD=TRUE and CAUSAL_CONV1D_FORCE_BUILD=TRUE (compile; never try their
network download of a prebuilt wheel), pip --no-build-isolation, and a constraint pinning the
installed torch (and triton) versions.
EOF
}

die() { echo "build_mamba_ssm: error: $*" >&2; exit 1; }
log() { echo "build_mamba_ssm: $*"; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --archs) [[ $# -ge 2 ]] || die "--archs needs a value"; ARCHS="$2"; shift 2 ;;
        --archs=*) ARCHS="${1#*=}"; shift ;;
        --sdist-dir) [[ $# -ge 2 ]] || die "--sdist-dir needs a value"; SDIST_DIR="$2"; shift 2 ;;
        --sdist-dir=*) SDIST_DIR="${1#*=}"; shift ;;
        --download-only) [[ $# -ge 2 ]] || die "--download-only needs a dir"; MODE="download-only"; SDIST_DIR="$2"; shift 2 ;;
        --download-only=*) MODE="download-only"; SDIST_DIR="${1#*=}"; shift ;;
        --patch-only | --dry-run) MODE="patch-only"; shift ;;
        --work-dir) [[ $# -ge 2 ]] || die "--work-dir needs a value"; WORK_DIR="$2"; KEEP_WORK=1; shift 2 ;;
        --work-dir=*) WORK_DIR="${1#*=}"; KEEP_WORK=1; shift ;;
        --keep) KEEP_WORK=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done

START=$(date +%s)
export MAMBA_FORCE_BUILD=TRUE CAUSAL_CONV1D_FORCE_BUILD=TRUE
MAX_JOBS="${MAX_JOBS:-$(nproc)}"
export MAX_JOBS

command -v "$PYTHON" >/dev/null || die "no '$PYTHON' on PATH (set PYTHON=/path/to/python)"
PIP=("$PYTHON" -m pip)

# --- the sdists ------------------------------------------------------------------------------------

download_sdists() {  # $1: destination dir
    mkdir -p "$1"
    # pip download still runs each sdist's setup.py for metadata, which on a machine without nvcc dies
    # looking for CUDA: SKIP_CUDA_BUILD makes that step build-free (it does not affect the sdist saved).
    MAMBA_SKIP_CUDA_BUILD=TRUE CAUSAL_CONV1D_SKIP_CUDA_BUILD=TRUE \
        "${PIP[@]}" download --no-binary :all: --no-deps --no-build-isolation -d "$1" \
        "mamba-ssm==${MAMBA_SSM_VERSION}" "causal-conv1d==${CAUSAL_CONV1D_VERSION}"
}

if [[ "$MODE" == "download-only" ]]; then
    download_sdists "$SDIST_DIR"
    log "sdists saved in $SDIST_DIR ($(($(date +%s) - START)) s)"
    exit 0
fi

if [[ -z "$WORK_DIR" ]]; then
    WORK_DIR=$(mktemp -d -t build_mamba_ssm.XXXXXX)
fi
mkdir -p "$WORK_DIR"
cleanup() { if [[ "$KEEP_WORK" == 0 ]]; then rm -rf "$WORK_DIR"; fi; }
trap cleanup EXIT

if [[ -n "$SDIST_DIR" ]]; then
    [[ -d "$SDIST_DIR" ]] || die "--sdist-dir $SDIST_DIR is not a directory"
    SDIST_DIR=$(cd "$SDIST_DIR" && pwd)
    PIP_SOURCE=(--no-index --find-links "$SDIST_DIR")
else
    SDIST_DIR="$WORK_DIR/sdists"
    download_sdists "$SDIST_DIR"
    PIP_SOURCE=()
fi

unpack() {  # $1: sdist file stem (e.g. mamba_ssm-2.3.2.post1) -> prints the unpacked source dir
    local tarball="$SDIST_DIR/$1.tar.gz"
    [[ -f "$tarball" ]] || die "missing $tarball (expected the ${1%-*} sdist of that version in $SDIST_DIR)"
    tar -xzf "$tarball" -C "$WORK_DIR"
    [[ -f "$WORK_DIR/$1/setup.py" ]] || die "$tarball has no $1/setup.py"
    echo "$WORK_DIR/$1"
}
MAMBA_SRC=$(unpack "mamba_ssm-${MAMBA_SSM_VERSION}")
CONV_SRC=$(unpack "causal_conv1d-${CAUSAL_CONV1D_VERSION}")

# --- GPU archs -------------------------------------------------------------------------------------

if [[ -z "$ARCHS" ]]; then
    ARCHS=$("$PYTHON" -c 'import torch; assert torch.cuda.is_available(); print("%d%d" % torch.cuda.get_device_capability())' \
        2>/dev/null || true)
    if [[ -z "$ARCHS" ]] && command -v nvidia-smi >/dev/null; then
        ARCHS=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | tr -d '.' | sort -u | paste -sd, || true)
    fi
    [[ -n "$ARCHS" ]] || die "no GPU visible to detect its compute capability: pass --archs (e.g. --archs 80,90 or --archs all)"
    log "detected GPU arch(s): $ARCHS"
fi

if [[ "$ARCHS" == "all" ]]; then
    log "archs: all (upstream list, unpatched setup.py; expect 15-35 minutes)"
else
    # "8.0;9.0" / "80,90" / "90a" -> ["-gencode", "arch=compute_80,code=sm_80", ...]
    GENCODE=""
    for arch in $(echo "$ARCHS" | tr ',;' '  '); do
        arch="${arch//./}"
        [[ "$arch" =~ ^[0-9]{2,3}a?$ ]] || die "bad arch '$arch' in --archs '$ARCHS' (want e.g. 80,90 or all)"
        GENCODE+="\"-gencode\", \"arch=compute_${arch},code=sm_${arch}\", "
    done
    [[ -n "$GENCODE" ]] || die "--archs '$ARCHS' names no arch"
    for src in "$MAMBA_SRC" "$CONV_SRC"; do
        # Override cc_flag right before its first use (the `if FORCE_CXX11_ABI:` line that follows the
        # hard-coded list in both setup.py files); the HIP branch keeps its own flags.
        "$PYTHON" - "$src/setup.py" "[${GENCODE%, }]" <<'PY'
import re, sys
path, flags = sys.argv[1], sys.argv[2]
text = open(path).read()
anchor = re.compile(r"^    if FORCE_CXX11_ABI:$", re.M)
if len(anchor.findall(text)) != 1 or "cc_flag" not in text or "HIP_BUILD" not in text:
    sys.exit(f"{path}: setup.py layout not recognized (no single 'if FORCE_CXX11_ABI:' after cc_flag); "
             "this script's patch only knows the pinned versions")
patch = ("    # Patched by scripts/build_mamba_ssm.sh: compile for the chosen GPU archs only.\n"
         f"    if not HIP_BUILD:\n        cc_flag = {flags}\n\n")
text = anchor.sub(lambda m: patch + m.group(0), text)
open(path, "w").write(text)
compile(text, path, "exec")
PY
        log "patched $(basename "$src")/setup.py: cc_flag = [${GENCODE%, }]"
    done
fi

if [[ "$MODE" == "patch-only" ]]; then
    KEEP_WORK=1
    log "patch-only: sources left in $WORK_DIR ($(($(date +%s) - START)) s)"
    exit 0
fi

# --- preflight -------------------------------------------------------------------------------------

"$PYTHON" - <<'PY' || die "preflight failed (see above)"
import os, re, shutil, subprocess, sys
import torch
from torch.utils.cpp_extension import CUDA_HOME
print(f"build_mamba_ssm: torch {torch.__version__} (CUDA {torch.version.cuda}), python {sys.version.split()[0]}")
if torch.version.cuda is None:
    sys.exit("torch is a CPU-only build: install a CUDA build of torch first")
nvcc = os.path.join(CUDA_HOME, "bin", "nvcc") if CUDA_HOME else shutil.which("nvcc")
if not nvcc or not os.path.exists(nvcc):
    sys.exit("nvcc not found: install the CUDA toolkit (a *devel* image) and set CUDA_HOME=/usr/local/cuda")
out = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
nvcc_version = re.search(r"release (\d+)\.(\d+)", out).groups()
print(f"build_mamba_ssm: nvcc {'.'.join(nvcc_version)} at {nvcc}")
if nvcc_version[0] != torch.version.cuda.split(".")[0]:
    sys.exit(f"nvcc is CUDA {'.'.join(nvcc_version)} but torch was built with CUDA {torch.version.cuda}: "
             "use a toolkit of the same major version")
PY

# Keep the installed torch (and the triton it pins): dependencies must not replace them.
CONSTRAINTS="$WORK_DIR/constraints.txt"
"$PYTHON" - >"$CONSTRAINTS" <<'PY'
from importlib.metadata import PackageNotFoundError, version
for name in ("torch", "triton"):
    try:
        print(f"{name}=={version(name)}")
    except PackageNotFoundError:
        pass
PY
log "constraints: $(paste -sd' ' "$CONSTRAINTS"); MAX_JOBS=$MAX_JOBS"

# --- build and install -----------------------------------------------------------------------------

# Without build isolation the build tools come from this environment; without ninja, torch compiles
# one file at a time and ignores MAX_JOBS.
"${PIP[@]}" install -c "$CONSTRAINTS" ${PIP_SOURCE[@]+"${PIP_SOURCE[@]}"} setuptools wheel packaging ninja

for src in "$CONV_SRC" "$MAMBA_SRC"; do  # causal-conv1d first: mamba-ssm uses it when present
    log "building $(basename "$src") ..."
    step_start=$(date +%s)
    "${PIP[@]}" install --no-build-isolation -c "$CONSTRAINTS" ${PIP_SOURCE[@]+"${PIP_SOURCE[@]}"} "$src"
    log "$(basename "$src") installed in $(($(date +%s) - step_start)) s"
done

# --- check -----------------------------------------------------------------------------------------

if ! "$PYTHON" -c 'import causal_conv1d_cuda, selective_scan_cuda
from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
from causal_conv1d import causal_conv1d_fn
print("build_mamba_ssm: kernels import OK")'; then
    if "$PYTHON" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
        die "the built kernels do not import (see above)"
    fi
    log "warning: the kernels do not import here, but no GPU is visible either (e.g. a docker build); check on a GPU"
fi
log "done in $(($(date +%s) - START)) s"
