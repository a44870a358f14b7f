"""One config object per model: every part the paper ablates is a field here, validated once.

Per-stage fields also accept the string forms a command line produces (``"4,3,3,2"``, ``"4x2,3,3,2"``,
``"h,w"``), so a sweep can pass overrides through without parsing them itself.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

BRANCHES = ("h", "w", "c")
PADDINGS = ("zero", "reflect", "replicate", "circular")
CROSS_REGION = ("shift", "shuffle", "none")
SHIFT_SCHEDULES = ("official", "paper")
FUSIONS = ("reweight", "sum")
NORMS = ("batch", "layer")
IMPLS = ("fast", "reference")
MIXERS = ("hire", "as_mlp", "vip", "cycle", "dwconv", "channel_only")
#: Fields that only one token mixer reads; left out of :meth:`HireMLPConfig.spec` under any other mixer.
MIXER_FIELDS = {"as_mlp": ("shift_size",), "vip": ("vip_image_size",)}

_CHOICES = {
    "padding": PADDINGS,
    "cross_region": CROSS_REGION,
    "shift_schedule": SHIFT_SCHEDULES,
    "fusion": FUSIONS,
    "norm": NORMS,
    "impl": IMPLS,
    "mixer": MIXERS,
}


def _fail(name: str, value: Any, allowed: str) -> None:
    raise ValueError(f"{name}={value!r} is not allowed: {allowed}")


def _split(value: Any) -> list:
    if isinstance(value, str):
        return [part.strip() for part in value.replace(";", ",").split(",") if part.strip()]
    if isinstance(value, (int, float)):
        return [value]
    return list(value)


def _to_int(name: str, value: Any, minimum: int, what: str, whole: Any = None) -> int:
    """``value`` as an int >= ``minimum``; errors quote ``whole`` (the field's full value) when given."""
    if whole is not None and whole != value:
        what = f"entry {value!r}: {what}"
        value_for_error = whole
    else:
        value_for_error = value
    try:
        number = int(value)
        if isinstance(value, float) and number != value:
            raise ValueError
        if isinstance(value, bool):
            raise ValueError
    except (TypeError, ValueError):
        _fail(name, value_for_error, f"{what} must be an integer >= {minimum}")
    if number < minimum:
        _fail(name, value_for_error, f"{what} must be an integer >= {minimum}")
    return number


def parse_ints(name: str, value: Any, minimum: int, stages: int | None) -> tuple[int, ...]:
    """Per-stage integers from a tuple, list or ``"2,2,1,1"``; one value per stage when ``stages`` is given."""
    items = _split(value)
    if not items:
        _fail(name, value, "give at least one integer")
    ints = tuple(_to_int(name, item, minimum, "each entry", value) for item in items)
    if stages is not None and len(ints) != stages:
        _fail(name, value, f"give one entry per stage ({stages} stages, got {len(ints)})")
    return ints


def parse_region_sizes(value: Any, stages: int) -> tuple[tuple[int, int], ...]:
    """Per-stage ``(h, w)``: ``"4,3,3,2"`` means square regions, ``"4x2,..."`` or ``[(4, 2), ...]`` rectangles."""
    name = "region_sizes"
    items: list = _split(value)
    pairs = []
    for item in items:
        if isinstance(item, str) and "x" in item.lower():
            parts = item.lower().split("x")
            if len(parts) != 2:
                _fail(name, value, "each entry is p or HxW, e.g. '4,3,3,2' or '4x2,3x3,3x3,2x2'")
            pairs.append(tuple(_to_int(name, part, 1, "each region side", value) for part in parts))
        elif isinstance(item, (tuple, list)):
            if len(item) != 2:
                _fail(name, value, "each entry is p or a pair (h, w)")
            pairs.append(tuple(_to_int(name, part, 1, "each region side", value) for part in item))
        else:
            side = _to_int(name, item, 1, "each region side", value)
            pairs.append((side, side))
    if len(pairs) != stages:
        _fail(name, value, f"give one region size per stage ({stages} stages, got {len(pairs)})")
    return tuple(pairs)


def parse_branches(value: Any) -> tuple[str, ...]:
    items = _split(value)
    if len(items) == 1 and isinstance(items[0], str) and len(items[0]) > 1 and "," not in items[0]:
        items = list(items[0])
    chosen = {str(item).strip().lower() for item in items}
    if not chosen or not chosen <= set(BRANCHES) or len(chosen) != len(items):
        _fail("branches", value, "a non-empty subset of h, w, c without repeats, e.g. 'h,w,c' or 'h,w'")
    return tuple(b for b in BRANCHES if b in chosen)


def parse_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    _fail(name, value, "true or false")
    raise AssertionError  # unreachable


def parse_float(name: str, value: Any, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not low <= number <= high:
        _fail(name, value, f"a number in [{low}, {high}]")
    return number


@dataclass(frozen=True)
class HireMLPConfig:
    """A Hire-MLP. Defaults are the released Hire-MLP-Tiny at 224 px; every ablation switch is a field.

    ``shift_schedule='official'`` gives block ``i`` of a stage the step ``(i % shift_cycle) * shift_steps``, the
    released code's rule (stage 3 cycles 0, 1, 2); ``'paper'`` gives ``shift_steps`` to every odd block and 0 to the
    rest, as the paper's text says. ``norm`` chooses the block and head norms (the released code uses BatchNorm,
    the paper's text LayerNorm); stem, downsampling and the h/w bottleneck keep BatchNorm as released.
    ``fusion='sum'`` replaces the split-attention reweighting by the paper's plain sum; the output projection stays.
    ``impl`` chooses the arithmetic, not the model: both implementations share parameters and give equal outputs.
    ``mixer`` puts another token mixer in every block's Hire module's place (``hiremlp.mixers``); the Hire-specific
    fields are then unused. ``shift_size`` is AS-MLP's number of shifted channel groups; ``vip_image_size`` the
    image size ViP's height/width weights are sized for (they hold one weight per row of the map).
    """

    embed_dims: tuple[int, ...] = (64, 128, 320, 512)
    depths: tuple[int, ...] = (2, 2, 4, 2)
    region_sizes: tuple[tuple[int, int], ...] = ((4, 4), (3, 3), (3, 3), (2, 2))
    shift_steps: tuple[int, ...] = (2, 2, 1, 1)
    shift_schedule: str = "official"
    shift_cycle: tuple[int, ...] = (2, 2, 3, 2)
    branches: tuple[str, ...] = BRANCHES
    inner_region: bool = True
    cross_region: str = "shift"
    padding: str = "circular"
    fusion: str = "reweight"
    norm: str = "batch"
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.0
    stem_kernel: int = 7
    stem_stride: int = 4
    stem_padding: int = 2
    in_chans: int = 3
    num_classes: int = 1000
    impl: str = "fast"
    mixer: str = "hire"
    shift_size: int = 5
    vip_image_size: int = 224

    def __post_init__(self) -> None:
        put = object.__setattr__
        depths = parse_ints("depths", self.depths, 1, None)
        stages = len(depths)
        put(self, "depths", depths)
        dims = parse_ints("embed_dims", self.embed_dims, 4, stages)
        put(self, "embed_dims", dims)
        put(self, "region_sizes", parse_region_sizes(self.region_sizes, stages))
        put(self, "shift_steps", parse_ints("shift_steps", self.shift_steps, 0, stages))
        put(self, "shift_cycle", parse_ints("shift_cycle", self.shift_cycle, 1, stages))
        put(self, "branches", parse_branches(self.branches))
        put(self, "inner_region", parse_bool("inner_region", self.inner_region))
        for name, allowed in _CHOICES.items():
            value = getattr(self, name)
            text = value.strip().lower() if isinstance(value, str) else value
            if text not in allowed:
                _fail(name, value, "one of " + ", ".join(allowed))
            put(self, name, text)
        put(self, "mlp_ratio", parse_float("mlp_ratio", self.mlp_ratio, 0.25, 64.0))
        put(self, "drop_path_rate", parse_float("drop_path_rate", self.drop_path_rate, 0.0, 1.0))
        for name, minimum in (("stem_kernel", 1), ("stem_stride", 1), ("stem_padding", 0), ("in_chans", 1),
                              ("num_classes", 1), ("vip_image_size", 1)):
            put(self, name, _to_int(name, getattr(self, name), minimum, name))
        shift_size = _to_int("shift_size", self.shift_size, 1, "shift_size")
        if shift_size % 2 == 0:
            _fail("shift_size", self.shift_size, "an odd integer >= 1 (groups shift by -k..k)")
        put(self, "shift_size", shift_size)

    @property
    def num_stages(self) -> int:
        return len(self.depths)

    def block_steps(self, stage: int) -> tuple[int, ...]:
        """The cross-region step of each block of ``stage`` under the chosen schedule (0 = no shift)."""
        s = self.shift_steps[stage]
        if self.cross_region == "none":
            return (0,) * self.depths[stage]
        if self.shift_schedule == "official":
            return tuple((i % self.shift_cycle[stage]) * s for i in range(self.depths[stage]))
        return tuple(s if i % 2 == 1 else 0 for i in range(self.depths[stage]))

    def replace(self, **overrides: Any) -> HireMLPConfig:
        """A copy with ``overrides`` applied; an unknown field name is a ValueError naming the allowed ones."""
        unknown = sorted(set(overrides) - set(field_names()))
        if unknown:
            raise ValueError(
                f"unknown model config field {unknown[0]!r}; allowed: {', '.join(field_names())}"
            )
        return dataclasses.replace(self, **overrides)

    def to_flat(self) -> dict[str, int | float | str | bool]:
        """Primitive values only, so Lightning hparams, Optuna attributes and CSV columns can hold them."""
        flat: dict[str, int | float | str | bool] = {}
        for name in field_names():
            value = getattr(self, name)
            if name == "region_sizes":
                value = ",".join(f"{h}x{w}" for h, w in value)
            elif isinstance(value, tuple):
                value = ",".join(str(v) for v in value)
            flat[name] = value
        return flat

    def spec(self) -> dict[str, int | float | str | bool]:
        """:meth:`to_flat` without what does not change the network: ``mixer`` when it is ``hire`` and each
        mixer's own fields under another mixer. So configs written before the mixer switch keep their study
        names (sweeps hash this), and a Hire model's spec does not depend on AS-MLP's shift size."""
        flat = self.to_flat()
        for mixer, names in MIXER_FIELDS.items():
            if self.mixer != mixer:
                for name in names:
                    flat.pop(name)
        if self.mixer == "hire":
            flat.pop("mixer")
        return flat

    @classmethod
    def from_flat(cls, flat: dict[str, Any]) -> HireMLPConfig:
        return cls().replace(**{k: v for k, v in flat.items()})


def field_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(HireMLPConfig))
