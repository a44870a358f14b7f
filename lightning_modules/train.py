"""Command line for one run: ``python -m lightning_modules.train --preset cifar_tiny --epochs 100 --padding zero``.

Every ``RunConfig`` field and every ``HireMLPConfig`` field is an option (``--field-name value``); model fields
are passed through as strings, which ``HireMLPConfig`` parses and validates ("4,3,3,2", "4x2,3,3,2", "h,w").
Bad input gives one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import hiremlp

from .classifier import DivergedError
from .progress import PROGRESS_MODES
from .run import RunConfig, default_run_dir, run

_RUN_ONLY = {"model_overrides"}
_MODEL_SKIP = {"num_classes"}  # follows the dataset


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not usage + error
        self.exit(2, f"{self.prog}: error: {message}\n")


def _bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _optional_int(text: str) -> int | None:
    return None if text.strip().lower() in ("", "none", "all") else int(text)


def _optional_float(text: str) -> float | None:
    return None if text.strip().lower() in ("", "none") else float(text)


def _sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in text.replace(" ", "").split(",") if s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated sizes like 24,28,32, got {text!r}") from None


def _progress(text: str) -> str:
    low = text.strip().lower()
    if low in PROGRESS_MODES:
        return low
    try:
        return "auto" if _bool(low) else "off"
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(PROGRESS_MODES)}, got {text!r}") from None


def _auto_bool(text: str) -> bool | str:
    return "auto" if text.strip().lower() == "auto" else _bool(text)


_RUN_TYPES: dict[str, Any] = {
    "train_subset": _optional_int, "eval_subset": _optional_int, "data_dir": str, "run_dir": str,
    "drop_path": _optional_float, "eval_sizes": _sizes, "channels_last": _auto_bool,
}


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m lightning_modules.train", description="Train one Hire-MLP on CIFAR.",
                allow_abbrev=False)
    defaults = RunConfig()
    run_group = p.add_argument_group("run / recipe")
    for f in dataclasses.fields(RunConfig):
        if f.name in _RUN_ONLY:
            continue
        default = getattr(defaults, f.name)
        kind = _RUN_TYPES.get(f.name) or (_bool if isinstance(default, bool) else type(default))
        flag = "--" + f.name.replace("_", "-")
        if f.name == "progress":
            run_group.add_argument(flag, type=_progress, default="auto",
                                   help="auto (default): a bar on a terminal, a line per epoch otherwise; "
                                        "bar, lines or off")
            continue
        run_group.add_argument(flag, type=kind, default=default, help=f"default {default!r}")
    model_group = p.add_argument_group("model (HireMLPConfig fields, default: the preset's)")
    for f in dataclasses.fields(hiremlp.HireMLPConfig):
        if f.name not in _MODEL_SKIP:
            model_group.add_argument("--" + f.name.replace("_", "-"), dest="model." + f.name, default=None)
    return p


def config_from_args(argv: Sequence[str] | None = None) -> RunConfig:
    args = vars(build_parser().parse_args(argv))
    overrides = {k.removeprefix("model."): v for k, v in args.items() if k.startswith("model.") and v is not None}
    fields = {k: v for k, v in args.items() if not k.startswith("model.")}
    fields["run_dir"] = fields["run_dir"] or default_run_dir()
    return RunConfig(**fields, model_overrides=overrides)


def main(argv: Sequence[str] | None = None) -> int:
    prog = "python -m lightning_modules.train"
    try:
        cfg = config_from_args(argv)
        result = run(cfg)
    except (ValueError, DivergedError) as e:  # DatasetError and config errors are ValueErrors
        msg = " ".join(str(e).split())
        print(f"{prog}: error: {msg}", file=sys.stderr)
        return 2 if isinstance(e, ValueError) else 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    sizes = " ".join(f"@{k.split('@')[1]}={v:.2f}" if k.startswith("test_acc@") else f"@{k.split('@')[1]}=na"
                     for k, v in result.items() if "@" in k)
    print(f"test_acc {result['test_acc']:.2f}%  val_acc {result['val_acc']:.2f}% (best {result['best_val_acc']:.2f}%)"
          f"  {result['params'] / 1e6:.2f}M params  {result['macs'] / 1e6:.1f}M MACs"
          f"  {result['images_per_s']:.0f} img/s  {result['wall_s']:.0f}s  {sizes}  -> {cfg.run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
