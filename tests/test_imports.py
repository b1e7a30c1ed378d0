"""Every import in minicnn runs downhill: the layer order is ``minicnn.LAYERS``, read from the source (ast).

A module may import from its own package (``minicnn.methods.psg`` from ``minicnn.methods._psg``) and from
any package in a layer below its own; never from its own layer's other packages, never from a layer above,
never a private (``_name``) module or name of another package. Imports inside functions count too: a lazy
import is still a dependency.
"""
from __future__ import annotations

import ast
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "minicnn")


def layer_order() -> dict:
    """{top-level name: layer index} from the LAYERS constant of minicnn/__init__.py (parsed, not imported)."""
    tree = ast.parse(open(os.path.join(ROOT, "__init__.py")).read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "LAYERS" for t in node.targets):
            layers = ast.literal_eval(node.value)
            return {name: i for i, names in enumerate(layers) for name in names}
    raise AssertionError("minicnn/__init__.py defines no LAYERS")


def modules():
    """(dotted module name, path) of every .py file in the package."""
    for dirpath, _, files in os.walk(ROOT):
        for f in sorted(files):
            if f.endswith(".py"):
                path = os.path.join(dirpath, f)
                rel = os.path.relpath(path, os.path.join(ROOT, ".."))[:-3].replace(os.sep, ".")
                yield (rel[:-len(".__init__")] if rel.endswith(".__init__") else rel), path


def imports(module: str, path: str):
    """(line, imported module, imported names) of every minicnn import in one file, relative ones resolved."""
    is_pkg = path.endswith("__init__.py")
    package = module if is_pkg else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "minicnn":
                    yield node.lineno, a.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[:len(parts) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "minicnn":
                continue
            names = [a.name for a in node.names]
            sub = [n for n in names if _is_module(f"{target}.{n}")]    # ``from . import kernels``: a module
            for n in sub:
                yield node.lineno, f"{target}.{n}", []
            rest = [n for n in names if n not in sub]
            if rest or not sub:
                yield node.lineno, target, rest


def _is_module(dotted: str) -> bool:
    path = os.path.join(ROOT, *dotted.split(".")[1:])
    return os.path.isdir(path) or os.path.isfile(path + ".py")


def top(dotted: str) -> str:
    """The name directly under minicnn (``minicnn.training.state`` -> ``training``); "" for minicnn itself."""
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else ""


def uphill_imports() -> list[str]:
    order = layer_order()
    bad = []
    for module, path in modules():
        src = top(module)
        if src == "":                     # minicnn/__init__.py itself: it must import nothing
            bad += [f"{module}:{ln} imports {t}" for ln, t, _ in imports(module, path)]
            continue
        if src not in order:
            bad.append(f"{module} is in no layer: add {src!r} to minicnn.LAYERS")
            continue
        for ln, target, names in imports(module, path):
            dst = top(target)
            where = f"{os.path.relpath(path, os.path.join(ROOT, '..'))}:{ln}"
            if dst == src:
                continue                  # inside one package: its own business
            if dst == "":
                bad.append(f"{where}: {module} imports {names} from the package root")
                continue
            if dst not in order:
                bad.append(f"{where}: {module} imports {target}, which is in no layer")
            elif order[dst] >= order[src]:
                how = "uphill" if order[dst] > order[src] else "sideways (same layer)"
                bad.append(f"{where}: {module} (layer {order[src]}) imports {target} (layer {order[dst]}): {how}")
            private = [p for p in target.split(".")[2:] if p.startswith("_")] + [n for n in names if n.startswith("_")]
            if private:
                bad.append(f"{where}: {module} imports private {private[0]} of another package ({target})")
    return bad


def test_every_import_runs_downhill():
    bad = uphill_imports()
    assert not bad, "imports against minicnn.LAYERS:\n" + "\n".join(bad)


def test_every_module_is_in_a_layer_and_every_layer_exists():
    order = layer_order()
    tops = {top(m) for m, _ in modules()} - {""}
    assert tops <= set(order), sorted(tops - set(order))
    assert set(order) <= tops, sorted(set(order) - tops)


def test_the_check_sees_an_uphill_import(tmp_path, monkeypatch):
    """The walker itself: a cost module importing training, and a lazy one inside a function, are caught."""
    fake = tmp_path / "minicnn"
    (fake / "cost").mkdir(parents=True)
    (fake / "training").mkdir()
    (fake / "__init__.py").write_text('LAYERS = (("cost",), ("training",))\n')
    (fake / "cost" / "__init__.py").write_text("")
    (fake / "training" / "__init__.py").write_text("from ..cost import x\n")
    (fake / "cost" / "ledger.py").write_text("def save():\n    from ..training.runfiles import atomic_write_json\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", str(fake))
    bad = uphill_imports()
    assert len(bad) == 1 and "minicnn.cost.ledger (layer 0) imports minicnn.training.runfiles (layer 1): uphill" in bad[0]
