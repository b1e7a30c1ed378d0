"""What a training method is: a :class:`~minicnn.hooks.Hook` with a name, options,
records, state and (optionally) parameters of its own. The contract in full is
``minicnn/methods/README.md``; this module is its code.

A method overrides only the hook points it needs (see ``minicnn.hooks``) and
never edits layer code. Options come from the command line as
``--method NAME:key=value,key=value`` and arrive as constructor keyword
arguments, converted to the types of the constructor's defaults.
"""
from __future__ import annotations

import inspect

from ..hooks import Hook

#: --method name -> class; filled by :func:`register_method`
METHODS: dict[str, type] = {}


def register_method(name: str):
    """Class decorator: make the method available as ``--method name``."""
    def deco(cls):
        if name in METHODS and METHODS[name] is not cls:
            raise ValueError(f"method name {name!r} is registered twice ({METHODS[name].__name__}, {cls.__name__})")
        cls.name = name
        METHODS[name] = cls
        return cls
    return deco


class Method(Hook):
    """Base class of training methods.

    Set by the trainer before ``on_train_begin``:

    * ``key``  -- the name its records are filed under (``smd``, or ``smd#2``
      for a second smd in the same run);
    * ``rng``  -- a ``np.random.Generator`` of its own, from (run seed, key):
      adding another method never changes this stream; saved in checkpoints.

    Class attributes a method may set:

    * ``epochs_scale`` -- the run's epochs (and its LR schedule, milestones
      included) are multiplied by the product of the methods' scales (SMD's
      equal-energy comparison, E2-Train §4.2);
    * ``acts_in_eval`` -- True if its hooks must also act when a saved model
      is evaluated (SLU's gates decide which blocks run): ``minicnn evaluate``
      then rebuilds it from the checkpoint and attaches it;
    * ``extra_work`` -- True if it adds work a plain run does not do (gates,
      PSG's predictor pass), through ``ledger.add_work(..., extra=True)`` or
      layers of its own (``attach``): the conformance test then allows
      actual > dense by exactly that work;
    * ``eval_state`` -- True if its ``state_dict()`` is part of the trained
      model (PSG's and fixed8's running activation ranges, which the
      fixed-point forward quantizes with at evaluation): the trainer saves it
      in ``model.npz`` (as it stood when the saved weights did) and
      ``minicnn evaluate`` loads it into the rebuilt method (needs ``acts_in_eval``).
    """

    name = "method"
    epochs_scale = 1.0
    acts_in_eval = False
    extra_work = False
    eval_state = False
    key: str = ""
    rng = None
    #: the --method string this method came from (set for the parts of a combination)
    origin: str | None = None

    # -- description ---------------------------------------------------------------
    def describe(self) -> str:
        """The method as written on the command line, options included."""
        opts = ",".join(f"{k}={v}" for k, v in self.options().items())
        return f"{self.name}:{opts}" if opts else self.name

    def options(self) -> dict:
        sig = inspect.signature(type(self).__init__)
        return {k: getattr(self, k) for k in sig.parameters if k != "self" and hasattr(self, k)}

    # -- parameters of its own -------------------------------------------------------
    def attach(self, model) -> None:
        """Add the method's own layers to ``model`` (``model.add_aux(name, layer)``).

        Called once, before the optimizer is built, by ``minicnn.methods.attach``
        (training) and by ``load_checkpoint`` (evaluation).
        """

    # -- records -----------------------------------------------------------------------
    def epoch_record(self, state) -> dict | None:
        """What this method decided in the epoch that just ended (JSON-able), or None.

        Called after ``on_epoch_end``; lands in the epoch's ``metrics.jsonl``
        line under ``method_records[key]`` and in ``summary.json`` under
        ``method_records[key]["per_epoch"]``.
        """
        return None

    def summary_record(self, state) -> dict | None:
        """Whole-run figures (JSON-able), merged into ``summary.json``'s ``method_records[key]``."""
        return None

    # -- resuming ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything a resumed run needs to decide as this run would (JSON values or ndarrays).

        ``self.rng`` is saved by the trainer; do not include it.
        """
        return {}

    def load_state_dict(self, state: dict) -> None:
        if state:
            raise ValueError(f"method {self.key or self.name}: unexpected saved state {sorted(state)}")


def backbone_leaves(model) -> list:
    """The model's leaf layers without the method-owned ones (``model.aux``: SLU's gates), in forward order.

    What a method that walks "the network's layers" (WUS's targets, LARS's
    prefixes, PSG's convs, gradprune's sites) must walk: another method's
    layers are not part of the network the paper describes.
    """
    aux = getattr(model, "aux", None)
    owned = {id(m) for m in aux.modules()} if aux is not None else set()
    return [m for m in model.leaves() if id(m) not in owned]


def backbone_parameters(model) -> list[tuple[object, str]]:
    """``(layer, param name)`` of every parameter of :func:`backbone_leaves` (aux parameters left out)."""
    return [(m, p) for m in backbone_leaves(model) for p in m.params]


class FrozenParams:
    """The parameters one method froze, so that it gives back exactly those.

    Several methods may freeze at once (WUS with LARS skipping, freeze with
    anything): a method must never unfreeze what another froze. ``freeze``
    turns off ``requires_grad`` of the given ``(layer, name)`` pairs that
    still train and remembers them; ``release`` turns those back on.
    """

    def __init__(self):
        self.pairs: list[tuple[object, str]] = []

    def freeze(self, pairs) -> None:
        for layer, name in pairs:
            if layer.requires_grad.get(name, False):
                layer.requires_grad[name] = False
                layer.grads[name] = None
                self.pairs.append((layer, name))

    def release(self) -> None:
        for layer, name in self.pairs:
            layer.requires_grad[name] = True
        self.pairs = []


class Combination(Method):
    """A named combination of methods (e2train = smd + slu + psg): ``parts()`` are run instead.

    ``build_methods`` replaces a combination by its parts, each with
    ``origin`` = the combination's command-line string, so the records of
    each part appear under the part's own name.
    """

    def parts(self) -> list[Method]:
        raise NotImplementedError


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


def parse_method_spec(spec: str, registry: dict | None = None) -> Method:
    """Build a method from ``"name"`` or ``"name:key=value,key=value"``."""
    registry = METHODS if registry is None else registry
    name, _, rest = spec.partition(":")
    name = name.strip()
    if name not in registry:
        raise ValueError(f"unknown method {name!r}; choose one of: {', '.join(['baseline'] + sorted(registry))}")
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
        if key in kwargs:
            raise ValueError(f"method {name}: option {key} is given twice")
        default = params[key].default
        kwargs[key] = _convert(value.strip(), default, key, name) if default is not inspect.Parameter.empty \
            else value.strip()
    return cls(**kwargs)
