"""Lesson 3: what one training step of convnet-small costs, layer by layer.

Run it top to bottom:

    python lessons/03_cost_of_a_step.py

minicnn's cost ledger (``minicnn.cost.Ledger``) is a hook that watches every
layer during training and counts, per layer and per *phase*:

* ``forward``          computing y from x;
* ``backward_input``   computing dL/dx (to pass the gradient further down);
* ``backward_weight``  computing dL/dW and dL/db;
* ``update``           the optimizer step on each parameter;

in four units: MACs (multiply-accumulates), elementwise ops, bytes moved
to/from memory, and energy (picojoules, from Horowitz's ISSCC 2014 table).

This lesson recomputes those numbers by hand for one real step and checks
them against the ledger (each comparison a ``check``: ``[ok]``/``[FAIL]``;
the lesson exits non-zero if one fails): forward MACs from the formula N*Ho*Wo*Cout*Cin*kh*kw,
why backward costs twice the forward, why the first layer computes no dL/dx,
the bytes model, the energy table, the update phase, and finally how freezing
the first two conv blocks removes backward work (and how much).

Figure: ``03_cost_per_layer.png`` in the output folder.
"""
import numpy as np
from matplotlib.figure import Figure

from _lesson import QUICK, check, check_close, check_equal, finish, load_data, save, section
from minicnn.cost import EnergyTable, Ledger, static_cost
from minicnn.cost.static import shape_walk
from minicnn.data import BatchIterator, channel_stats
from minicnn.hooks import HookList
from minicnn.layers import Conv2d, Linear
from minicnn.losses import SoftmaxCrossEntropy
from minicnn.models import build
from minicnn.training import SGD

N = 16 if QUICK else 32                       # batch size of the step we measure
PHASES = ("forward", "backward_input", "backward_weight", "update")
ds = load_data(2 * N, 10, seed=0)
mean, std = channel_stats(ds.train_x)
x, y = next(iter(BatchIterator(ds.train_x, ds.train_y, N, shuffle=False, mean=mean, std=std)))
loss_fn = SoftmaxCrossEntropy()


def training_step(model, ledger, optimizer):
    """One SGD step with the ledger attached, as the Trainer does it."""
    ledger.add_dense_step(len(y), x.shape[1:])        # what a plain all-layers-trained step would cost
    loss = loss_fn(model.forward(x), y)
    model.zero_grad()
    model.backward(loss_fn.backward())
    for layer, name in optimizer.step():            # the optimizer returns what it really updated
        ledger.count_update(layer, name, n_state=1)  # 1 state tensor per param: the momentum buffer
    return loss


def M(v):
    """Millions, for printing."""
    return f"{v / 1e6:9.3f} M"


# ---------------------------------------------------------------------------------------------
section(f"1. The model and its shapes (batch N = {N})")
model = build("convnet-small", num_classes=ds.num_classes, seed=0)
print(f"{'layer':<8} {'type':<12} {'input':<16} {'output':<16} {'params':>7}")
for s in shape_walk(model, N):
    nparams = s.layer.num_params()
    print(f"{s.name:<8} {s.type:<12} {str(s.in_shape):<16} {str(s.out_shape):<16} {nparams:>7}")

# Attach a ledger (as the last hook: an observer) and run one real training step.
ledger = Ledger(model, momentum=True)
model.set_hooks(HookList([ledger]))
opt = SGD(model, lr=0.01, momentum=0.9)
loss = training_step(model, ledger, opt)
full = ledger.per_layer()                 # {layer: {phase: Counts(macs, ops, bytes, energy_pj)}}
print(f"one training step done (loss {loss:.3f}); the ledger counted {len(full)} sites")

