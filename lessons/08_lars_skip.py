"""Lesson 8: layer skip learning with LARS variables (Miyauchi et al., §III Eq. 1-3, Alg. 1, §IV).

Run it top to bottom:

    python lessons/08_lars_skip.py

1. what the paper claims, and which of its figures are operations and which are time;
2. nw = ||W|| / ||W - W(start of epoch)|| on real tensors, by hand and by minicnn;
3. the decision: the deepest conv over alpha, the cut snapped to a block boundary, full epochs;
4. calibrating alpha: a run that records nw and never freezes (alpha = 1e9), then a choice;
5. the same seed with that alpha: what was frozen, the backward work saved, the accuracy;
6. a plot of nw per conv over the epochs with the frozen prefix shaded.

Figure: ``08_lars_nw.png`` in the output folder.
"""
import inspect

import matplotlib
import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from _lesson import QUICK, check, finish, load_data, save, section
from _runs import train
from minicnn.methods.lars_skip import LarsSkipController, conv_layout, layer_nw
from minicnn.models import build

if QUICK:
    N_TRAIN, N_VAL, N_TEST, EPOCHS, BATCH = 256, 100, 100, 6, 32
else:
    N_TRAIN, N_VAL, N_TEST, EPOCHS, BATCH = 3600, 500, 1000, 10, 128
ARCH, LR, SEED = "resnet8", 0.05, 0

# ---------------------------------------------------------------------------------------------
section("1. What the paper claims")
print(inspect.cleandoc("""
    VGG-F on ImageNet (batch 32, lr 0.001, alpha = 2, §IV; 20 epochs, Table I). After each epoch, nw of
    each conv (§III, Eq. 1-3, You et al.'s LARS ratio [9]) says how little it moved; if a conv's nw
    exceeds alpha, the next epoch trains only the layers after it (Alg. 1 lines 4-6 return for every
    layer i <= l; the text's "only layers below that layer are learned" must mean that): no backward
    below the cut. In epochs whose accuracy fell, every layer trains (§IV). Claimed (§IV, abstract):
    -39.0% MAC operations and -38.9% bandwidth (Figs. 6-7), +3.0 points top-1 (Table I). Two kinds of
    figure: the -39% counts operations; wall time after 20 epochs fell only 7.1% (Table I, 111386 s ->
    103460 s), and the abstract's 2.14x is the time to reach the baseline's best accuracy (Table II).
    An inference (minicnn's, not the paper's): conv1-2 hold 58.4% of VGG-F's MACs (§III, Figs. 2-3) and
    a conv's backward is 2/3 of its training work, so freezing conv1-2 in almost every epoch would save
    58.4% x 2/3 = 38.9% -- the paper's -39% fits that, but it does not say how often conv1-2 were frozen.
"""))

# ---------------------------------------------------------------------------------------------
section("2. nw on real tensors")
ds = load_data(N_TRAIN + N_VAL, N_TEST, seed=0)
# one epoch with nothing frozen, recording nw: alpha so large that nothing is ever frozen
tr, summ, _ = train(ds, ["lars-skip:alpha=1e9"], arch=ARCH, epochs=1, lr=LR, schedule="constant",
                    batch_size=BATCH, val_images=N_VAL, seed=SEED)
start = build(ARCH, num_classes=ds.num_classes, seed=SEED)          # the same initial weights
name = "layer2.0.conv1"
w0 = [m for m in start.leaves() if m.name == name][0].params["weight"]
w1 = [m for m in tr.model.leaves() if m.name == name][0].params["weight"]
norm_w = np.sqrt((w1.astype(np.float64) ** 2).sum())
norm_dw = np.sqrt(((w1.astype(np.float64) - w0) ** 2).sum())
nw_rec = summ["method_records"]["lars-skip"]["per_epoch"][0]["nw"]
print(f"  {name}: ||W|| = {norm_w:.4f}, ||W - W_start|| = {norm_dw:.4f}, nw = {norm_w / norm_dw:.3f} (by hand)")
print(f"  layer_nw(...) = {layer_nw(w1, w0):.3f}; recorded by the method: {nw_rec[name]:.3f}")
check("Eq. 1-3 by hand = the method's record", abs(norm_w / norm_dw - nw_rec[name]) < 1e-9 * nw_rec[name])
print("  nw of every conv after epoch 1 (small = moved a lot):")
for k, v in nw_rec.items():
    print(f"    {k:<24} {v:8.1f}")

