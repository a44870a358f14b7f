"""How many classes a run's dataset has: the one answer for the model head of a run, a preflight check and a cost
estimate (it used to be worked out three ways)."""

from __future__ import annotations

from pathlib import Path

from .cifar import SPECS

__all__ = ["IMAGENET_CLASSES", "dataset_classes"]


IMAGENET_CLASSES = 1000  # what an ImageFolder tree whose classes are not knowable here is costed and timed as


def dataset_classes(dataset: str, data_dir: str | Path | None = None, classes: str | int | None = None, *,
                    check: bool = True) -> int | None:
    """CIFAR's class count; for an ImageFolder tree its class folders (all, the first N, or a class list file:
    ``classes``), scanned (and with ``check`` every image header verified) when ``data_dir`` is given, else the
    count ``classes`` states, else None (not knowable without the tree). ValueError for an unknown dataset."""
    if dataset in SPECS:
        return SPECS[dataset].num_classes
    if dataset != "imagefolder":
        raise ValueError(f"dataset={dataset!r}: expected one of {', '.join((*SPECS, 'imagefolder'))}")
    if data_dir:
        from .imagefolder import scan_image_folder

        return len(scan_image_folder(data_dir, classes, check=check).classes)
    text = str(classes or "").strip()
    if text.isdigit():
        return int(text)
    if text and Path(text).expanduser().is_file():
        names = [ln.split()[0] for ln in Path(text).expanduser().read_text().splitlines()
                 if ln.strip() and not ln.startswith("#")]
        return len(set(names))
    return None