# ---------------------------------------------------------------------------------------------
section("2. Forward MACs: the formula vs the ledger")
# A conv output element y[n, o, ho, wo] is a dot product of length K = Cin*kh*kw, so
#     forward MACs = (number of outputs) * K = N * Ho * Wo * Cout * Cin * kh * kw.
# A Linear layer: N * in_features * out_features.
print(f"{'layer':<6} {'formula':<36} {'by formula':>14} {'ledger':>14}")
total_formula = 0
formula_macs = {}
for s in shape_walk(model, N):
    layer = s.layer
    if isinstance(layer, Conv2d):
        _, cout, ho, wo = s.out_shape
        kh, kw = layer.kernel_size
        macs = N * ho * wo * cout * layer.in_channels * kh * kw
        text = f"{N}*{ho}*{wo}*{cout}*{layer.in_channels}*{kh}*{kw}"
    elif isinstance(layer, Linear):
        macs = N * layer.in_features * layer.out_features
        text = f"{N}*{layer.in_features}*{layer.out_features}"
    else:
        continue
    total_formula += macs
    print(f"{s.name:<6} {text:<36} {macs:>14,} {full[s.name]['forward'].macs:>14,}")
    formula_macs[s.name] = macs
print(f"total forward MACs {total_formula:,} = {total_formula // N:,} per image "
      f"(ledger: {ledger.totals()['forward'].macs:,})")
for name, macs in formula_macs.items():
    check_equal(f"{name} forward MACs: formula == ledger", macs, full[name]["forward"].macs)
check_equal("total forward MACs: formula == ledger", total_formula, ledger.totals()["forward"].macs)
print("BatchNorm, ReLU and max-pooling do no MACs: they are elementwise ops (counted apart), e.g. "
      f"bn1 forward = {full['bn1']['forward'].ops:,} ops = 6 per element + 18 per channel")
check_equal("bn1 forward ops = 6 per element + 18 per channel", 6 * N * 32 * 32 * 32 + 18 * 32,
            full["bn1"]["forward"].ops)
check("BatchNorm, ReLU and pooling do no MACs",
      all(full[s.name][p].macs == 0 for s in shape_walk(model, N) if not isinstance(s.layer, (Conv2d, Linear))
          for p in PHASES))

# ---------------------------------------------------------------------------------------------
section("3. Backward: dL/dx and dL/dW each cost about one forward")
# With cols = im2col(x) (K x L per image) and W2 = weight as a (Cout x K) matrix:
#     forward         y    = W2 @ cols        (Cout x K) @ (K x L):  Cout*K*L MACs
#     backward_input  dcols = W2.T @ dy       (K x Cout) @ (Cout x L): the same count
#     backward_weight dW2  = dy @ cols.T      (Cout x L) @ (L x K):    the same count
# so a trained conv layer costs 3x its forward MACs.
print(f"{'layer':<6} {'forward':>13} {'backward_input':>15} {'backward_weight':>16}   (MACs)")
for name in ("conv1", "conv2", "conv3", "conv4", "fc"):
    per = full[name]
    print(f"{name:<6} {M(per['forward'].macs):>13} {M(per['backward_input'].macs):>15} "
          f"{M(per['backward_weight'].macs):>16}")
t = ledger.totals()
print(f"whole step: forward {M(t['forward'].macs)}, backward_input {M(t['backward_input'].macs)}, "
      f"backward_weight {M(t['backward_weight'].macs)}; total {M(t['total'].macs)} = "
      f"{t['total'].macs / t['forward'].macs:.2f} x forward")
check("backward_weight MACs == forward MACs for every conv and fc",
      all(full[n]["backward_weight"].macs == full[n]["forward"].macs for n in formula_macs))
check("backward_input MACs == forward MACs for every conv and fc above conv1",
      all(full[n]["backward_input"].macs == full[n]["forward"].macs for n in formula_macs if n != "conv1"))
check_equal("whole step MACs = 3 x forward - conv1's skipped dL/dx",
            3 * t["forward"].macs - full["conv1"]["forward"].macs, t["total"].macs)

# Why is conv1's backward_input zero? dL/dx of conv1 would be the gradient w.r.t. the IMAGE. No
# parameter lies below conv1, so nobody needs it: the container tells conv1 not to compute it
# (needs_input_grad = False) and the ledger sees no dx. BatchNorm and ReLU layers above it DO
# compute dL/dx: conv1's weight gradient needs the gradient at conv1's output.
print(f"conv1.needs_input_grad = {model['conv1'].needs_input_grad}; bn1.needs_input_grad = "
      f"{model['bn1'].needs_input_grad}  -> conv1 skips {M(full['conv1']['forward'].macs)} MACs of dL/dx")
