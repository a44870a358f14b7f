"""The math settings of training on a GPU, in one place: the run, the benchmark and the GPU self-check use them."""

from __future__ import annotations

import torch

__all__ = ["use_training_math"]


def use_training_math() -> None:
    """TF32 for matmuls and convolutions alike (bf16-mixed keeps fp32 for what autocast leaves in fp32); cuDNN's
    autotuner off and its deterministic kernels on, so a resumed run repeats an uninterrupted one (some cuDNN
    weight-gradient kernels accumulate with atomics). Process-wide, as these flags are."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
