"""The studio's models (every module of `fkp_studio.models`: the state, the document, the session, the
list model, commands, the error index, the job threads, the image cache) import no widgets and no
matplotlib, directly or through another module, so they run and are tested without a window.
The other layer rules are import-linter contracts in pyproject.toml, run by `make test`."""

from __future__ import annotations

import ast
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
MODELS_PACKAGE = "fkp_studio.models"
CONTROLLERS_PACKAGE = "fkp_studio.controllers"
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
    models = graph.find_children(MODELS_PACKAGE) | {MODELS_PACKAGE}
    assert {"fkp_studio.models.state", "fkp_studio.models.document", "fkp_studio.models.session"} <= models
    for model in sorted(models):
        for module in {model} | graph.find_upstream_modules(model):
            bad = [n for n in _external_imports(module) if n.startswith(FORBIDDEN)]
            assert not bad, f"{model} imports {bad} (through {module})"


def test_the_studio_controllers_hold_no_window_and_no_widget():
    """A controller is given the state (and an object that asks the user questions), never the
    window: it imports no widget, directly or through another module, and names no window."""
    graph = grimp.build_graph("fkp_studio", "engine")
    controllers = graph.find_children(CONTROLLERS_PACKAGE)
    assert {"fkp_studio.controllers.editing", "fkp_studio.controllers.saving", "fkp_studio.controllers.predict"} <= controllers
    for controller in sorted(controllers):
        for module in {controller} | graph.find_upstream_modules(controller):
            bad = [n for n in _external_imports(module) if n.startswith(FORBIDDEN)]
            assert not bad, f"{controller} imports {bad} (through {module})"
        source = (ROOT / (controller.replace(".", "/") + ".py")).read_text(encoding="utf-8")
        assert "self.window" not in source and "main_window" not in source, controller
