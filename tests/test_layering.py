"""The package's layering, read from its source: no import cycles, imports at module top except optional
dependencies, modules and classes small enough to read in one sitting (DESIGN.md section 6)."""
import ast
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "pddattn"
# What may be imported inside a function: dependencies a run may lack or must not start early
# (petsc4py reads its options at import; mpi4py starts MPI), and the PETSc layer from outside it.
OPTIONAL = ("petsc4py", "mpi4py", "neuralop", "h5py", "matplotlib", "tqdm", "galerkin_transformer")
MAX_MODULE_LINES = 500
MAX_CLASS_LINES = 200


def _modules():
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _target(module, path, node):
    """The pddattn module an ImportFrom reads (a submodule when it names one), else None."""
    if not node.level:
        name = node.module or ""
    else:
        base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        name = ".".join(base + ([node.module] if node.module else []))
    subs = [f"{name}.{a.name}" for a in node.names if f"{name}.{a.name}" in MODULES]
    return subs or ([name] if name in MODULES else [])


def _function_imports(tree):
    return [s for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
            for s in ast.walk(f) if isinstance(s, (ast.Import, ast.ImportFrom))]


def _graph():
    """module -> the pddattn modules it imports, at top or in a function (the root package aside:
    it only re-exports)."""
    graph = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        graph[module] = {t for s in ast.walk(tree) if isinstance(s, ast.ImportFrom)
                         for t in _target(module, path, s)} - {module}
    graph["pddattn"] = set()
    return graph


def _cycle(graph):
    """One import cycle as a list of modules, or None (depth-first search)."""
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for w in sorted(graph[m]):
            if state.get(w) == "open":
                return stack[stack.index(w):] + [w]
            if w not in state and (found := visit(w)):
                return found
        state[m] = "done"
        stack.pop()
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    assert _cycle(_graph()) is None


def _optional(module, path, node):
    if isinstance(node, ast.Import):
        return all(a.name.split(".")[0] in OPTIONAL for a in node.names)
    if not node.level and (node.module or "").split(".")[0] in OPTIONAL:
        return True
    return not module.startswith("pddattn.petsc") and all(t.startswith("pddattn.petsc")
                                                          for t in _target(module, path, node) or ["-"])


def test_imports_sit_at_module_top_except_optional_dependencies():
    inside = [f"{path.relative_to(PACKAGE.parent)}:{s.lineno}: {ast.unparse(s)}"
              for module, path in MODULES.items() for s in _function_imports(ast.parse(path.read_text()))
              if not _optional(module, path, s)]
    assert inside == []


def test_modules_and_classes_are_small():
    long_modules = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    long_classes = {f"{m}.{c.name}": c.end_lineno - c.lineno + 1 for m, p in MODULES.items()
                    for c in ast.walk(ast.parse(p.read_text()))
                    if isinstance(c, ast.ClassDef) and c.end_lineno - c.lineno + 1 > MAX_CLASS_LINES}
    assert long_modules == {} and long_classes == {}


@pytest.mark.parametrize("module", ["pddattn", "pddattn.train", "pddattn.hierarchy", "pddattn.cli",
                                    "pddattn.family_run", "pddattn.petsc"])
def test_training_and_the_cli_start_without_petsc_or_mpi(module):
    """Importing petsc4py parses PETSc's options and mpi4py starts MPI: only a run that uses them may."""
    code = f"import sys, {module}; print(sorted(m for m in ('petsc4py', 'mpi4py') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
