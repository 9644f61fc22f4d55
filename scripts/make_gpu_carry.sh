#!/usr/bin/env bash
# Make the folder that scripts/gpu_check.sh takes to an offline GPU box (Python 3.12, x86_64, torch with
# CUDA 13 already there): the mamba-ssm and causal-conv1d sdists, this project's wheel, and wheels for
# Python 3.12 / manylinux x86_64 of every dependency the box does not already have.
#
#   scripts/make_gpu_carry.sh OUT_DIR          # here, with network (PyPI); prints the folder's size (~51 MiB)
#   scripts/make_gpu_carry.sh --lean OUT_DIR   # without wandb and mujoco (~9 MiB): room for kernel-wheels/
#
# The dependencies are this project's (and mamba-ssm's: einops, transformers, ninja, packaging, which the
# box has), resolved for Python 3.12 on manylinux x86_64 with torch pinned to the box's version, less the
# packages the box's image holds (BOX_PACKAGES below, from the device notes; torch, nvidia-*, triton and
# cuda-* always). Environment: PYTHON (default: python3) runs pip and the sdist download;
# TORCH_VERSION (default 2.11.0) is the box's torch.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="${TORCH_VERSION:-2.11.0}"
# Dependencies published as sdists only (pure Python): built into wheels here.
SDIST_ONLY=("antlr4-python3-runtime==4.9.3")  # hydra-core 1.3 pins antlr4 4.9.*, which has no wheel
# pip matches manylinux tags exactly: name every glibc level up to the box's (Ubuntu 24.04: 2.39).
TARGET=(--python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none --only-binary :all:)
for glibc in 39 35 34 31 28 27 24 17 12 5; do TARGET+=(--platform "manylinux_2_${glibc}_x86_64"); done
TARGET+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64)
# The GPU box's image (device notes, 2026-11): these are not carried.
BOX_PACKAGES="absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch
build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock
flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx
huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin
jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax llvmlite
lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict
multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro nvidia-ml-py onnx
onnx-ir onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint
packaging pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil
pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov
pytest-mock pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu
safetensors scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers
setuptools shellingham simplejson six sortedcontainers statsmodels sympy tabulate tensorboard
tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio
torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope triton typer typing-extensions
typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp"

die() { echo "make_gpu_carry: error: $*" >&2; exit 1; }
log() { echo "make_gpu_carry: $*"; }

LEAN=0
ARGS=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --lean) LEAN=1; shift ;;
        -*) die "unknown option '$1' (valid: --lean, --help)" ;;
        *) ARGS+=("$1"); shift ;;
    esac
done
[[ ${#ARGS[@]} -eq 1 ]] || die "want one argument, OUT_DIR; got ${#ARGS[@]} (usage: $(basename "$0") [--lean] OUT_DIR)"
OUT="${ARGS[0]}"
command -v "$PYTHON" >/dev/null || die "no '$PYTHON' on PATH (set PYTHON=/path/to/python)"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d -t make_gpu_carry.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
PIP=("$PYTHON" -m pip --disable-pip-version-check)

log "the mamba-ssm and causal-conv1d sdists"
PYTHON="$PYTHON" "$ROOT/scripts/build_mamba_ssm.sh" --download-only "$OUT"

log "this project's wheel"
rm -f "$OUT"/decision_seq-*.whl
"${PIP[@]}" wheel -q --no-deps --no-build-isolation -w "$OUT" "$ROOT"
PROJECT_WHEEL=$(find "$OUT" -maxdepth 1 -name 'decision_seq-*.whl' | head -n 1)
[[ -n "$PROJECT_WHEEL" ]] || die "pip wheel made no decision_seq wheel"

log "pure-Python wheels of the sdist-only dependencies: ${SDIST_ONLY[*]}"
"${PIP[@]}" wheel -q --no-deps -w "$WORK/built" "${SDIST_ONLY[@]}"
for wheel in "$WORK"/built/*.whl; do  # before the torch stub joins them
    [[ "$wheel" == *-py3-none-any.whl || "$wheel" == *-py2.py3-none-any.whl ]] ||
        die "$(basename "$wheel") is not a pure-Python wheel: it cannot be carried from here"
done

# Packages left out enter the resolution as dependency-free stub wheels (a local version, so only the stub
# matches the constraint): the box's torch (its CUDA dependencies are the box's business), and with --lean
# wandb and mujoco, which the GPU check never imports (wandb only for logger=wandb, mujoco for MuJoCo envs).
STUBS=("torch==$TORCH_VERSION+box")
[[ "$LEAN" == 0 ]] || STUBS+=("wandb==999+notcarried" "mujoco==999+notcarried")
printf '%s\n' "${STUBS[@]}" >"$WORK/constraints.txt"
"$PYTHON" - "$WORK/built" "${STUBS[@]}" <<'PY'
import sys, zipfile
for stub in sys.argv[2:]:
    name, version = stub.split("==")
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(f"{sys.argv[1]}/{name}-{version}-py3-none-any.whl", "w") as z:
        z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
PY
log "resolving the dependencies for Python 3.12 / manylinux x86_64 (left out: ${STUBS[*]})"
"${PIP[@]}" install -q --dry-run --ignore-installed --report "$WORK/report.json" --target "$WORK/target" \
    "${TARGET[@]}" --find-links "$WORK/built" -c "$WORK/constraints.txt" "$PROJECT_WHEEL"

# name==version of every resolved package the box lacks (names compared in PEP 503 normal form).
"$PYTHON" - "$WORK/report.json" "$BOX_PACKAGES" >"$WORK/carry.txt" <<'PY'
import json, re, sys
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
box = {norm(n) for n in sys.argv[2].split()}
for item in json.load(open(sys.argv[1]))["install"]:
    name, version = item["metadata"]["name"], item["metadata"]["version"]
    n = norm(name)
    stub = "+box" in version or "+notcarried" in version
    if stub or n in box or n == "decision-seq" or n.startswith(("nvidia-", "cuda-")) or n in ("torch", "triton"):
        continue
    print(f"{name}=={version}")
PY
log "$(wc -l <"$WORK/carry.txt") wheel(s) to carry: $(paste -sd' ' "$WORK/carry.txt")"
rm -f "$WORK/download.txt"
while read -r req; do
    built=$(find "$WORK/built" -iname "$(echo "${req%%==*}" | tr '-' '_')-${req##*==}-*.whl" | head -n 1)
    if [[ -n "$built" ]]; then
        cp "$built" "$OUT/"
    else
        echo "$req" >>"$WORK/download.txt"
    fi
done <"$WORK/carry.txt"
if [[ -s "$WORK/download.txt" ]]; then
    "${PIP[@]}" download -q --no-deps "${TARGET[@]}" -d "$OUT" -r "$WORK/download.txt"
fi

SIZE_MIB=$(du -sm "$OUT" | cut -f1)
log "done: $OUT holds $(find "$OUT" -maxdepth 1 -type f | wc -l) files, ${SIZE_MIB} MiB"
if [[ "$SIZE_MIB" -ge 60 ]]; then
    echo "make_gpu_carry: warning: ${SIZE_MIB} MiB is over the 60 MiB a device run may carry" >&2
fi
