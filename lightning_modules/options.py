"""Command-line options generated from dataclass fields: one ``--field-name`` per field, parsed by its annotation.

Both command lines (``python -m lightning_modules.train`` and ``sweeps/run.py``) build their recipe options here
from ``Recipe``'s fields, so a new recipe knob is an option of both without another edit. Parsing command-line
strings lives here, with the command line, not in the model or the recipe.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

__all__ = ["OneLineParser", "add_field_options", "flag", "parse_bool", "parse_sizes", "values_of"]


class OneLineParser(argparse.ArgumentParser):
    """Bad input is one line on stderr and exit status 2 (not usage + error): ``<prog>: error: ...``, or
    ``error: ...`` with ``name_prog=False`` (the sweep's own errors read so)."""

    def __init__(self, *args: Any, name_prog: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.name_prog = name_prog

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog + ': ' if self.name_prog else ''}error: {message}\n")


def parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def parse_sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in text.replace(" ", "").split(",") if s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated sizes like 24,28,32, got {text!r}") from None


def _optional(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def f(text: str) -> Any:
        return None if text.strip().lower() in ("", "none", "all") else parse(text)

    f.__name__ = parse.__name__  # argparse names the type in its "invalid <type> value" message
    return f


def _auto_or_bool(text: str) -> bool | str:
    return "auto" if text.strip().lower() == "auto" else parse_bool(text)


_PARSERS: dict[str, Callable[[str], Any]] = {
    "int": int, "float": float, "str": str, "bool": parse_bool,
    "int | None": _optional(int), "float | None": _optional(float), "str | None": _optional(str),
    "bool | str": _auto_or_bool, "tuple[int, ...]": parse_sizes,
}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_field_options(group: argparse._ActionsContainer, cls: type, *, skip: Iterable[str] = (),
                      only: Iterable[str] | None = None, dest_prefix: str = "", defaults: bool = False,
                      shown: Any = None, shown_as: str = "") -> list[str]:
    """One option per field of dataclass ``cls`` (``only`` those, except ``skip``); returns the field names added.

    With ``defaults`` an option's default is the field's default; otherwise an option not given is absent from
    the parsed namespace (``argparse.SUPPRESS``), so callers apply only what the user typed. ``shown``: an instance
    of ``cls`` whose values the help states as the defaults (a sweep's protocol, not the dataclass's), followed by
    ``shown_as`` (", protocol cpu's"). A field's
    ``help`` metadata is its help text; a bool field's option alone means true (``--download``).
    """
    only = None if only is None else set(only)
    added = []
    for f in dataclasses.fields(cls):
        if f.name in skip or (only is not None and f.name not in only):
            continue
        parse = _PARSERS.get(str(f.type))
        if parse is None:
            raise TypeError(f"{cls.__name__}.{f.name}: no command-line parser for type {f.type}")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        said = f"{default!r}"
        if shown is not None:
            default = getattr(shown, f.name)
            said = f"{default!r}{shown_as}"
        text = f.metadata.get("help", "")
        allowed = f.metadata.get("allowed")
        help_ = f"{text} ({allowed}; default {said})" if allowed else (
            f"{text} (default {said})" if text else f"default {said}")
        flag_only = {"nargs": "?", "const": True} if str(f.type) == "bool" else {}
        group.add_argument(flag(f.name), dest=dest_prefix + f.name, type=parse,
                           default=default if defaults else argparse.SUPPRESS, help=help_.replace("%", "%%"),
                           metavar=f.name.upper(), **flag_only)
        added.append(f.name)
    return added


def values_of(args: argparse.Namespace, names: Iterable[str], dest_prefix: str = "") -> dict[str, Any]:
    """The options among ``names`` the user gave, keyed by field name."""
    ns = vars(args)
    return {n: ns[dest_prefix + n] for n in names if dest_prefix + n in ns}