# ---------------------------------------------------------------------------------------------
section("3. The decision")
r20 = build("resnet20", num_classes=10, seed=0)
convs, allowed, frozen_sets = conv_layout(r20)
print(f"  resnet20 has {len(convs)} convs; a cut may fall after {allowed} convs (block boundaries:")
print("  the stem conv, then 2 convs per block, 3 in a block with a projection shortcut)")
names = [c.name for c in convs]
ctl = LarsSkipController(alpha=25.0)
fake = {n: 10.0 for n in names}
fake["layer2.1.conv1"] = 30.0                        # mid-block: the cut snaps down to layer2.0's end
k, why = ctl.decide(fake, acc_fell=False, conv_order=names, allowed=allowed)
print(f"  nw 30 at layer2.1.conv1, 10 elsewhere, alpha 25 -> freeze {k} convs: {why}")
check("only whole blocks are frozen (snapped down)", k == 10 and names[k - 1] == "layer2.0.shortcut_conv")
k2, why2 = ctl.decide({n: 10.0 for n in names[k:]}, acc_fell=False, conv_order=names, allowed=allowed)
print(f"  next epoch: only the trained convs are measured (the frozen ones have nw = inf); all under alpha "
      f"-> {k2} frozen ({why2})")
check("a frozen conv's infinite nw never keeps it frozen", k2 == 0)
k3, why3 = ctl.decide({n: 99.0 for n in names}, acc_fell=True, conv_order=names, allowed=allowed)
check(f"after an epoch whose validation accuracy fell: a full epoch ({why3})", k3 == 0)

# ---------------------------------------------------------------------------------------------
section(f"4. Calibrating alpha: {ARCH}, {EPOCHS} epochs, nothing frozen, nw recorded")
base_tr, base, base_secs = train(ds, ["lars-skip:alpha=1e9"], arch=ARCH, epochs=EPOCHS, lr=LR,
                                 schedule="cosine", batch_size=BATCH, val_images=N_VAL, seed=SEED)
base_nw = [r["nw"] for r in base["method_records"]["lars-skip"]["per_epoch"]]
for e, nw in enumerate(base_nw, start=1):
    v = np.array(list(nw.values()))
    print(f"  epoch {e}: nw min {v.min():7.1f}  median {np.median(v):7.1f}  max {v.max():7.1f}")
alpha = float(np.median(list(base_nw[1].values())))
print(inspect.cleandoc(f"""
    nw grows as the learning rate decays (the steps get smaller) and is larger with fewer steps an
    epoch, so alpha = 2 (VGG-F, ImageNet, lr 0.001, 40,000 steps an epoch) would freeze every conv
    here after the first epoch. On this run the deeper convs have the larger nw -- the reverse of
    what the paper wanted on VGG-F, an alpha that skips conv1-2 "as much as possible" (§III) -- so
    "the deepest conv over alpha" tends to freeze most of the
    network at once. The recipe: run a few epochs with alpha=1e9 (this run), then take alpha between
    the nw of the convs you want frozen and the rest. This lesson takes the median nw of epoch 2:
    alpha = {alpha:.1f}.
"""))

# ---------------------------------------------------------------------------------------------
section(f"5. The same seed with lars-skip:alpha={alpha:.1f}")
lars_tr, lars, lars_secs = train(ds, [f"lars-skip:alpha={alpha}"], arch=ARCH, epochs=EPOCHS, lr=LR,
                                 schedule="cosine", batch_size=BATCH, val_images=N_VAL, seed=SEED)
