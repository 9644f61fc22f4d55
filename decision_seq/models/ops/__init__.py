"""Numerical kernels the backbones share: the selective scan (Mamba) and SSD scan (Mamba-2) in pure PyTorch,
Mamba's causal conv, the fused CPU kernels built on demand from scan_cpu.c, and the optional CUDA kernels."""
