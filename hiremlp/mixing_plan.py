"""What every spatial branch of every block mixes at one input size, and when two configs are the same network.

The plan follows the module's own order of operations (``SpatialBranch``, ``cross_region.py``): with the shifted
manner the branch's axis is rolled by ``+s``, padded at its end by ``(p - n % p) % p`` rows (zeros, or copies of
rows of the rolled map), cut into regions of ``p`` adjacent positions, and the output is cropped and rolled back;
with the ShuffleNet manner the axis is padded first and read in :func:`~hiremlp.cross_region.shuffle_order`.
A region is a tuple of slots in the order the inner-region MLP sees them; a slot holds a true row of the map
(whose output is kept) or a padding slot (a copy of a true row, or zero; its output is cropped away).
``tests/test_mixing_plan.py`` holds this against autograd receptive fields of the real module.

**When two branches are the same network.** The inner-region MLP of an axis has one set of weights, shared by
every region of that axis (and every column/row across it), with one weight block per slot position.

* Regions' order does not matter (the same MLP runs on each), and neither does an order of slot positions
  applied to every region alike (it only permutes the weight blocks).
* With two or more regions the exact content of each slot matters: a slot's weights also act on true rows in
  the other regions, so zero padding and a copy of a row (replicate, circular, reflect) are different networks
  even when the padding fills a single slot.
* With one region on the axis (``n <= p``), that region mixes all ``n`` true rows whatever ``p``, their order and
  the padding: copies of a row only add weight blocks acting on the same input (their sum is one free weight),
  zero slots have no input, and padded outputs are cropped. So ``p = 2`` and ``p = 3`` on a 2-row map are one
  network (they differ in parameter count and initialisation, not in the functions they can represent).
* With ``p = 1`` (no inner region) every row is its own region and a shift is exactly undone.

Two configs are the same network at a size when every field that is not about mixing agrees
(:data:`MIXING_FIELDS` lists those that are) and every block's h and w branches have equal canonical forms.
A block's cross-region step is *inert* on a branch when the branch's canonical form equals that of the same block
without the step: a roll by a multiple of the map, a shift that moves whole regions onto each other, a shuffle of
one region.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, fields

from .config import MIXER_FIELDS, HireMLPConfig
from .counting import check_input_size, map_sizes
from .cross_region import pad_amount, shuffle_order

#: Config fields that only change which rows the h/w branches mix; every other field (``impl`` aside, which is
#: arithmetic, not model) must agree for two configs to be the same network.
MIXING_FIELDS = ("region_sizes", "shift_steps", "shift_schedule", "shift_cycle", "cross_region", "padding",
                 "inner_region")
NOT_MODEL_FIELDS = ("impl",)


@dataclass(frozen=True)
class Slot:
    """One position of a region: the true row (column) whose value it holds, and whether it is padding.

    ``source`` is None for zero padding. A padding slot's output is cropped away; a true slot's output goes back
    to row ``source``.
    """

    source: int | None
    padded: bool = False

    def key(self) -> tuple[int, int]:
        return (int(self.padded), -1 if self.source is None else self.source)

    def text(self) -> str:
        if self.source is None:
            return "_"
        return f"{self.source}'" if self.padded else str(self.source)


Region = tuple[Slot, ...]


@dataclass(frozen=True)
class BranchPlan:
    """The regions one h (``axis='h'``) or w branch mixes on an axis of ``length`` true rows (columns)."""

    axis: str
    length: int
    region: int
    step: int
    manner: str  # what runs in this block: 'shift', 'shuffle' or 'none'
    padding: str
    regions: tuple[Region, ...]

    @property
    def pad(self) -> int:
        return pad_amount(self.length, self.region)

    def reach(self, row: int) -> frozenset[int]:
        """The true rows that output row ``row`` depends on: every input slot of its region but zeros."""
        for region in self.regions:
            if Slot(row) in region:
                return frozenset(s.source for s in region if s.source is not None)
        raise ValueError(f"row {row} is outside an axis of {self.length}")

    def canonical(self) -> Hashable:
        """Equal for two branch plans exactly when they are the same network (module docstring)."""
        if len(self.regions) == 1:
            return ("one region", self.length)
        first = next(r for r in self.regions if Slot(0) in r)  # holds true row 0 in every equivalent plan
        keys = [s.key() for s in first]
        # slot orders that sort the region holding row 0; ties (repeated slots) are tried in every order
        groups: dict[tuple[int, int], list[int]] = {}
        for position in sorted(range(self.region), key=lambda k: keys[k]):
            groups.setdefault(keys[position], []).append(position)
        best = None
        for parts in itertools.product(*(itertools.permutations(g) for g in groups.values())):
            order = [k for part in parts for k in part]
            form = tuple(sorted(tuple(region[k].key() for k in order) for region in self.regions))
            best = form if best is None or form < best else best
        return ("regions", self.region, best)

    def text(self) -> str:
        """``[7 0 1][2 3 4][5 6 7']``: true rows in slot order, ``r'`` a padding copy of row r, ``_`` a zero."""
        return "".join("[" + " ".join(s.text() for s in region) + "]" for region in self.regions)


def branch_plan(length: int, region: int, step: int = 0, cross_region: str = "shift", padding: str = "circular",
                axis: str = "h") -> BranchPlan:
    """The regions of one branch, from the module's order of operations (shift, pad, shuffle, regions)."""
    if length < 1 or region < 1 or step < 0:
        raise ValueError(f"length={length}, region={region}, step={step}: need length, region >= 1, step >= 0")
    manner = ("shift" if cross_region == "shift" and step else
              "shuffle" if cross_region == "shuffle" and step and region > 1 else "none")
    n, pad = length, pad_amount(length, region)
    roll = step if manner == "shift" else 0

    def true(i: int) -> int:  # the row at position i of the rolled map
        return (i - roll) % n

    slots = [Slot(true(i)) for i in range(n)]
    for i in range(n, n + pad):
        source = {"zero": None, "circular": i - n, "replicate": n - 1, "reflect": 2 * (n - 1) - i}[padding]
        slots.append(Slot(None if source is None else true(source), padded=True))
    if manner == "shuffle":
        slots = [slots[k] for k in shuffle_order(n + pad, region).tolist()]
    regions = tuple(tuple(slots[g:g + region]) for g in range(0, n + pad, region))
    return BranchPlan(axis, n, region, step, manner, padding, regions)


@dataclass(frozen=True)
class BlockPlan:
    """One block's step and its h and w branch plans (None for a branch that is off)."""

    stage: int  # 1-based
    block: int  # 1-based
    step: int
    h: BranchPlan | None
    w: BranchPlan | None

    def branches(self) -> dict[str, BranchPlan]:
        return {name: plan for name, plan in (("h", self.h), ("w", self.w)) if plan is not None}

    def canonical(self) -> Hashable:
        return tuple(None if plan is None else plan.canonical() for plan in (self.h, self.w))


def mixing_plan(cfg: HireMLPConfig, image_size: int | tuple[int, int]) -> list[list[BlockPlan]]:
    """Per stage, per block: what the h and w branches mix at ``image_size``. ValueError if it cannot run."""
    check_input_size(cfg, image_size)
    stages = []
    for i, (h, w) in enumerate(map_sizes(cfg, image_size)):
        rh, rw = cfg.region_sizes[i] if cfg.inner_region else (1, 1)
        blocks = []
        for b, step in enumerate(cfg.block_steps(i)):
            if cfg.mixer != "hire":  # no regions: `network_form` tells mixers apart by the `mixer` field
                blocks.append(BlockPlan(i + 1, b + 1, 0, None, None))
                continue
            hp = branch_plan(h, rh, step, cfg.cross_region, cfg.padding, "h") if "h" in cfg.branches else None
            wp = branch_plan(w, rw, step, cfg.cross_region, cfg.padding, "w") if "w" in cfg.branches else None
            blocks.append(BlockPlan(i + 1, b + 1, step, hp, wp))
        stages.append(blocks)
    return stages


@dataclass(frozen=True)
class InertStep:
    """A block whose cross-region step changes nothing its branch ``axis`` mixes."""

    stage: int
    block: int
    axis: str
    step: int
    manner: str
    length: int
    region: int

    def text(self) -> str:
        return (f"stage {self.stage} block {self.block} {self.axis}: {self.manner} {self.step} on {self.length} "
                f"{'rows' if self.axis == 'h' else 'columns'}, regions of {self.region}")


def is_inert(plan: BranchPlan) -> bool:
    """True when the plan's cross-region step mixes exactly what the same branch mixes without it."""
    if plan.manner == "none":
        return False
    still = branch_plan(plan.length, plan.region, 0, "none", plan.padding, plan.axis)
    return plan.canonical() == still.canonical()


def inert_steps(cfg: HireMLPConfig, image_size: int | tuple[int, int]) -> list[InertStep]:
    """Every (block, branch) whose cross-region step is inert at ``image_size``."""
    found = []
    for blocks in mixing_plan(cfg, image_size):
        for block in blocks:
            for axis, plan in block.branches().items():
                if is_inert(plan):
                    found.append(InertStep(block.stage, block.block, axis, plan.step, plan.manner, plan.length,
                                           plan.region))
    return found


def model_fields(cfg: HireMLPConfig) -> dict[str, object]:
    """The fields that are neither mixing nor arithmetic: they must agree for two configs to be one network."""
    skip = set(MIXING_FIELDS) | set(NOT_MODEL_FIELDS)
    skip |= {n for mixer, names in MIXER_FIELDS.items() if mixer != cfg.mixer for n in names}
    return {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name not in skip}


def network_form(cfg: HireMLPConfig, image_size: int | tuple[int, int]) -> Hashable:
    """Equal for two configs exactly when they are the same network at ``image_size`` (module docstring)."""
    stages = tuple(tuple(b.canonical() for b in blocks) for blocks in mixing_plan(cfg, image_size))
    return (tuple(sorted(model_fields(cfg).items())), stages)


def same_network(a: HireMLPConfig, b: HireMLPConfig, image_size: int | tuple[int, int]) -> bool:
    return network_form(a, image_size) == network_form(b, image_size)


def differences(a: HireMLPConfig, b: HireMLPConfig, image_size: int | tuple[int, int]) -> tuple[list[str], list[int]]:
    """(non-mixing fields that differ, 1-based stages whose mixing differs) between two configs."""
    fa, fb = model_fields(a), model_fields(b)
    changed = [name for name in fa if fa[name] != fb[name]]
    if a.depths != b.depths:
        return changed, list(range(1, max(a.num_stages, b.num_stages) + 1))
    pa, pb = mixing_plan(a, image_size), mixing_plan(b, image_size)
    stages = [blocks_a[0].stage for blocks_a, blocks_b in zip(pa, pb, strict=True)
              if [x.canonical() for x in blocks_a] != [y.canonical() for y in blocks_b]]
    return changed, stages


@dataclass(frozen=True)
class RowFinding:
    """What the mixing plan says about one row of a table at one size."""

    label: str
    reason: str | None = None  # why the row cannot run at this size (None: it can)
    changed_fields: tuple[str, ...] = ()  # non-mixing fields that differ from the default row
    changed_stages: tuple[int, ...] = ()  # stages whose mixing differs from the default row
    same_as: tuple[str, ...] = ()  # other rows that are the same network at this size
    inert: tuple[InertStep, ...] = ()  # inert cross-region steps at this size ...
    inert_here_only: tuple[InertStep, ...] = ()  # ... and those the reference size does not have

    def difference_text(self) -> str:
        parts = ([f"fields {', '.join(self.changed_fields)}"] if self.changed_fields else []) + (
            [f"stage{'s' if len(self.changed_stages) > 1 else ''} {','.join(map(str, self.changed_stages))}"]
            if self.changed_stages else [])
        return "; ".join(parts) if parts else "nothing"


def compare_rows(configs: Mapping[str, HireMLPConfig], image_size: int, default: str,
                 reference: Mapping[str, HireMLPConfig] | None = None, reference_size: int = 224,
                 ) -> dict[str, RowFinding]:
    """Per row: what differs from the ``default`` row, which other rows are the same network, which steps are inert.

    ``reference`` holds the same rows on the paper's model (e.g. ``small`` at ``reference_size``); an inert step
    is listed in ``inert_here_only`` unless the same branch (stage, axis, step) is inert there too.
    """
    forms, reasons = {}, {}
    for label, cfg in configs.items():
        try:
            forms[label] = network_form(cfg, image_size)
        except ValueError as e:
            reasons[label] = str(e)
    base = configs.get(default)
    out = {}
    for label, cfg in configs.items():
        if label in reasons:
            out[label] = RowFinding(label, reason=reasons[label])
            continue
        same = tuple(other for other in forms if other != label and forms[other] == forms[label])
        changed_fields, changed_stages = ((), ()) if base is None or default in reasons else (
            tuple(x) for x in differences(base, cfg, image_size))
        inert = tuple(inert_steps(cfg, image_size))
        here_only = inert
        if reference is not None and label in reference:
            here_only = tuple(s for s in inert if not _inert_at(reference[label], reference_size, s))
        out[label] = RowFinding(label, None, changed_fields, changed_stages, same, inert, here_only)
    return out


def _inert_at(cfg: HireMLPConfig, image_size: int, step: InertStep) -> bool:
    """Whether ``step``'s branch (same stage, axis and step) is inert in ``cfg`` at ``image_size``."""
    try:
        check_input_size(cfg, image_size)
    except ValueError:
        return False
    h, w = map_sizes(cfg, image_size)[step.stage - 1]
    rh, rw = cfg.region_sizes[step.stage - 1] if cfg.inner_region else (1, 1)
    length, region = (h, rh) if step.axis == "h" else (w, rw)
    return is_inert(branch_plan(length, region, step.step, cfg.cross_region, cfg.padding, step.axis))


def plan_text(cfg: HireMLPConfig, image_size: int | tuple[int, int]) -> str:
    """The plan per stage and block, as `python -m hiremlp --plan NAME` prints it."""
    lines = [f"at {image_size} px: each [...] is a region, true rows (columns) in the order the inner-region MLP "
             "sees them; r' is a padding copy of row r, _ a zero; the output of padding is cropped"]
    for blocks in mixing_plan(cfg, image_size):
        first = blocks[0].branches()
        shapes = {axis: f"{p.length} in {len(p.regions)} region{'s' if len(p.regions) > 1 else ''} of {p.region}, "
                        f"pad {p.pad}" for axis, p in first.items()}
        if len(shapes) == 2 and shapes["h"] == shapes["w"]:
            geometry = f"h, w: {shapes['h']}".replace(" in ", " rows/columns in ", 1)
        else:
            geometry = "; ".join(f"{axis}: " + text.replace(" in ", " rows in " if axis == "h" else " columns in ", 1)
                                 for axis, text in shapes.items())
        lines.append(f"stage {blocks[0].stage}: {geometry or 'no h/w branch'}; padding {cfg.padding}, "
                     f"steps per block {','.join(str(b.step) for b in blocks)}")
        for block in blocks:
            plans = block.branches()
            texts = {axis: p.text() + ("  (inert: mixes what step 0 mixes)" if is_inert(p) else "")
                     for axis, p in plans.items()}
            manner = next((p.manner for p in plans.values()), "none")
            head = f"  block {block.block} step {block.step}" + (f" ({manner})" if manner != "none" else "")
            if len(set(texts.values())) == 1 and len(texts) == 2:
                lines.append(f"{head} h, w: {texts['h']}")
            else:
                lines += [f"{head} {axis}: {text}" for axis, text in texts.items()]
    return "\n".join(lines)
