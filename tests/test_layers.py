"""The arrows of docs/DESIGN.md, read off the code: each layer imports only the layers above it (lazy imports inside
functions included), and no two modules of one package import each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LAYERS = ["hiremlp", "lightning_modules", "ablations", "analysis", "sweeps"]  # each may import those before it


def _imports(path: Path) -> set[str]:
    """Every module this file imports, at the top or inside a function, as dotted names."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
        elif isinstance(node, ast.ImportFrom) and node.level == 1:
            package = path.parent.name
            out |= {f"{package}.{node.module}"} if node.module else {f"{package}.{a.name}" for a in node.names}
    return out


@pytest.mark.parametrize("layer", LAYERS)
def test_each_layer_imports_only_the_layers_above_it(layer: str) -> None:
    below = set(LAYERS[LAYERS.index(layer) + 1:])
    wrong = sorted(f"{path.relative_to(REPO)} imports {name}" for path in (REPO / layer).glob("*.py")
                   for name in _imports(path) if name.split(".")[0] in below)
    assert not wrong, wrong


@pytest.mark.parametrize("package", LAYERS)
def test_no_two_modules_of_a_package_import_each_other(package: str) -> None:
    modules = {p.stem: p for p in (REPO / package).glob("*.py")}
    uses = {m: {n.split(".")[1] for n in _imports(p) if n.startswith(f"{package}.") and n.split(".")[1] in modules}
            for m, p in modules.items()}
    cycles = sorted({tuple(sorted((a, b))) for a, used in uses.items() for b in used if a != b and a in uses[b]})
    assert not cycles, cycles


def test_the_check_sees_an_import_against_the_arrows(tmp_path: Path) -> None:
    """The reader finds a lazy import inside a function, and a relative one."""
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from sweeps.grid import cells\n    return cells\nfrom .grid import spec\n")
    assert {"sweeps.grid", "sweeps.grid.cells", f"{tmp_path.name}.grid"} <= _imports(f)
