"""GPU suite: our Mamba against mamba_ssm's CUDA kernels, the kernel path actually taken, step vs forward
on CUDA, training through the real CLI on CUDA (bf16, torch.compile), and GPU checkpoints on CPU.

Deselected by default; run on a CUDA machine with `pytest -m gpu tests/gpu -rs`. Every test
skips with "needs CUDA" without a GPU; the mamba_ssm comparisons also skip with "needs mamba_ssm built
with its CUDA extension" when `load_kernels()` finds no kernels (build them with
scripts/build_mamba_ssm.sh). Tolerances are mamba_ssm's own kernel-vs-reference ones
(tests/ops/test_selective_scan.py): fp32 rtol 6e-4 / atol 2e-3, bf16 rtol 3e-2 / atol 5e-2, with its
wider factors for gradients (x2 for the input, x5 / x10 for parameters, which sum over batch and time).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from decision_seq.models.backbones.mamba import MambaBackbone, MambaMixer
from decision_seq.models.ops.kernels import load_kernels
from tests.helpers import TINY

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

TOL = {torch.float32: (6e-4, 2e-3), torch.bfloat16: (3e-2, 5e-2)}  # (rtol, atol)

# Small training runs on the built-in Pendulum dataset (conftest's pendulum_dataset_id): TINY, on CUDA.
GPU_TINY = [o for o in TINY if not o.startswith(("trainer.device=", "trainer.num_threads="))]
GPU_TINY += ["trainer.device=cuda", "logger=none"]


@pytest.fixture
def kernels():
    """The mamba_ssm kernels, or skip."""
    k = load_kernels()
    if k is None:
        pytest.skip("needs mamba_ssm built with its CUDA extension")
    return k


@pytest.fixture(autouse=True)
def no_tf32():
    """fp32 means fp32: TF32 matmuls / convs would blur the comparisons by ~1e-3."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "decision_seq", *args], capture_output=True, text=True, timeout=timeout, env=env
    )
    if proc.returncode != 0:
        raise AssertionError(f"decision-seq {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def read_results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def close(actual, expected, rtol, atol, what: str) -> None:
    torch.testing.assert_close(actual.float(), expected.float(), rtol=rtol, atol=atol, msg=lambda m: f"{what}: {m}")


# ---------------------------------------------------------------------------------------------------
# MambaMixer == mamba_ssm.Mamba
# ---------------------------------------------------------------------------------------------------


def run_mixer(module, x, grad_out, dtype):
    """Forward under autocast (bf16) or plain fp32, backward with grad_out -> (out, x.grad, {name: grad})."""
    module.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        out = module(x)
    out.backward(grad_out.to(out.dtype))
    return out.detach(), x.grad, {n: p.grad for n, p in module.named_parameters()}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("our_path", ["kernel", "torch"])
def test_mixer_matches_mamba_ssm(kernels, dtype, our_path):
    from mamba_ssm import Mamba  # imports only where its CUDA extension is built

    torch.manual_seed(0)
    d_model, batch, seqlen = 64, 2, 48
    use_kernels = None if our_path == "kernel" else False
    ours = MambaMixer(d_model, d_state=16, d_conv=4, expand=2, use_kernels=use_kernels).cuda()
    theirs = Mamba(d_model, d_state=16, d_conv=4, expand=2).cuda()  # use_fast_path: the fused mamba_inner_fn

    # Same parameter names and shapes: state_dicts load both ways, strictly.
    theirs.load_state_dict(ours.state_dict(), strict=True)
    back = MambaMixer(d_model, d_state=16, d_conv=4, expand=2).cuda()
    back.load_state_dict(theirs.state_dict(), strict=True)
    for name, p in back.state_dict().items():
        assert torch.equal(p, ours.state_dict()[name]), name

    x = torch.randn(batch, seqlen, d_model, device="cuda")
    grad_out = torch.randn(batch, seqlen, d_model, device="cuda")
    out, gx, grads = run_mixer(ours, x, grad_out, dtype)
    assert ours.last_path == our_path
    ref_out, ref_gx, ref_grads = run_mixer(theirs, x, grad_out, dtype)

    rtol, atol = TOL[dtype]
    close(out, ref_out, rtol, atol, "output")
    close(gx, ref_gx, 2 * rtol, 2 * atol, "input gradient")
    rtol_w, atol_w = max(rtol, 1e-3), max(atol, 1e-3)  # upstream's weight tolerances
    for name, g in grads.items():
        close(g, ref_grads[name], 5 * rtol_w, 10 * atol_w, f"gradient of {name}")


def test_cuda_forward_takes_the_kernel_path(kernels):
    x = torch.randn(2, 12, 32, device="cuda")
    auto = MambaMixer(32).cuda()
    auto(x)
    assert auto.last_path == "kernel"
    with torch.autocast("cuda", dtype=torch.bfloat16):
        auto(x)
    assert auto.last_path == "kernel"
    forced = MambaMixer(32, use_kernels=True).cuda()
    forced(x)
    assert forced.last_path == "kernel"

    plain = MambaMixer(32, use_kernels=False).cuda()
    plain(x)
    assert plain.last_path == "torch"

    backbone = MambaBackbone(32, n_layer=2).cuda()
    backbone(x)
    assert [b.mixer.last_path for b in backbone.blocks] == ["kernel", "kernel"]


# ---------------------------------------------------------------------------------------------------
# Recurrent step on CUDA
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["kernel", "torch"])
def test_step_matches_forward_on_cuda(path, request):
    if path == "kernel":
        request.getfixturevalue("kernels")
    torch.manual_seed(0)
    backbone = MambaBackbone(32, n_layer=2, dropout=0.0, use_kernels=None if path == "kernel" else False).cuda().eval()
    x = torch.randn(3, 17, 32, device="cuda")  # (B, T, D)
    with torch.no_grad():
        full = backbone(x)  # (B, T, D)
        assert {b.mixer.last_path for b in backbone.blocks} == {path}
        state = backbone.init_state(3, device="cuda")
        steps = torch.stack([backbone.step(x[:, t], state)[0] for t in range(x.shape[1])], dim=1)  # (B, T, D)
    close(steps, full, *TOL[torch.float32], "step vs forward")


