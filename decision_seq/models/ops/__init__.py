"""Numerical kernels the backbones share: the selective scan (Mamba) and SSD scan (Mamba-2) in pure PyTorch, and the
optional CUDA kernels."""
