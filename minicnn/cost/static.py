"""The dense cost of a model from a static shape walk (no data, no forward pass).

``static_cost(model, batch_size)`` is what one plain fp32 training step
costs with every layer trained: forward, backward_input (every layer but
those below the first trained layer -- in a model where everything trains,
only the first layer skips it), backward_weight for every parameter,
update of every parameter; plus ``eval``, a forward pass in eval mode.
``format_cost_table`` prints it per layer (``minicnn cost --model M``).
"""
from __future__ import annotations

from dataclasses import dataclass

from .formats import FormatTable
from .counts import PHASES, TRAIN_PHASES, Counts, Meter, Tensor
from .energy import EnergyTable
from .rules import ResidualAddRule, Work, rule_for, update_counts


def is_residual_block(layer) -> bool:
    """True for a container whose own work is a residual add (BasicBlock and its subclasses)."""
    return layer.is_container and isinstance(rule_for(layer), ResidualAddRule)


def check_rules(model) -> None:
    """Raise TypeError if some leaf layer of ``model`` has no counting rule."""
    for leaf in model.leaves():
        if rule_for(leaf) is None:
            raise TypeError(f"cost ledger: no counting rule for layer {leaf.name} of type "
                            f"{type(leaf).__name__}; add one with minicnn.cost.rules.register")


def ordered_sites(model) -> list:
    """Every place the ledger counts, in forward order: leaf layers and residual blocks (their add)."""
    out = []

    def visit(layer):
        if is_residual_block(layer):
            for c in layer.main_branch() + layer.shortcut_branch():
                visit(c)
            out.append(layer)
            visit(layer.relu_out)
        elif layer.is_container:
            for c in layer.children():
                visit(c)
        else:
            out.append(layer)

    for c in model.children() if model.is_container else [model]:
        visit(c)
    return out


@dataclass
class Site:
    """One counting place of a dense training step: a leaf layer or a block's residual add.

    ``needs_dx``: whether dL/dx is computed there when every parameter trains
    (some parameter lies below it).
    """
    layer: object
    in_shape: tuple
    out_shape: tuple
    needs_dx: bool

    @property
    def name(self) -> str:
        return self.layer.name

    @property
    def type(self) -> str:
        return "add" if self.layer.is_container else type(self.layer).__name__


def shape_walk(model, batch_size: int, input_shape=(3, 32, 32)) -> list[Site]:
    """Sites in forward order with their input/output shapes for a batch of ``batch_size``."""
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch size must be a positive integer, got {batch_size}")
    sites: list[Site] = []

    def chain(layers, shape, below):
        for c in layers:
            shape, below = visit(c, shape, below)
        return shape, below

    def visit(layer, shape, below):
        """Returns (output shape, whether any parameter lies at or below this point)."""
        if is_residual_block(layer):
            h, below_h = chain(layer.main_branch(), shape, below)
            _, below_s = chain(layer.shortcut_branch(), shape, below)
            sites.append(Site(layer, tuple(shape), h, below))   # add: h + s forward, dx at the input
            return visit(layer.relu_out, h, below_h or below_s)
        if layer.is_container:
            return chain(layer.children(), shape, below)
        out = tuple(layer.output_shape(shape))
        sites.append(Site(layer, shape, out, below))
        return out, below or bool(layer.params)

    chain(model.children() if model.is_container else [model], (int(batch_size),) + tuple(input_shape), False)
    return sites


def site_cost(site: Site, energy: EnergyTable, momentum: bool = True, weight_decay: bool = False) -> dict:
    """{phase: Counts} of one site in a dense fp32 step where every parameter trains."""
    layer = site.layer
    m = Meter(FormatTable(), energy, layer)
    rule = rule_for(layer)
    x, y = Tensor(site.in_shape), Tensor(site.out_shape)
    out = {p: Counts() for p in PHASES}
    out["forward"] = rule.forward(m, layer, Work(x, y, training=True))
    out["eval"] = rule.forward(m, layer, Work(x, y, training=False))
    trained = frozenset() if layer.is_container else frozenset(layer.params)
    w = Work(x, y, dy=y, dx=x if site.needs_dx else None, training=True, grads=trained)
    if site.needs_dx:
        out["backward_input"] = rule.backward_input(m, layer, w)
    for p in trained:
        out["backward_weight"] += rule.backward_weight(m, layer, w, p)
        out["update"] += update_counts(m, layer, p, 1 if momentum else 0, weight_decay)
    return out


def static_cost(model, batch_size: int, input_shape=(3, 32, 32), momentum: bool = True,
                energy: EnergyTable | None = None, weight_decay: bool = False) -> dict[str, dict[str, Counts]]:
    """{site name: {phase: Counts}} of one dense fp32 training step, in forward order.

    Phases: forward, backward_input, backward_weight, update (a training
    step) and eval (a forward pass in eval mode, for reference). Residual
    adds appear under their block's name (e.g. ``layer1.0``).
    """
    check_rules(model)
    energy = energy or EnergyTable()
    return {s.name: site_cost(s, energy, momentum, weight_decay) for s in shape_walk(model, batch_size, input_shape)}


