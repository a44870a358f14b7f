"""Per-image test predictions of a run, kept as one short text so a trial can store them anywhere a string goes:
its ``result.json``, an Optuna user attr (journal or RDB), a CSV cell.

A test set of 5,000 CIFAR images takes about 4-7 kB (6 kB at 60% accuracy): per image the label and the
predicted class's offset from it (0 where the prediction is right), one byte each below 256 classes (two above),
zlib-compressed, base64. The label travels with the predictions so that a reader can check
two trials were scored on the same images in the same order before pairing them image by image.

The format is ``p1:<images>:<bytes per value>:<base64>``; numpy only, so ``analysis`` reads it without torch.
"""

from __future__ import annotations

import base64
import zlib

import numpy as np

__all__ = ["KEY", "decode", "encode", "key_at"]

FORMAT = "p1"
#: result/user-attr key of the predictions on the test set at the training size; ``key_at(size)`` for other sizes
KEY = "predictions"


def key_at(size: int | None = None) -> str:
    """The result key of the predictions at test input size ``size`` (None: the training size)."""
    return KEY if size is None else f"{KEY}@{int(size)}"


def encode(pred: np.ndarray, label: np.ndarray) -> str:
    """Predicted class and true label per image, in the test set's order, as one ASCII string."""
    pred, label = np.asarray(pred).ravel(), np.asarray(label).ravel()
    if pred.shape != label.shape:
        raise ValueError(f"predictions and labels differ in length: {pred.size} vs {label.size}")
    if pred.size and (min(pred.min(), label.min()) < 0 or max(pred.max(), label.max()) > 65535):
        raise ValueError("class indices must lie in 0..65535")
    width = 1 if not pred.size or max(pred.max(), label.max()) < 256 else 2
    dtype = np.uint8 if width == 1 else np.dtype("<u2")
    wrap = 256**width
    # a right prediction is stored as 0 (its offset from the label), so a good model compresses well
    raw = ((pred.astype(np.int64) - label) % wrap).astype(dtype).tobytes() + label.astype(dtype).tobytes()
    return f"{FORMAT}:{pred.size}:{width}:" + base64.b64encode(zlib.compress(raw, 9)).decode("ascii")


def decode(code: str) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class, label) arrays of int64 from ``encode``'s string; ValueError on anything else."""
    try:
        fmt, n, width, body = str(code).split(":", 3)
        n, width = int(n), int(width)
        if fmt != FORMAT or width not in (1, 2):
            raise ValueError
        values = np.frombuffer(zlib.decompress(base64.b64decode(body, validate=True)),
                               dtype=np.uint8 if width == 1 else np.dtype("<u2"))
        if values.size != 2 * n:
            raise ValueError
    except (ValueError, zlib.error, TypeError):
        raise ValueError(f"not a predictions string ({FORMAT}:<images>:<bytes>:<base64>): {str(code)[:40]!r}") \
            from None
    values = values.astype(np.int64)
    label = values[n:]
    return (values[:n] + label) % 256**width, label
