"""The studio's models (document, commands, list model, error index, data-set session) import no
widgets and no matplotlib, directly or through another module, so they run and are tested without a window.
The other layer rules are import-linter contracts in pyproject.toml, run by `make test`."""

from __future__ import annotations

import ast
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("fkp_studio.document", "fkp_studio.commands", "fkp_studio.image_list", "fkp_studio.error_index",
          "fkp_studio.session")
FORBIDDEN = ("PySide6.QtWidgets", "matplotlib")


def _external_imports(module: str) -> set[str]:
    path = ROOT / (module.replace(".", "/") + ".py")
    if not path.is_file():
        path = path.with_suffix("") / "__init__.py"
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_the_studio_models_import_no_widgets():
    graph = grimp.build_graph("fkp_studio", "engine")
    for model in MODELS:
        for module in {model} | graph.find_upstream_modules(model):
            bad = [n for n in _external_imports(module) if n.startswith(FORBIDDEN)]
            assert not bad, f"{model} imports {bad} (through {module})"
