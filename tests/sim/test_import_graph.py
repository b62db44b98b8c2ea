"""The simulator's import graph, read from the source so TYPE_CHECKING and function-level imports count:
no cycles, nothing from the rest of harvester, and market below wire below the gateway."""

from __future__ import annotations

import ast
import importlib.util
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

PACKAGE = "harvester.sim"
ROOT = Path(importlib.util.find_spec(PACKAGE).origin).parent  # found, not imported: a cycle may break import


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join((PACKAGE, *parts[: -1 if parts[-1] == "__init__" else None]))


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def imported(name: str) -> set[str]:
    """Every harvester module `name` imports anywhere in its source (absolute imports only)."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{name}: relative import"
            found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                      for a in node.names}  # fmt: skip
    return {n for n in found if n == "harvester" or n.startswith("harvester.")}


GRAPH = {name: imported(name) - {name} for name in MODULES}


def test_no_import_cycle_inside_the_simulator():
    try:
        TopologicalSorter(GRAPH).prepare()
    except CycleError as exc:
        chain = reversed(exc.args[1])  # the sorter lists each module before the ones importing it
        raise AssertionError(f"import cycle (a -> b: a imports b): {' -> '.join(chain)}") from None


def test_the_simulator_imports_nothing_from_the_rest_of_harvester():
    outside = {(name, dep) for name, deps in GRAPH.items() for dep in deps if dep not in MODULES}
    assert not outside


def in_room(name: str, *rooms: str) -> bool:
    return any(name == f"{PACKAGE}.{room}" or name.startswith(f"{PACKAGE}.{room}.") for room in rooms)


def test_market_knows_no_wire_and_wire_no_gateway():
    for name, deps in GRAPH.items():
        if in_room(name, "market"):
            assert all(in_room(d, "market") for d in deps), (name, deps)
        if in_room(name, "wire"):
            assert all(in_room(d, "market", "wire") for d in deps), (name, deps)
