"""The package's import graph, lazy imports included: no cycle, and no module importing one from a
layer above it (data flows one way: read, encode, train, predict, report, serve, command line)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "mlabel"

# Lowest first. A module may import modules of its own layer or of a lower one.
LAYERS = [
    {"errors", "faults"},
    {
        "atomic",
        "extras",
        "config",
        "batching",
        "limits",
        "decision",
        "tablefile",
        "arrowdata",
        "docdir",
        "subjects",
        "tables",
        "cells",
        "labellists",
    },
    {"runtime", "folder", "runlock"},
    {"data", "metrics", "encoding", "dropout", "output"},
    {"model", "baseline", "reports.render", "selection", "split"},
    {"engines", "checkpoint", "optim", "distributed", "finalize", "adapt"},
    {"reports.profile", "reports.data_plots", "reports.curves"},
    {"training", "predict", "reports.evaluation"},
    {"callbacks", "evaluation", "export", "tracking", "explain"},
    {"classifier", "tune", "serve", "ray_predict", "annif_api"},
    {"cli"},
]


def module_names() -> dict[str, Path]:
    """'predict' -> src/mlabel/predict.py; a package's __init__ is the package ('reports')."""
    found = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name or "__init__"] = path
    return found


def imports(path: Path, known: set[str]) -> set[str]:
    """The package modules `path` imports anywhere in its body (inside functions too)."""
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name.startswith("mlabel."):
                inner = name.removeprefix("mlabel.")
                while inner and inner not in known:
                    inner = inner.rpartition(".")[0]
                if inner:
                    targets.add(inner)
    return targets


def layer_of(name: str) -> int:
    for i, layer in enumerate(LAYERS):
        if name in layer or name.split(".")[0] in layer:
            return i
    raise AssertionError(f"module mlabel.{name} is in no layer: add it to LAYERS in {__file__}")


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = module_names()
    skip = {"__init__", "__main__", "reports"}  # lazy front doors, and a docstring-only package
    return {
        name: imports(path, set(modules)) - {name, "reports"}
        for name, path in modules.items()
        if name not in skip
    }


def test_no_module_imports_a_layer_above_it(graph):
    upward = [
        f"mlabel.{a} imports mlabel.{b}"
        for a, targets in graph.items()
        for b in targets
        if layer_of(b) > layer_of(a) and not (a.startswith("cli") and b.startswith("cli"))
    ]
    assert not upward, "; ".join(sorted(upward))


def test_no_import_cycle(graph):
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt) :] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])


def test_the_checks_see_lazy_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from mlabel.predict import Predictor\n")
    assert imports(module, {"predict"}) == {"predict"}