def total(costs: dict[str, dict[str, Counts]]) -> dict[str, Counts]:
    """Sum per phase over sites, plus ``total`` over the training phases."""
    out = {p: Counts() for p in PHASES}
    for per in costs.values():
        for p, c in per.items():
            out[p] += c
    out["total"] = Counts()
    for p in TRAIN_PHASES:
        out["total"] += out[p]
    return out


# -- the table ------------------------------------------------------------------------------

def human(n: float, unit: str = "") -> str:
    """40813184 -> '40.81 M' (SI prefixes)."""
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= factor:
            return f"{n / factor:.2f} {prefix}{unit}"
    return f"{n:.0f} {unit}".rstrip() if float(n).is_integer() else f"{n:.2f} {unit}".rstrip()


def human_energy(pj: float) -> str:
    """Picojoules -> the most readable of pJ, nJ, µJ, mJ, J."""
    if pj == 0:
        return "0"
    for factor, unit in ((1e12, "J"), (1e9, "mJ"), (1e6, "µJ"), (1e3, "nJ")):
        if abs(pj) >= factor:
            return f"{pj / factor:.2f} {unit}"
    return f"{pj:.2f} pJ"


def _train(per: dict[str, Counts]) -> Counts:
    c = Counts()
    for p in TRAIN_PHASES:
        c += per[p]
    return c


def format_cost_table(model, batch_size: int = 128, input_shape=(3, 32, 32), momentum: bool = True,
                      energy: EnergyTable | None = None, weight_decay: bool = False) -> str:
    """The per-layer cost table of one dense fp32 training step (what ``minicnn cost`` prints).

    Columns: layer, type, output shape, params, forward MACs, training MACs
    (forward + backward_input + backward_weight), elementwise ops of the
    training step, bytes (forward, training step), energy of the training step. Training = forward + backward_input
    + backward_weight + update. Then totals (human and exact), the
    arithmetic/memory split of the energy, and the per-image figures.
    """
    energy = energy or EnergyTable()
    check_rules(model)
    sites = shape_walk(model, batch_size, input_shape)
    costs = {s.name: site_cost(s, energy, momentum, weight_decay) for s in sites}
    head = ("layer", "type", "output", "params", "fwd MACs", "train MACs", "train ops", "fwd bytes", "train bytes",
            "train energy")
    rows = []
    for s in sites:
        per = costs[s.name]
        tr = _train(per)
        nparams = 0 if s.layer.is_container else s.layer.num_params()
        rows.append((s.name, s.type, "x".join(str(d) for d in s.out_shape[1:]), human(nparams) if nparams else "-",
                     human(per["forward"].macs), human(tr.macs), human(tr.ops), human(per["forward"].bytes, "B"),
                     human(tr.bytes, "B"), human_energy(tr.energy_pj)))
    tot = total(costs)
    n_params = model.num_params()
    rows.append(("total", "", "", human(n_params), human(tot["forward"].macs), human(tot["total"].macs),
                 human(tot["total"].ops),
                 human(tot["forward"].bytes, "B"), human(tot["total"].bytes, "B"), human_energy(tot["total"].energy_pj)))
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    left = {0, 1, 2}

    def fmt(r):
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    rule = "-" * len(fmt(head))
    arch = getattr(model, "arch", type(model).__name__)
    t = tot["total"]
    mem_pj = t.bytes * energy.byte_pj()
    lines = [f"{arch}: one dense fp32 training step, batch {batch_size}, input {'x'.join(map(str, input_shape))}, "
             f"SGD{' with momentum' if momentum else ''}; memory at {energy.memory_level} "
             f"({energy.access_pj():g} pJ per 64-bit access)",
             fmt(head), rule] + [fmt(r) for r in rows[:-1]] + [rule, fmt(rows[-1]), ""]
    lines += [
        f"exact totals per step: params {n_params}; MACs forward {tot['forward'].macs}, backward_input "
        f"{tot['backward_input'].macs}, backward_weight {tot['backward_weight'].macs}, training {t.macs}; "
        f"elementwise ops {t.ops}; bytes {t.bytes}",
        f"energy per step: {human_energy(t.energy_pj)} (arithmetic {human_energy(t.energy_pj - mem_pj)}, "
        f"memory {human_energy(mem_pj)})",
        f"per image: forward MACs {tot['forward'].macs / batch_size:,.0f}, training MACs "
        f"{t.macs / batch_size:,.0f}, bytes {human(t.bytes / batch_size, 'B')}, "
        f"energy {human_energy(t.energy_pj / batch_size)}",
    ]
    return "\n".join(lines)
