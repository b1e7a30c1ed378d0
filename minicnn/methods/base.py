"""What a training method is: a :class:`~minicnn.hooks.Hook` with a name and options.

A method overrides only the hook points it needs (see ``minicnn.hooks`` for
the list) and never edits layer code. Options come from the command line as
``--method NAME:key=value,key=value`` and arrive as constructor keyword
arguments, converted to the types of the constructor's defaults.
"""
from __future__ import annotations

import inspect

from ..hooks import Hook


class Method(Hook):
    """Base class of training methods. Subclasses set ``name`` and take options as keyword arguments."""

    name = "method"

    def describe(self) -> str:
        """The method as written on the command line, options included."""
        opts = ",".join(f"{k}={v}" for k, v in self.options().items())
        return f"{self.name}:{opts}" if opts else self.name

    def options(self) -> dict:
        sig = inspect.signature(type(self).__init__)
        return {k: getattr(self, k) for k in sig.parameters if k != "self" and hasattr(self, k)}


def _convert(value: str, default, key: str, method: str):
    """Convert a command-line string to the type of the option's default."""
    try:
        if isinstance(default, bool):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
    except ValueError:
        raise ValueError(f"method {method}: option {key}={value!r} is not a {type(default).__name__}") from None
    return value


def parse_method_spec(spec: str, registry: dict) -> Method:
    """Build a method from ``"name"`` or ``"name:key=value,key=value"``."""
    name, _, rest = spec.partition(":")
    name = name.strip()
    if name not in registry:
        raise ValueError(f"unknown method {name!r}; choose one of: {', '.join(sorted(registry))}")
    cls = registry[name]
    params = inspect.signature(cls.__init__).parameters
    kwargs = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq:
            raise ValueError(f"method {name}: option {item!r} must be key=value")
        if key not in params or key == "self":
            known = ", ".join(k for k in params if k != "self") or "none"
            raise ValueError(f"method {name}: unknown option {key!r} (options: {known})")
        default = params[key].default
        kwargs[key] = _convert(value.strip(), default, key, name) if default is not inspect.Parameter.empty \
            else value.strip()
    return cls(**kwargs)
