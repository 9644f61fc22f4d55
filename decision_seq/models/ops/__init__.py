"""Numerical kernels the backbones share: the selective scan (pure PyTorch) and the optional CUDA kernels."""