check("conv1 computes no dL/dx (needs_input_grad False, ledger 0); bn1 does",
      not model["conv1"].needs_input_grad and full["conv1"]["backward_input"].macs == 0
      and model["bn1"].needs_input_grad and full["bn1"]["backward_input"].ops > 0)
print(f"elementwise backward ops: bn1 {full['bn1']['backward_input'].ops:,} (dx) + "
      f"{full['bn1']['backward_weight'].ops:,} (dgamma, dbeta, incl. the reduction pass over dy); "
      f"relu1 {full['relu1']['backward_input'].ops:,}")

# ---------------------------------------------------------------------------------------------
section("4. Bytes moved: the bytes model")
# Compulsory traffic, no reuse between kernels: each piece of work reads every tensor it needs once
# and writes every result once, at 4 bytes per fp32 value.
#     conv forward:          R x, weight;  W y
#     conv backward_input:   R dy, weight; W dx
#     conv backward_weight:  R dy, x;      W dW        (R dy; W db for a bias)
c2 = model["conv2"]
x_el = N * 32 * 32 * 32                  # conv2's input (N, 32, 32, 32)
y_el = N * 32 * 32 * 32                  # conv2's output
w_el = c2.params["weight"].size
by_hand = {"forward": 4 * (x_el + w_el + y_el),
           "backward_input": 4 * (y_el + w_el + x_el),
           "backward_weight": 4 * (y_el + x_el + w_el)}
for ph, b in by_hand.items():
    print(f"conv2 {ph:<16} by hand {b:>12,} B   ledger {full['conv2'][ph].bytes:>12,} B")
    check_equal(f"conv2 {ph} bytes: by hand == ledger", b, int(full["conv2"][ph].bytes))
print("per phase, whole step: " + ", ".join(f"{ph} {t[ph].bytes / 1e6:.1f} MB" for ph in PHASES))
print("elementwise layers move as many bytes as a conv for almost no arithmetic: "
      f"bn1 forward {full['bn1']['forward'].bytes / 1e6:.2f} MB, relu1 forward "
      f"{full['relu1']['forward'].bytes / 1e6:.2f} MB, conv2 forward {full['conv2']['forward'].bytes / 1e6:.2f} MB")

# ---------------------------------------------------------------------------------------------
section("5. Energy: the Horowitz (ISSCC 2014, 45 nm) table")
E = EnergyTable()
print(f"entries used for fp32 training: fp32_mult {E.fp32_mult} pJ, fp32_add {E.fp32_add} pJ, "
      f"{E.memory_level} {E.access_pj()} pJ per 64-bit access")
print(f"  -> one MAC = mult + add = {E.mac_pj():.1f} pJ;  one elementwise op = one add = {E.op_pj():.1f} pJ;  "
      f"one byte = {E.access_pj()}/8 = {E.byte_pj()} pJ")
print(f"  -> moving ONE byte from DRAM costs as much as {E.byte_pj() / E.mac_pj():.0f} MACs")
c = full["conv2"]["forward"]
hand = c.macs * E.mac_pj() + c.ops * E.op_pj() + c.bytes * E.byte_pj()
print(f"conv2 forward: {c.macs:,} MACs * {E.mac_pj():.1f} + {c.ops} ops * {E.op_pj()} + {c.bytes:,} B * "
      f"{E.byte_pj()} = {hand / 1e6:.2f} uJ (ledger {c.energy_pj / 1e6:.2f} uJ)")
check_close("conv2 forward energy (pJ): by hand == ledger", hand, c.energy_pj, rtol=1e-9)
check_close("one MAC = fp32 mult + fp32 add (pJ)", E.fp32_mult + E.fp32_add, E.mac_pj(), rtol=1e-12)

# Memory vs arithmetic, per layer: how many MACs does each byte buy?
print(f"\n{'layer':<7} {'MACs/byte':>9} {'arith uJ':>9} {'memory uJ':>10} {'memory share':>13}   (whole step)")
arith_tot = mem_tot = 0.0
for name, per in full.items():
    macs = sum(per[p].macs for p in PHASES)
    ops = sum(per[p].ops for p in PHASES)
    nbytes = sum(per[p].bytes for p in PHASES)
    if nbytes == 0:
        continue
    arith, mem = macs * E.mac_pj() + ops * E.op_pj(), nbytes * E.byte_pj()
    arith_tot, mem_tot = arith_tot + arith, mem_tot + mem
    print(f"{name:<7} {macs / nbytes:>9.1f} {arith / 1e6:>9.2f} {mem / 1e6:>10.2f} {mem / (arith + mem):>12.0%}")
