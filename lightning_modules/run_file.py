"""One run described by a JSON file: ``python -m lightning_modules.run_file RUN.json``.

This is how a program that is not itself a training script (a sweep worker) starts a run on several devices:
Lightning's DDP launcher starts the extra local ranks by re-running the current command, so the command must be
one that does nothing but this run. The file holds ``dataclasses.asdict(RunConfig)`` (the ``run`` entry of a run's
``config.json`` has the same form). A bad file or config is one line on stderr and exit status 2.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .recipe import Recipe

__all__ = ["load_run_config", "main", "save_run_config"]


def save_run_config(cfg: Any, path: str | Path) -> None:
    """Write ``cfg`` (a RunConfig) as JSON."""
    Path(path).write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")


def load_run_config(path: str | Path) -> Any:
    """The RunConfig a JSON file describes; ValueError naming the file when it does not."""
    from .run_config import RunConfig

    try:
        fields = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable run config ({e})") from None
    if not isinstance(fields, dict):
        raise ValueError(f"{path}: not a run config (expected a JSON object)")
    fields = dict(fields)
    fields["recipe"] = Recipe.from_flat(fields.get("recipe", {}))
    fields["eval_sizes"] = tuple(fields.get("eval_sizes", ()))
    try:
        return RunConfig(**fields)
    except TypeError as e:
        raise ValueError(f"{path}: {e}") from None


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    prog = "python -m lightning_modules.run_file"
    if len(argv) != 1:
        print(f"{prog}: error: expected one argument, the run config JSON file", file=sys.stderr)
        return 2
    from .classifier import DivergedError
    from .runner import run

    try:
        run(load_run_config(argv[0]))
    except (ValueError, DivergedError) as e:
        print(f"{prog}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2 if isinstance(e, ValueError) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
