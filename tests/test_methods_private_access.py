"""Methods reach layers only through public names (issue 17): no ``layer._name`` in minicnn/methods/.

The check is an ast walk over every attribute access ``X._y`` (and ``getattr/setattr/hasattr/delattr(X,
"_y")``) in minicnn/methods/: it is allowed only when X is the method's own object (``self`` or ``cls``),
so a method's own state (``self._running``) is fine and a layer's private parts (``layer._geometry()``,
``self.model._children``, ``state.model.layers[0]._cache``) are not. Dunders (``__class__``) are not
private. Stricter than "of a layer" (any other object's ``_name`` is refused too): today no method
needs more, and a static check cannot tell a layer from anything else.
"""
import ast
import pathlib

import pytest

METHODS = pathlib.Path(__file__).resolve().parents[1] / "minicnn" / "methods"
OWN = {"self", "cls"}
_ATTR_FUNCS = {"getattr", "setattr", "hasattr", "delattr"}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_reaches(source: str, filename: str = "<snippet>") -> list[str]:
    """``file:line: expression`` for every access to another object's ``_name`` in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id in OWN):
                found.append(f"{filename}:{node.lineno}: {ast.unparse(node)}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _ATTR_FUNCS
              and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
              and isinstance(node.args[1].value, str) and _private(node.args[1].value)):
            owner = node.args[0]
            if not (isinstance(owner, ast.Name) and owner.id in OWN):
                found.append(f"{filename}:{node.lineno}: {ast.unparse(node)}")
    return found


@pytest.mark.parametrize("snippet", [
    "def supply_grads(self, layer, dy):\n    g = layer._geometry()\n",
    "ok = layer._is_pointwise()",
    "self.model._children.append(x)",
    "state.model.leaves()[0]._cache = None",
    "f = getattr(layer, '_geometry')",
    "setattr(conv, '_x', 1)",
    "from x import y\n(a or b)._z",
])
def test_the_check_catches_private_reach(snippet):
    assert private_reaches(snippet), snippet


@pytest.mark.parametrize("snippet", [
    "self._running[layer.name] = r",
    "cls._registry = {}",
    "layer.weight_grad(x, dy)",
    "t = layer.__class__.__name__",
    "getattr(layer, 'weight')",
    "from ._psg import psg_sign_rule",
])
def test_the_check_allows_own_and_public_names(snippet):
    assert private_reaches(snippet) == []


def test_no_method_reaches_into_a_private_name():
    files = sorted(METHODS.rglob("*.py"))
    assert len(files) > 5 and any(p.name == "psg.py" for p in files)   # the walk sees the methods
    found = [hit for p in files for hit in private_reaches(p.read_text(), str(p.relative_to(METHODS.parents[1])))]
    assert found == [], "methods must use public layer API (e.g. Conv2d.weight_grad):\n" + "\n".join(found)