print(f"whole step: arithmetic {arith_tot / 1e9:.2f} mJ, memory {mem_tot / 1e9:.2f} mJ "
      f"-> memory is {mem_tot / (arith_tot + mem_tot):.0%} of {t['total'].energy_pj / 1e9:.2f} mJ")
check_close("whole step energy: arithmetic + memory by hand == ledger total", arith_tot + mem_tot,
            t["total"].energy_pj, rtol=1e-9)
print("(convs with many channels do enough MACs per byte to balance their traffic; BatchNorm, ReLU and "
      "pooling are pure data movement)")
cache = EnergyTable(memory_level="cache_1mb")
mem_c = mem_tot / E.byte_pj() * cache.byte_pj()
print(f"if the tensors lived in a 1 MB on-chip cache ({cache.byte_pj()} pJ/byte), memory would be "
      f"{mem_c / (arith_tot + mem_c):.0%} of the energy: the memory level is an assumption worth stating")

# ---------------------------------------------------------------------------------------------
section("6. The update phase")
# SGD with momentum, per element:  buf = 0.9*buf + g  (2 ops),  p -= lr*buf  (2 ops)
# Bytes: R+W p, R g, R+W buf = 5 tensors of the parameter's size, 4 bytes each.
fc = model["fc"]
n_w = fc.params["weight"].size
u = full["fc"]["update"]
print(f"fc weight {fc.params['weight'].shape} = {n_w:,} values: by hand 4 ops and 20 bytes per value, "
      f"plus the bias ({fc.params['bias'].size} values)")
print(f"  by hand {4 * (n_w + 10):,} ops, {20 * (n_w + 10):,} B;  ledger {u.ops:,} ops, {u.bytes:,} B")
n_b = fc.params["bias"].size
check_equal("fc update ops: 4 per value (weight and bias)", 4 * (n_w + n_b), int(u.ops))
check_equal("fc update bytes: 20 per value (weight and bias)", 20 * (n_w + n_b), int(u.bytes))
print(f"update of the whole model: {t['update'].ops:,} ops, {t['update'].bytes / 1e6:.2f} MB, "
      f"{t['update'].energy_pj / t['total'].energy_pj:.1%} of the step's energy. It does not grow with "
      "the batch size: the larger the batch, the smaller its share.")

# The ledger and the static shape walk (what `minicnn cost` prints) agree for an all-trained step:
st = static_cost(model, N)
st_total = sum(st[n][p].macs for n in st for p in PHASES)
print(f"cross-check: static_cost() total MACs {st_total:,} == ledger {t['total'].macs:,}")
check_equal("static_cost() (what `minicnn cost` prints) == ledger, total MACs", st_total, t["total"].macs)

# ---------------------------------------------------------------------------------------------
section("7. Freeze the first two conv blocks and count again")
# layer.freeze() sets requires_grad = False on its params. The containers then stop backward at the
# lowest layer that still trains (conv3), which computes dW but not dL/dx; nothing below it is
# visited. Forward is unchanged: the frozen layers still compute their outputs.
model2 = build("convnet-small", num_classes=ds.num_classes, seed=0)
FROZEN = ["conv1", "bn1", "conv2", "bn2"]          # ReLUs and pools have no params
for name in FROZEN:
    model2[name].freeze()
