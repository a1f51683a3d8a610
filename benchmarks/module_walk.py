"""The code's shape, measured: module and class sizes, and which modules a training run and a PC set-up walk.

For the pddattn tree on ``PYTHONPATH`` (any release: only the CLI and the
public PC are driven), this prints and writes

- sizes: lines per module, modules over 500 lines, the largest classes
  (lines from ``class`` to their last statement) and classes over 200, and
  the imports written inside functions (read from the source with ``ast``);
- walks: the package modules whose functions run (``sys.setprofile``)
  during ``pddattn train`` on a small 2D problem (its configuration, from
  the command line to the checkpoint), and during the first ``PC.setUp`` of
  DDAttentionPC from a DMDA's rows; each with the count of modules visited.

    python benchmarks/module_walk.py --out benchmarks/results                 # this tree, seconds
    PYTHONPATH=/tmp/old python benchmarks/module_walk.py --name module_walk_old --out benchmarks/results
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")


def package_root():
    import pddattn
    return Path(pddattn.__file__).resolve().parent


def sizes(root):
    """Lines per module, classes' lines and function-level imports, read from the source."""
    modules, classes, inner = {}, [], 0
    for path in sorted(root.rglob("*.py")):
        name = str(path.relative_to(root))
        text = path.read_text()
        modules[name] = len(text.splitlines())
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                classes.append((node.end_lineno - node.lineno + 1, f"{name}:{node.name}"))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inner += sum(isinstance(n, (ast.Import, ast.ImportFrom)) for n in ast.walk(node))
    classes.sort(reverse=True)
    return {"modules": len(modules), "lines": sum(modules.values()),
            "over_500": {k: v for k, v in sorted(modules.items(), key=lambda kv: -kv[1]) if v > 500},
            "largest_modules": sorted(modules.items(), key=lambda kv: -kv[1])[:5],
            "largest_classes": classes[:5], "classes_over_200": [c for c in classes if c[0] > 200],
            "function_level_imports": inner}


@contextlib.contextmanager
def visited(root, into):
    """Record the package modules whose functions are called inside the block."""
    prefix = str(root) + os.sep

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_name != "<module>":
            filename = frame.f_code.co_filename
            if filename.startswith(prefix):
                into.add(filename[len(prefix):])
    sys.setprofile(profile)
    try:
        yield into
    finally:
        sys.setprofile(None)


def import_all(root):
    """Import every module first, so that a module's import (its body, its classes') is not counted as a visit."""
    import importlib
    for path in sorted(root.rglob("*.py")):
        dotted = ".".join(("pddattn",) + path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        if dotted.endswith("__main__"):  # it runs the command line
            continue
        with contextlib.suppress(Exception):
            importlib.import_module(dotted)


def walk_training(root):
    from pddattn.cli import main
    seen = set()
    with tempfile.TemporaryDirectory() as out, contextlib.redirect_stdout(io.StringIO()):
        args = ["train", "--problem", "diffusion2d", "--grid", "31x31", "--subdomains", "4x4", "--coarse",
                "harmonic", "--steps", "2", "--batch", "4", "--test-size", "4", "--out", out]
        with visited(root, seen):
            main(args)
    return sorted(seen)


def walk_pc_setup(root):
    from petsc4py import PETSc
    from pddattn.petsc import DDAttentionPC, petsc_matrix
    from pddattn.problems import make_problem
    side = 63
    A = petsc_matrix(make_problem("diffusion2d", (side, side), "lognormal:1", seed=1).A, PETSc.COMM_WORLD)
    options = PETSc.Options("walk_")
    options["pddattn_subdomains"], options["pddattn_overlap"] = "4x4", 1
    pc = PETSc.PC().create(comm=PETSc.COMM_WORLD)
    pc.setOptionsPrefix("walk_")
    pc.setOperators(A)
    pc.setType("python")
    pc.setPythonContext(DDAttentionPC())
    pc.setDM(PETSc.DMDA().create([side, side], stencil_width=1, comm=PETSc.COMM_WORLD))
    seen = set()
    with visited(root, seen):
        pc.setUp()
    pc.destroy()
    return sorted(seen)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--name", default="module_walk", help="file name of the results (json and md)")
    args = parser.parse_args(argv)
    root = package_root()
    import petsc4py
    petsc4py.init([])
    import_all(root)
    result = {"tree": str(root), "sizes": sizes(root), "train": walk_training(root), "pc_setup": walk_pc_setup(root)}
    s = result["sizes"]
    lines = [f"# The code's shape: {root}", "",
             f"- {s['modules']} modules, {s['lines']} lines; over 500 lines: {s['over_500'] or 'none'}",
             f"- largest modules: {', '.join(f'{k} {v}' for k, v in s['largest_modules'])}",
             f"- largest classes: {', '.join(f'{n} {k}' for k, n in s['largest_classes'])}",
             f"- classes over 200 lines: {len(s['classes_over_200'])}; imports inside functions: "
             f"{s['function_level_imports']}",
             f"- `pddattn train` (31x31, 4x4 boxes, harmonic, 2 steps) visits {len(result['train'])} modules: "
             + ", ".join(result["train"]),
             f"- the PC's first setUp (63x63 DMDA, 4x4 boxes) visits {len(result['pc_setup'])} modules: "
             + ", ".join(result["pc_setup"])]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(result, indent=1))
    (out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
