"""Training protocols: where a study runs and with which recipe. A sweep is (study, protocol)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Protocol:
    """Everything about a trial except the model row and the seed. Fields mirror `lightning_modules.RunConfig`."""

    name: str
    description: str
    dataset: str  # 'cifar10' | 'cifar100'
    preset: str  # hiremlp preset the study rows override
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.05
    warmup_epochs: int = 0
    label_smoothing: float = 0.1
    drop_path: float = 0.0
    train_subset: int | None = None  # None: the full training split
    eval_subset: int | None = None  # None: the full validation / test split
    val_size: int = 5000
    device: str = "auto"  # 'auto' | 'cpu' | 'cuda'
    # 'auto': bf16-mixed on a GPU, fp32 on a CPU; 'bf16-mixed' on a CPU with AMX trains cifar_tiny ~1.6x faster
    precision: str = "auto"


PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol(
            name="smoke",
            description="CPU in minutes: the tiny smoke model on 2,000 real CIFAR-10 images for 3 epochs.",
            dataset="cifar10", preset="smoke", epochs=3, batch_size=64, lr=2e-3, weight_decay=0.05,
            label_smoothing=0.0, train_subset=2000, eval_subset=500, val_size=1000, device="cpu",
        ),
        Protocol(
            name="cifar10",
            description="One GPU: cifar_small on CIFAR-10, 100 epochs, AdamW + cosine, DeiT-style regularisation.",
            dataset="cifar10", preset="cifar_small", epochs=100, batch_size=512, lr=2e-3, weight_decay=0.05,
            warmup_epochs=5, label_smoothing=0.1, drop_path=0.1,
        ),
        Protocol(
            name="cifar100",
            description="One GPU: cifar_small on CIFAR-100, 200 epochs (downloads CIFAR-100 with --download).",
            dataset="cifar100", preset="cifar_small", epochs=200, batch_size=256, lr=1e-3, weight_decay=0.05,
            warmup_epochs=10, label_smoothing=0.1, drop_path=0.1,
        ),
    )
}


def get_protocol(name: str) -> Protocol:
    """The protocol called `name`; ValueError listing the allowed names otherwise."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown protocol {name!r}; allowed: {', '.join(PROTOCOLS)}") from None


def default_protocol_name(cuda_available: bool) -> str:
    """A GPU gets real numbers (cifar10); a CPU-only machine gets a smoke run that finishes in minutes."""
    return "cifar10" if cuda_available else "smoke"


def with_overrides(protocol: Protocol, **overrides) -> Protocol:
    """The protocol with CLI overrides (None values are ignored)."""
    return dataclasses.replace(protocol, **{k: v for k, v in overrides.items() if v is not None})