ledger2 = Ledger(model2, momentum=True)
model2.set_hooks(HookList([ledger2]))
training_step(model2, ledger2, SGD(model2, lr=0.01, momentum=0.9))
frozen = ledger2.per_layer()
print(f"frozen: {', '.join(FROZEN)};  conv3.needs_input_grad = {model2['conv3'].needs_input_grad}")
check("backward stops at conv3: it computes no dL/dx, nothing below it is visited",
      not model2["conv3"].needs_input_grad
      and all(not frozen[n][p] for n in ("conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "pool1")
              for p in ("backward_input", "backward_weight")))
check("forward is unchanged by freezing", all(frozen[n]["forward"] == full[n]["forward"] for n in full))
print(f"{'layer':<7} {'backward MACs: all trained':>27} {'frozen':>12}   {'backward bytes: all':>20} {'frozen':>12}")
for name in full:
    b_full = full[name]["backward_input"] + full[name]["backward_weight"]
    b_frz = frozen[name]["backward_input"] + frozen[name]["backward_weight"]
    if b_full:
        print(f"{name:<7} {M(b_full.macs):>27} {M(b_frz.macs):>12}   {b_full.bytes / 1e6:>17.2f} MB "
              f"{b_frz.bytes / 1e6:>9.2f} MB")
saved_by_hand = (full["conv1"]["backward_weight"].macs + 2 * full["conv2"]["forward"].macs
                 + full["conv3"]["backward_input"].macs)
s2 = ledger2.summary()
print(f"MACs saved: conv1 dW + conv2 dW and dx + conv3 dx = {saved_by_hand:,} by hand; ledger "
      f"{s2['dense_macs']['total'] - s2['macs']['total']:,} (dense {s2['dense_macs']['total']:,} - actual {s2['macs']['total']:,})")
check_equal("MACs saved by freezing: by hand == ledger (dense - actual)", saved_by_hand,
            s2["dense_macs"]["total"] - s2["macs"]["total"])
check_equal("the frozen step's dense count == the all-trained step's actual count", t["total"].macs,
            s2["dense_macs"]["total"], labels=("all-trained actual", "frozen dense"))
print("summary()['savings'] vs an all-trained step: " + ", ".join(f"{k} {v:.1%}" for k, v in s2["savings"].items()))
print(f"(for the all-trained step the savings are {ledger.summary()['savings']['macs']:.1%}: its actual count "
      "equals its dense count)")
check("the all-trained step saves nothing: savings 0 in every unit",
      all(v == 0 for v in ledger.summary()["savings"].values()), str(ledger.summary()["savings"]))

# ---------------------------------------------------------------------------------------------
section("8. Plot: per-layer cost by phase, all trained vs first two blocks frozen")
COLORS = {"forward": "#4c72b0", "backward_input": "#dd8452", "backward_weight": "#c44e52", "update": "#55a868"}
names = [n for n in full if any(full[n][p] for p in PHASES)]          # drop Flatten (no work)
fig = Figure(figsize=(15, 6.5), layout="constrained")
axes = fig.subplots(1, 3, sharey=True)
ypos = np.arange(len(names))
for ax, (key, scale, unit) in zip(axes, (("macs", 1e-6, "MMACs"), ("bytes", 1e-6, "MB"),
                                         ("energy_pj", 1e-9, "mJ"))):
    for offset, per_layer, hatch in ((-0.2, full, None), (0.2, frozen, "//")):
        left = np.zeros(len(names))
        for ph in PHASES:
            v = np.array([getattr(per_layer[n][ph], key) for n in names], dtype=float) * scale
            ax.barh(ypos + offset, v, left=left, height=0.38, color=COLORS[ph], hatch=hatch,
                    edgecolor="white" if hatch else None, lw=0)
            left += v
    ax.margins(x=0.04)
    ax.set_xlim(left=0)
    ax.set_xlabel(f"{unit} in one step (batch {N})")
    ax.set_title({"macs": "MACs", "bytes": "Bytes moved", "energy_pj": "Energy (Horowitz, DRAM)"}[key])
    ax.grid(axis="x", alpha=0.3)
axes[0].set_yticks(ypos, names)
axes[0].invert_yaxis()
from matplotlib.patches import Patch  # noqa: E402  (legend handles)
handles = [Patch(color=COLORS[p], label=p) for p in PHASES]
handles += [Patch(facecolor="0.6", label="upper bar: all layers trained"),
            Patch(facecolor="0.6", hatch="//", edgecolor="white", label="lower bar: conv1-2 + bn1-2 frozen")]
fig.legend(handles=handles, loc="outside lower center", ncol=6, fontsize=9, frameon=False)
fig.suptitle(f"convnet-small, one training step: cost per layer and phase "
             f"(frozen run saves {s2['savings']['macs']:.0%} of MACs, {s2['savings']['energy']:.0%} of energy)",
             fontweight="bold")
save(fig, "03_cost_per_layer.png")
print("\nDone. Next: lessons/04_gradient_statistics.py")
finish()
