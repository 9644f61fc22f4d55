# decision-seq on an NVIDIA GPU: torch + mamba-ssm / causal-conv1d CUDA kernels built from source.
#
#   docker build --build-arg CUDA_ARCHS="90" -t decision-seq:gpu .
#   docker run --gpus all -v "$HOME/.minari/datasets:/data/minari" -v "$PWD/outputs:/outputs" \
#       -e WANDB_API_KEY decision-seq:gpu train model=dmamba trainer.bf16=true
#
# Volumes: /data/minari (Minari datasets, MINARI_DATASETS_PATH) and /outputs (the working dir: runs land
# in /outputs/outputs/ and sweeps in /outputs/multirun/). WANDB_API_KEY is only ever passed at run time.
# See the README section "GPU and Docker".

# The CUDA toolkit (nvcc) must have the major version torch was built with: the default PyPI wheel of
# torch 2.13.0 requires cuda-toolkit==13.0.3 (its wheel metadata), hence CUDA 13.0. For a CUDA 12 build,
# pass e.g. CUDA_VERSION=12.8.1 and TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128.
ARG CUDA_VERSION=13.0.1
ARG UBUNTU_VERSION=24.04
FROM nvidia/cuda:${CUDA_VERSION}-devel-ubuntu${UBUNTU_VERSION}

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://pypi.org/simple
# GPU archs for the kernels (80 = A100, 90 = H100/H200, 120 = RTX 50xx), or "all" (15-35 min build).
ARG CUDA_ARCHS="80;90"
# Parallel nvcc jobs; empty = all cores. Lower it if the build runs out of memory.
ARG MAX_JOBS=""

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    CUDA_HOME=/usr/local/cuda \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:${PATH}

# Ubuntu's python3 (3.12 on 24.04) with headers for the extension build; apt versions follow the base
# image's release. Build tools pinned: the kernel build runs without isolation, with these.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-dev python3-venv build-essential git \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv "${VIRTUAL_ENV}" \
    && pip install pip==26.3 setuptools==84.2.1 wheel==0.48.0 packaging==26.3 ninja==1.13.2

# torch first, pinned; every later install is constrained to it.
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}" \
    && echo "torch==${TORCH_VERSION}" > /opt/constraints.txt

# The kernels (the slow layer: kept above the project copy so code edits do not rebuild it).
COPY scripts/build_mamba_ssm.sh /tmp/build_mamba_ssm.sh
RUN MAX_JOBS="${MAX_JOBS:-$(nproc)}" PYTHON=python bash /tmp/build_mamba_ssm.sh --archs "${CUDA_ARCHS}" \
    && rm /tmp/build_mamba_ssm.sh

# The project.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY decision_seq ./decision_seq
RUN pip install -c /opt/constraints.txt .

# Non-root user 1000 (Ubuntu 24.04 images ship a user "ubuntu" with that uid: replaced).
RUN if id -u ubuntu >/dev/null 2>&1; then userdel --remove ubuntu; fi \
    && useradd --create-home --uid 1000 --user-group app \
    && mkdir -p /data/minari /outputs \
    && chown 1000:1000 /data/minari /outputs
USER 1000:1000
ENV MINARI_DATASETS_PATH=/data/minari \
    WANDB_DIR=/outputs
VOLUME ["/data/minari", "/outputs"]
WORKDIR /outputs

ENTRYPOINT ["decision-seq"]
CMD ["train", "--help"]