rec = lars["method_records"]["lars-skip"]
print(f"  {'epoch':>5} {'frozen convs':>13} {'val acc':>8} {'base val':>9} {'MACs':>10} {'base MACs':>10}   next epoch")
bw = np.diff([0] + [r["macs_cum"] for r in lars_tr.state.history])
bbw = np.diff([0] + [r["macs_cum"] for r in base_tr.state.history])
for r, p, b, m, bm in zip(lars_tr.state.history, rec["per_epoch"], base_tr.state.history, bw, bbw):
    print(f"  {r['epoch']:>5} {p['frozen_convs']:>13} {100 * r['val_acc']:>7.1f}% {100 * b['val_acc']:>8.1f}% "
          f"{m:>10.3g} {bm:>10.3g}   {p['reason']}")
ks = rec["frozen_convs_per_epoch"]
check("the first epoch trains every layer (no nw yet)", ks[0] == 0)
check("the calibrated alpha froze a prefix in some epoch", any(k > 0 for k in ks))
check("every epoch with a frozen prefix did fewer MACs than the baseline's same epoch",
      all(bw[e] < bbw[e] for e in range(len(ks)) if ks[e] > 0))
saved = 1 - lars["macs"]["total"] / base["macs"]["total"]
saved_bw = 1 - (lars["macs"]["backward_input"] + lars["macs"]["backward_weight"]) / \
    (base["macs"]["backward_input"] + base["macs"]["backward_weight"])
print(f"  MACs saved over the run: {saved:.1%} (backward: {saved_bw:.1%}); training time "
      f"{sum(lars_secs):.1f} s vs {sum(base_secs):.1f} s (measured, not asserted)")
print(f"  final test accuracy {lars['final_test_acc']:.1%} vs baseline {base['final_test_acc']:.1%}; "
      "decisions were made on the validation accuracy")
check("the ledger shows the backward work not done", saved > 0)

# ---------------------------------------------------------------------------------------------
section("6. nw per conv over the epochs, frozen prefix shaded")
cnames = list(base_nw[0])
fig = Figure(figsize=(13, 5.2), layout="constrained")
ax1, ax2 = fig.subplots(1, 2, width_ratios=[1.1, 1])
grid = np.full((len(cnames), len(ks)), np.nan)
for e, p in enumerate(rec["per_epoch"]):
    for i, n in enumerate(cnames):
        if p["nw"].get(n) is not None:
            grid[i, e] = p["nw"][n]
im = ax1.imshow(grid, aspect="auto", cmap="viridis", norm=LogNorm(), origin="upper",
                extent=(0.5, len(ks) + 0.5, len(cnames) - 0.5, -0.5))
for e, k in enumerate(ks, start=1):
    if k:
        ax1.add_patch(Rectangle((e - 0.5, -0.5), 1, k, facecolor="white", edgecolor="#c44e52", hatch="//",
                                alpha=0.9))
ax1.set_yticks(range(len(cnames)), cnames, fontsize=7)
ax1.set(xlabel="epoch", title=f"lars-skip alpha={alpha:.1f}: nw measured (colour); frozen prefix hatched")
fig.colorbar(im, ax=ax1, label="nw (log)")
cmap = matplotlib.colormaps["plasma"]
for i, n in enumerate(cnames):
    ax2.plot(range(1, len(base_nw) + 1), [r[n] for r in base_nw], "-", color=cmap(i / max(1, len(cnames) - 1)),
             lw=1.2, label=n)
ax2.axhline(alpha, color="k", ls="--", lw=1, label=f"alpha = {alpha:.1f}")
ax2.set_yscale("log")
ax2.set(xlabel="epoch", ylabel="nw = ||W|| / ||dW||", title="nw with nothing frozen (alpha = 1e9), per conv")
ax2.grid(alpha=0.3)
ax2.legend(fontsize=6, ncol=2, loc="upper left")
save(fig, "08_lars_nw.png")
finish()