# ---------------------------------------------------------------------------------------------------
# Training through the CLI on CUDA; GPU checkpoints on CPU
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("compile", [False, True], ids=["eager", "compile"])
@pytest.mark.parametrize("model", ["dt", "dmamba"])
def test_cli_training_on_cuda(model, compile, pendulum_dataset_id, tmp_path):
    run = tmp_path / model
    cli(
        "train",
        f"model={model}",
        "trainer.steps=20",
        "eval.every=10",
        "trainer.bf16=true",
        f"trainer.compile={str(compile).lower()}",
        f"hydra.run.dir={run}",
        *GPU_TINY,
    )
    res = read_results(run)
    assert res["status"] == "completed" and res["steps"] == 20
    assert res["device"].startswith("cuda")
    assert [e["step"] for e in res["evaluations"]] == [10, 20]
    ckpt = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


@pytest.mark.parametrize("model", ["dt", "dmamba"])
def test_gpu_checkpoint_acts_the_same_on_cpu(model, pendulum_dataset_id, tmp_path):
    import hydra

    run = tmp_path / model
    cli("train", f"model={model}", "trainer.steps=10", "eval.every=0", f"hydra.run.dir={run}", *GPU_TINY)
    ckpt = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    kw = ckpt["model_kwargs"]
    cpu_model = hydra.utils.get_class(ckpt["model_target"])(**kw)
    cpu_model.load_state_dict(ckpt["model"])
    cpu_model.eval()
    gpu_model = copy.deepcopy(cpu_model).cuda()

    # A fixed random batch of windows, one of them left-padded (as at the start of an episode).
    g = torch.Generator().manual_seed(0)
    B, K = 4, ckpt["config"]["model"]["context_len"]
    batch = {
        "states": torch.randn(B, K, kw["state_dim"], generator=g),
        "actions": torch.rand(B, K, kw["action_dim"], generator=g) * 4 - 2,
        "returns_to_go": torch.randn(B, K, 1, generator=g),
        "timesteps": torch.randint(0, kw["max_ep_len"] - K, (B, 1), generator=g) + torch.arange(K),
        "mask": torch.ones(B, K, dtype=torch.bool),
    }
    batch["mask"][0, :2] = False
    cpu_act = cpu_model.act(**batch)
    gpu_act = gpu_model.act(**{k: v.cuda() for k, v in batch.items()})
    if model == "dmamba":
        expected = "kernel" if load_kernels() is not None else "torch"
        assert {b.mixer.last_path for b in gpu_model.backbone.blocks} == {expected}
        assert {b.mixer.last_path for b in cpu_model.backbone.blocks} == {"torch"}
    close(gpu_act.cpu(), cpu_act, *TOL[torch.float32], "actions, GPU vs CPU")
