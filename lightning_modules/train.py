"""Command line for one run: ``python -m lightning_modules.train --preset cifar_tiny --epochs 100 --padding zero``.

Every ``RunConfig`` field, every ``Recipe`` field (over the base ``--recipe``, default ``paper``) and every
``HireMLPConfig`` field is an option (``--field-name value``); model fields are passed through as strings, which
``HireMLPConfig`` parses and validates ("4,3,3,2", "4x2,3,3,2", "h,w").
Bad input gives one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

import hiremlp

from .classifier import DivergedError
from .options import OneLineParser, add_field_options, parse_bool, values_of
from .recipe import RECIPES, Recipe, get_recipe, recipe_fields
from .run_config import PROGRESS_MODES, RunConfig
from .runner import default_run_dir, run

_RUN_ONLY = {"model_overrides", "recipe"}
_MODEL_SKIP = {"num_classes"}  # follows the dataset


def _progress(text: str) -> str:
    low = text.strip().lower()
    if low in PROGRESS_MODES:
        return low
    try:
        return "auto" if parse_bool(low) else "off"
    except (argparse.ArgumentTypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(PROGRESS_MODES)}, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m lightning_modules.train", description="Train one Hire-MLP on CIFAR.",
                allow_abbrev=False)
    run_group = p.add_argument_group("run")
    add_field_options(run_group, RunConfig, skip=_RUN_ONLY | {"progress"}, defaults=True)
    run_group.add_argument("--progress", type=_progress, default="auto",
                           help="auto (default): a bar on a terminal, a line per epoch otherwise; bar, lines or off")
    recipe_group = p.add_argument_group("recipe (each option overrides one field of --recipe)")
    recipe_group.add_argument("--recipe", default="paper",
                              help=f"the base recipe: {', '.join(RECIPES)} (default 'paper')")
    add_field_options(recipe_group, Recipe, dest_prefix="recipe.")
    model_group = p.add_argument_group("model (HireMLPConfig fields, default: the preset's)")
    for f in dataclasses.fields(hiremlp.HireMLPConfig):
        if f.name not in _MODEL_SKIP:
            model_group.add_argument("--" + f.name.replace("_", "-"), dest="model." + f.name, default=None)
    return p


def config_from_args(argv: Sequence[str] | None = None) -> RunConfig:
    args = build_parser().parse_args(argv)
    ns = vars(args)
    overrides = {k.removeprefix("model."): v for k, v in ns.items() if k.startswith("model.") and v is not None}
    recipe = get_recipe(ns.pop("recipe")).replace(**values_of(args, recipe_fields(), "recipe."))
    fields = {k: v for k, v in ns.items() if not k.startswith(("model.", "recipe."))}
    fields["run_dir"] = fields["run_dir"] or default_run_dir()
    return RunConfig(**fields, recipe=recipe, model_overrides=overrides)


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
