"""The package's layering: imports run one way, with no circles (checked on the source with ast)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "icl_lab"

# Lower layers never import higher ones. The top-level utilities (config, io, manifest, results)
# sit below everything; a task says which model it trains, so tasks sit above models.
LAYERS = ("config io manifest results", "models", "tasks", "training", "analysis", "constructions", "studies",
          "cli", "__init__")
LAYER_OF = {name: i for i, names in enumerate(LAYERS) for name in names.split()}
MAX_TOP_LEVEL_MODULES = 8


def module_name(path: Path) -> str:
  parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
  return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
  """Every icl_lab module a file imports, at module level or inside a function."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found |= {a.name for a in node.names if a.name.startswith("icl_lab")}
    elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("icl_lab"):
      for a in node.names:  # `from icl_lab.pkg import mod` imports a module; otherwise a name
        sub = f"{node.module}.{a.name}"
        found.add(sub if sub in known else node.module)
  return found


def layer(module: str) -> int:
  parts = module.split(".")
  if len(parts) == 1:
    return LAYER_OF["__init__"]
  return LAYER_OF[parts[1]]


def graph() -> dict[str, set[str]]:
  mods = modules()
  known = set(mods)
  return {m: imports_of(p, known) - {m} for m, p in mods.items()}


def test_every_module_has_a_declared_layer():
  for m in modules():
    parts = m.split(".")
    assert len(parts) == 1 or parts[1] in LAYER_OF, f"{m} is in no layer of {LAYERS}"


def test_no_module_imports_a_layer_above_its_own():
  upward = [f"{m} imports {dep}" for m, deps in graph().items() for dep in deps
            if dep.startswith("icl_lab.") and layer(dep) > layer(m)]
  assert not upward, upward


def test_no_import_circles():
  g = graph()
  state: dict[str, int] = {}  # 1 = on the current path, 2 = done

  def visit(m: str, path: list[str]) -> None:
    state[m] = 1
    for dep in sorted(g.get(m, ())):
      if dep == "icl_lab" or dep not in g:
        continue  # the package root re-exports lazily; importing it is not a circle
      if state.get(dep) == 1:
        pytest.fail("import circle: " + " -> ".join(path[path.index(dep):] + [dep]))
      if dep not in state:
        visit(dep, path + [dep])
    state[m] = 2

  for m in sorted(g):
    if m not in state:
      visit(m, [m])


def test_the_top_level_holds_few_modules():
  top = sorted(p.name for p in PACKAGE.glob("*.py"))
  assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_the_checker_sees_a_circle_and_an_upward_import(tmp_path, monkeypatch):
  """The checks above can fail: a planted circle and an upward import are both found."""
  pkg = tmp_path / "icl_lab"
  (pkg / "tasks").mkdir(parents=True)
  (pkg / "__init__.py").write_text("")
  (pkg / "tasks" / "__init__.py").write_text("")
  (pkg / "tasks" / "a.py").write_text("from icl_lab.tasks import b\nfrom icl_lab.studies import x\n")
  (pkg / "tasks" / "b.py").write_text("def f():\n  from icl_lab.tasks import a\n")
  monkeypatch.setattr(sys.modules[__name__], "PACKAGE", pkg)
  g = graph()
  assert g["icl_lab.tasks.a"] == {"icl_lab.tasks.b", "icl_lab.studies"}
  assert "icl_lab.tasks.a" in g["icl_lab.tasks.b"]
  assert layer("icl_lab.studies") > layer("icl_lab.tasks.a")
  with pytest.raises(pytest.fail.Exception, match="import circle"):
    test_no_import_circles()
