"""The layering of docs/architecture.md, checked by parsing every import in src/vaekit with ``ast``: module-level
imports, imports inside functions and ``if TYPE_CHECKING:`` blocks all count (a lazy import is still a
dependency). A rule names the importing parts of vaekit and what they must not import.

* the model and its parts (model.py, networks, posteriors, priors, likelihoods, bounds) import nothing that
  trains, evaluates, saves, reports or parses the command line;
* evaluation does not import the trainer;
* checkpoints build models through ``vaekit.model``'s functions and registries, never a model class;
* the report does not import the API.
"""

from __future__ import annotations

import ast
import importlib
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "vaekit"


@dataclass(frozen=True)
class Imported:
    """One imported module (``vaekit.x.y``), the names taken from it (``from M import a, b``; empty for
    ``import M``), and where."""

    module: str
    names: tuple[str, ...]
    where: str


def module_of(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (SRC / rel).with_suffix(".py").is_file() or (SRC / rel / "__init__.py").is_file()


def imports_in(source: str, module: str, is_package: bool, filename: str = "<source>") -> list[Imported]:
    """Every import in ``source`` (the text of ``module``), wherever it is in the file. ``from M import a``
    where M.a is itself a module counts as an import of M.a; relative imports are resolved against ``module``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            found += [Imported(alias.name, (), where) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[:len(package) - (node.level - 1)]
                base = ".".join([*package, base] if base else package)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append(Imported(sub, (), where) if is_module(sub) else Imported(base, (alias.name,), where))
    return found


def all_imports() -> dict[str, list[Imported]]:
    """{module: its imports of vaekit modules} over src/vaekit."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_of(path)
        found = imports_in(path.read_text(encoding="utf-8"), module, path.name == "__init__.py",
                           str(path.relative_to(SRC.parent)))
        out[module] = [i for i in found if i.module == "vaekit" or i.module.startswith("vaekit.")]
    return out


IMPORTS = all_imports()


def component(module: str) -> str:
    """The part of vaekit a module belongs to: ``vaekit.report.single`` -> ``report``, ``vaekit.model`` ->
    ``model``, ``vaekit`` -> ``vaekit``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def violations(importers: set[str], forbidden: set[str]) -> list[str]:
    return sorted({f"{imp.where}: {module} imports {imp.module}"
                   for module, found in IMPORTS.items() if component(module) in importers
                   for imp in found if component(imp.module) in forbidden})


def reachable(importers: set[str]) -> set[str]:
    """Every vaekit module that the modules of ``importers`` import, directly or through others."""
    seen: set[str] = set()
    todo = [m for m in IMPORTS if component(m) in importers]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        for imp in IMPORTS[module]:
            target = imp.module
            while target not in IMPORTS and "." in target:  # vaekit.x.name -> vaekit.x
                target = target.rsplit(".", 1)[0]
            todo.append(target)
    return seen


MODEL_PARTS = {"model", "networks", "posteriors", "priors", "likelihoods", "bounds"}
ABOVE_THE_MODEL = {"objectives", "train", "evaluate", "checkpoint", "report", "api", "cli"}

RULES = [
    pytest.param(MODEL_PARTS, ABOVE_THE_MODEL, id="model-parts-import-nothing-above-them"),
    pytest.param({"evaluate"}, {"train"}, id="evaluate-does-not-import-train"),
    pytest.param({"report"}, {"api"}, id="report-does-not-import-api"),
]


@pytest.mark.parametrize(("importers", "forbidden"), RULES)
def test_layering_rule(importers, forbidden):
    assert importers <= {component(m) for m in IMPORTS}, "a rule names a part that does not exist"
    assert violations(importers, forbidden) == []


def test_model_parts_reach_nothing_above_them_through_other_modules():
    reached = reachable(MODEL_PARTS)
    assert {"vaekit.bounds", "vaekit.inputs", "vaekit.config"} <= reached
    assert sorted(m for m in reached if component(m) in ABOVE_THE_MODEL) == []


def test_checkpoint_builds_models_through_functions_and_registries_only():
    """checkpoint takes from vaekit.model only functions and registries (build_model, MODEL_FAMILIES, ...),
    never a model class, and imports no other module that defines one."""
    model = importlib.import_module("vaekit.model")
    taken = [(imp, name) for imp in IMPORTS["vaekit.checkpoint"] if imp.module == "vaekit.model" for name in imp.names]
    assert taken, "checkpoint is expected to build models through vaekit.model"
    assert all(imp.names for imp in IMPORTS["vaekit.checkpoint"] if imp.module == "vaekit.model"), \
        "import the functions by name, not the module"
    classes = [f"{imp.where}: {name}" for imp, name in taken if isinstance(getattr(model, name), type)]
    assert classes == []
    parts = [f"{imp.where}: {imp.module}" for imp in IMPORTS["vaekit.checkpoint"]
             if component(imp.module) in MODEL_PARTS - {"model"}]
    assert parts == []


def test_the_parser_sees_module_level_function_level_and_relative_imports():
    source = (
        "import vaekit.train\n"
        "from vaekit import probes, errors\n"
        "from . import html\n"
        "from .latent import Encoded\n"
        "def f():\n"
        "    from vaekit.api import load_run\n"
        "if True:\n"
        "    from .. import checkpoint\n"
    )
    found = {(i.module, i.names) for i in imports_in(source, "vaekit.report.single", False)}
    assert found == {("vaekit.train", ()), ("vaekit.probes", ()), ("vaekit.errors", ()), ("vaekit.report.html", ()),
                     ("vaekit.report.latent", ("Encoded",)), ("vaekit.api", ("load_run",)), ("vaekit.checkpoint", ())}
    real = {imp.module for imp in IMPORTS["vaekit.model"]}
    assert {"vaekit.bounds", "vaekit.priors", "vaekit.likelihoods", "vaekit.networks"} <= real
    assert {"vaekit.networks.mlp"} <= {imp.module for imp in IMPORTS["vaekit.networks"]}  # a package's own import
    assert len(IMPORTS) >= 30  # every module of the package was read
