"""Lesson 10: predictive sign gradients (PSG, E2-Train §3.3) on an emulated fixed-point machine.

Run it top to bottom:

    python lessons/10_psg.py

E2-Train (papers/001, §3.3) trains with the *sign* of the weight gradient
(signSGD), and predicts that sign cheaply: the weight gradient is computed
once from the few most significant bits (MSBs) of the fixed-point input and
output gradient, g_w^msb; where that prediction is large enough
(|g_w^msb| >= tau, the "adaptive threshold" tau = beta * max g_w^msb of
§3.3, read as max|g_w^msb| as the official ``predictive.py`` does) its sign
is used, elsewhere the full fixed-point gradient g_w decides (Eq. 2). The
predictor's MACs are 4 x 10-bit, the full gradient's 8 x 16-bit (§4.4's
widths). §4.1 trains PSG at lr 0.03 and with stochastic weight averaging
(SWA). This lesson

1. draws the fixed-point number line: the 8-bit grid and the 4-bit MSB
   grid of minicnn.quant (the official code, ``models/quantize.py``, rounds to
   the MSB grid; the paper, §3.3, says "taking the most significant bits
   (MSBs)", i.e. truncating);
2. runs one PSG step on a real conv by hand: how many weights the predictor
   decides and how often its sign is right, against the predictor's width
   (Eq. 3: the failure probability falls with it);
3. trains resnet8 with the baseline, ``fixed8``, ``signsgd`` and ``psg``;
4. puts the hardware energy estimate, term by term, beside the CPU wall time;
5. adds what §4.1 runs with PSG, stochastic weight averaging (``--method swa``):
   the averaged weights, the BatchNorm statistics recomputed on the training
   set, and what the ledger counts for both.

Figures (output folder): ``10_number_line.png``, ``10_sign_agreement.png``, ``10_energy.png``.
"""
import inspect
import shutil

import numpy as np
from matplotlib.figure import Figure

from _lesson import QUICK, Timer, check, check_close, finish, grab_on_real_batch, load_data, out_dir, save, section
from minicnn.cost import Ledger
from minicnn.data import BatchIterator
from minicnn.hooks import Hook, HookList
from minicnn.methods import build_methods
from minicnn.methods._psg import psg_sign_rule
from minicnn.models import build
from minicnn.quant import activation_range, fixed_point, gradient_range, msb_codes, weight_range
from minicnn.quant.reference import msb_truncate_naive
from minicnn.training import SGD, Trainer, make_schedule

N_TRAIN, N_TEST, EPOCHS, BATCH = (256, 100, 2, 64) if QUICK else (1024, 500, 4, 64)
SEED = 0
rng = np.random.default_rng(0)



# ---------------------------------------------------------------------------------------------
section("1. The fixed-point number line: 8-bit codes and their 4 MSBs")
# A signed tensor of range r: lo = -r, step = 2r / 2^8, code = round(clip((x - lo) / step, 0, 255)).
r, bits, m = 1.0, 8, 4
xs = np.array([-1.0, -0.6123, -0.02, 0.0, 0.0271, 0.3333, 0.9, 0.999, 1.0, 1.7])
q = fixed_point(xs, bits, r, True, msb_bits=m, want_code=True)
print(f"range r = {r}, {bits} bits: lo = {q.lo[0]}, step = {q.step[0]} (the top code {2**bits - 1} is r - step)")
print(f"{'x':>9}{'code':>6}{'8-bit value':>13}{'MSB code (round)':>18}{'MSB value':>11}{'MSB code (trunc)':>18}")
trunc = msb_truncate_naive(q.code, bits, m)
for xi, c, v, mc, mv, tc in zip(xs, q.code, q.value, msb_codes(q.code, bits, m), q.msb, trunc):
    print(f"{xi:>9.4f}{c:>6}{v:>13.6f}{mc:>18}{mv:>11.4f}{tc:>18}")
inside = xs < r - q.step[0] / 2
check("inside the range, the error is at most half a step", np.all(np.abs(q.value - xs)[inside] <= q.step[0] / 2))
check("MSB codes are multiples of 2^(8-4) = 16 (or the top code)",
      np.all((msb_codes(q.code, bits, m) % 16 == 0) | (msb_codes(q.code, bits, m) == 255)))
dense = np.linspace(-1.2, 1.2, 20001)
qd = fixed_point(dense, bits, r, True, msb_bits=m, want_code=True)
err_round = np.abs(qd.msb - qd.value).mean()
err_trunc = np.abs(msb_truncate_naive(qd.code, bits, m) * qd.step[0] + qd.lo[0] - qd.value).mean()
print(f"mean |MSB - 8-bit value| on a fine line: rounding {err_round:.4f}, truncation {err_trunc:.4f}")
check("rounding to the MSB grid is closer than truncating", err_round < err_trunc)

fig = Figure(figsize=(12, 3.6), layout="constrained")
ax = fig.subplots()
window = (dense > -0.3) & (dense < 0.3)
ax.plot(dense[window], qd.value[window], lw=1, label="8-bit value (step 2r/256)")
ax.plot(dense[window], qd.msb[window], lw=1.5, label="4-MSB predictor, rounded (official code)")
ax.plot(dense[window], (msb_truncate_naive(qd.code, bits, m) * qd.step[0] + qd.lo[0])[window], lw=1, ls="--",
        label="4 MSBs, truncated (the paper's wording)")
ax.plot(dense[window], dense[window], color="k", lw=0.5, label="x")
ax.set(xlabel="x", ylabel="represented value", title="Quantizer of a signed tensor, range 1: a window around 0")
ax.legend(fontsize=8)
ax.grid(alpha=0.3)
save(fig, "10_number_line.png")

# ---------------------------------------------------------------------------------------------
section("2. One PSG step by hand on a real conv: how good is the sign predictor?")


ds = load_data(N_TRAIN, N_TEST, seed=0)
model, grab = grab_on_real_batch("layer1.0.conv2", ds, BATCH, SEED)   # one forward and backward on real images
conv = next(l for l in model.leaves() if l.name == grab.name)
x, dy = grab.x, grab.dy
g_fp32 = conv.weight_grad(x, dy)
signed = bool((x < 0).any())
print(f"{grab.name}: x {x.shape} ({'signed' if signed else 'non-negative, after a ReLU'}), dy {dy.shape}, "
      f"weight {conv.params['weight'].shape}")
qx = fixed_point(x, 8, activation_range(x), signed, msb_bits=4)
g_full = conv.weight_grad(qx.value, fixed_point(dy, 16, gradient_range(dy), True).value)
print(f"8-bit x and 16-bit dy: sgn(g_w) equals the fp32 gradient's sign on "
      f"{np.mean(np.sign(g_full) == np.sign(g_fp32)):.2%} of the weights")
print(f"{'msb_g':>6}{'predicted (beta=0.05)':>23}{'agree where predicted':>23}{'agree overall':>15}")
rows = {}
for msb_g in (2, 4, 6, 8, 10, 12):
    qdy = fixed_point(dy, 16, gradient_range(dy), True, msb_bits=msb_g)
    g_msb = conv.weight_grad(qx.msb, qdy.msb)
    rule = psg_sign_rule(g_msb, g_full, 0.05)
    same = np.sign(g_msb) == np.sign(g_full)
    rows[msb_g] = (rule.predicted.mean(), same[rule.predicted].mean(), same.mean(),
                   np.mean(rule.direction == np.sign(g_full)))
    print(f"{msb_g:>6}{rows[msb_g][0]:>23.1%}{rows[msb_g][1]:>23.2%}{rows[msb_g][2]:>15.2%}")
check("where the predictor decides, it is right more often than over all weights", rows[10][1] >= rows[10][2])
check("a wider predictor agrees more often (Eq. 3)", rows[12][2] > rows[2][2])
betas = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
qdy = fixed_point(dy, 16, gradient_range(dy), True, msb_bits=10)
g_msb = conv.weight_grad(qx.msb, qdy.msb)
by_beta = [(psg_sign_rule(g_msb, g_full, b).predicted.mean(),
            np.mean(psg_sign_rule(g_msb, g_full, b).direction == np.sign(g_full))) for b in betas]
print("beta:               " + "".join(f"{b:>7}" for b in betas))
print("predicted:          " + "".join(f"{p:>7.1%}" for p, _ in by_beta))
print("final sign correct: " + "".join(f"{a:>7.1%}" for _, a in by_beta))
fig = Figure(figsize=(12, 4), layout="constrained")
ax1, ax2 = fig.subplots(1, 2)
ks = sorted(rows)
ax1.plot(ks, [100 * rows[k][1] for k in ks], "-o", label="agree where predicted (beta 0.05)")
ax1.plot(ks, [100 * rows[k][2] for k in ks], "-o", label="agree over all weights")
ax1.set(xlabel="msb_g (predictor bits of dy; msb_x = 4)", ylabel="sign agreement with g_w (%)",
        title="Predictor width (Eq. 3)")
ax1.legend(fontsize=8)
ax1.grid(alpha=0.3)
ax2.plot(betas, [100 * p for p, _ in by_beta], "-o", label="weights decided by the predictor")
ax2.plot(betas, [100 * a for _, a in by_beta], "-o", label="final direction = sgn(g_w)")
ax2.set(xlabel="beta", ylabel="%", title="Adaptive threshold tau = beta * max|g_w^msb|")
ax2.legend(fontsize=8)
ax2.grid(alpha=0.3)
fig.suptitle(f"PSG on {grab.name} of resnet8, one batch", fontweight="bold")
save(fig, "10_sign_agreement.png")

# ---------------------------------------------------------------------------------------------
section(f"3. Training resnet8: baseline, fixed8, signsgd and psg ({EPOCHS} epochs)")
runs = out_dir() / "10_runs"
shutil.rmtree(runs, ignore_errors=True)
results = {}
# lr: §4.1 "For experiments where PSG is used, the initial learning rate is adjusted to 0.03" (signSGD too here)
for name, specs, lr in (("baseline", [], 0.05), ("fixed8", ["fixed8"], 0.05), ("signsgd", ["signsgd"], 0.03),
                        ("psg", ["psg"], 0.03)):
    m = build("resnet8", num_classes=ds.num_classes, seed=SEED)
    ledger = Ledger(m, momentum=True)
    tr = Trainer(m, ds, SGD(m, lr=lr, momentum=0.9, weight_decay=1e-4), make_schedule("constant", lr, EPOCHS),
                 EPOCHS, batch_size=BATCH, methods=build_methods(specs), ledger=ledger, run_dir=str(runs / name),
                 seed=SEED, progress=False)
    with Timer() as t:
        s = tr.fit()
    results[name] = (tr, s, t.seconds)
    print(f"  {name:<9} lr {lr}: final test accuracy {s['final_test_acc']:.1%}, {t.seconds:.1f} s")
recs = [h["method_records"]["psg"] for h in results["psg"][0].state.history]
for i, rec in enumerate(recs):
    print(f"  psg epoch {i + 1}: the predictor decided {rec['predicted']:.1%} of the conv weights' signs "
          f"(E2-Train §4.4: 'at least 60%'), and agreed with sgn(g_w) on {rec['agree']:.2%} of those")
check("the predictor decided some of the signs every epoch", all(0 < rec["predicted"] <= 1 for rec in recs))

# ---------------------------------------------------------------------------------------------
section("4. The energy estimate, term by term, beside the CPU wall time")
phases = ("forward", "backward_input", "backward_weight", "update")
print(f"{'':<17}" + "".join(f"{p:>17}" for p in phases) + f"{'total (J)':>12}{'saved':>8}{'CPU s':>8}")
base_total = results["baseline"][1]["energy_j"]["total"]
for name, (tr, s, secs) in results.items():
    e = s["energy_j"]
    print(f"{name:<17}" + "".join(f"{e[p]:>17.4f}" for p in phases)
          + f"{e['total']:>12.4f}{1 - e['total'] / base_total:>8.1%}{secs:>8.1f}")
psg_tr = results["psg"][0]
pred = psg_tr.ledger.extra_totals()["backward_weight"]
bw = results["psg"][1]["energy_j"]["backward_weight"]
print(f"psg's backward_weight, split: the predictor over every conv weight ({pred.macs:,} MACs at 10 bits) "
      f"{pred.energy_pj * 1e-12:.4f} J; the fallback for the weights below tau and the fp32 BN/Linear "
      f"gradients {bw - pred.energy_pj * 1e-12:.4f} J")
print("Every byte is priced at DRAM cost here (the ledger's default), so memory traffic dominates all rows;")
print("8-bit and 16-bit tensors cut it, the narrower MACs cut the rest.")
print("E2-Train Table 2 (ResNet-74, CIFAR-10): 8-bit saves 38.62%, PSG 63.28% -- measured on an FPGA board")
print("(§4.1: 'All energy results are measured from FPGA'); the ledger's figures here are a model, not a measurement.")
print("The CPU emulates fixed point in float32 and computes two weight gradients for PSG: its wall time is")
print("*longer* than the baseline's; the saving is what fixed-point hardware would get (the ledger's estimate).")
check("estimated energy: psg < fixed8 < baseline",
      results["psg"][1]["energy_j"]["total"] < results["fixed8"][1]["energy_j"]["total"]
      < results["baseline"][1]["energy_j"]["total"])
fig = Figure(figsize=(10, 4), layout="constrained")
ax = fig.subplots()
colors = {"forward": "#4c72b0", "backward_input": "#dd8452", "backward_weight": "#c44e52", "update": "#55a868"}
for i, (name, (tr, s, secs)) in enumerate(results.items()):
    left = 0.0
    for p in phases:
        ax.barh(i, s["energy_j"][p], left=left, color=colors[p], label=p if i == 0 else None)
        left += s["energy_j"][p]
    ax.text(left, i, f"  {left:.3f} J, CPU {secs:.0f} s", va="center", fontsize=9)
ax.set_yticks(range(len(results)), list(results))
ax.invert_yaxis()
ax.margins(x=0.3)
ax.set(xlabel="estimated training energy (J)", title="Where the energy goes (ledger estimate) and the CPU time")
ax.legend(fontsize=8, loc="lower right")
save(fig, "10_energy.png")

# ---------------------------------------------------------------------------------------------
section("5. Stochastic weight averaging, which §4.1 runs whenever PSG is on")
print(inspect.cleandoc("""
    E2-Train §4.1: "We also employed the stochastic weight averaging (SWA) technique [67], which was
    found to notably stabilize training, when PSG is adopted." [67] is SWALP (Yang et al. 2019, SWA in
    low-precision training). The paper gives no setting and the official code has no SWA, so
    ``--method swa`` takes Izmailov et al.'s: after each epoch from the start on (default: the last
    quarter of the run) the weights join a running mean, w_swa <- w_swa + (w - w_swa) / (n + 1); at the
    end the mean replaces the weights and every BatchNorm's running statistics are recomputed by one
    pass over the training set, shuffled and augmented as training makes it (the old ones belong to
    weights the model no longer has; an un-augmented pass was measured to cost PSG 3 points). The trainer
    then evaluates the averaged model: summary.json's final accuracy and model.npz are its.
    Here: psg + swa:start=1 (every epoch averaged, this run is short), same seed as the psg run above.
"""))


class Snapshots(Hook):
    """An observer: the weights after every epoch (it runs after the methods' on_epoch_end)."""

    def __init__(self):
        self.w = []

    def on_epoch_end(self, state):
        self.w.append({q: layer.params[p].copy() for q, layer, p in state.model.named_parameters()})


m = build("resnet8", num_classes=ds.num_classes, seed=SEED)
ledger = Ledger(m, momentum=True)
swa_methods = build_methods(["psg", "swa:start=1"])
snaps = Snapshots()
tr = Trainer(m, ds, SGD(m, lr=0.03, momentum=0.9, weight_decay=1e-4), make_schedule("constant", 0.03, EPOCHS),
             EPOCHS, batch_size=BATCH, methods=swa_methods, ledger=ledger, stats=snaps,
             run_dir=str(runs / "psg+swa"), seed=SEED, progress=False)
s_swa = tr.fit()
fe, rec = s_swa["final_eval"], s_swa["method_records"]["swa"]
print(f"  snapshots after epochs {rec['snapshot_epochs']}; the last epoch's weights: test accuracy "
      f"{fe['last_epoch_test_acc']:.1%}; the averaged model: {fe['test_acc']:.1%} (summary final_test_acc "
      f"{s_swa['final_test_acc']:.1%})")
check("SWA does not change training: the last epoch's accuracy is the psg run's",
      fe["last_epoch_test_acc"] == results["psg"][1]["final_test_acc"])
w = "layer1.0.conv1.weight"
by_hand = np.mean([sn[w].astype(np.float64) for sn in snaps.w], axis=0)
layer = next(l for q, l, p in m.named_parameters() if q == w)
print(f"  {w}[0, 0, 0]: per epoch {[float(sn[w][0, 0, 0, 0]) for sn in snaps.w]}, "
      f"their mean {by_hand[0, 0, 0, 0]:.6f}, the model now {layer.params['weight'][0, 0, 0, 0]:.6f}")
check("the model's weights are the mean of the snapshots (every parameter)",
      all(np.allclose(l.params[p], np.mean([sn[q].astype(np.float64) for sn in snaps.w], axis=0), rtol=1e-6, atol=1e-6)
          for q, l, p in m.named_parameters()))


class GrabBN1(Hook):
    def __init__(self):
        self.x = []

    def forward_input(self, layer, x):
        if layer.name == "bn1":
            self.x.append(x.astype(np.float64))
        return x


# bn1 (after the stem conv) sees an input no other BatchNorm shapes: recompute its statistics by hand with the
# forward evaluation runs (psg's 8-bit conv1), over the same pass (its order and augmentation come from the seed
# the summary records), averaged over images as the method does
grab = GrabBN1()
m.set_hooks(HookList([swa_methods[0], grab]))
m.eval()
for xb, _ in BatchIterator(tr.dataset.train_x, tr.dataset.train_y, BATCH, shuffle=True, augment=tr.train_iter.augment,
                           mean=tr.mean, std=tr.std, seed=rec["bn_update"]["seed"]):
    m.forward(xb)
sizes = [len(x) for x in grab.x]
mu = np.average([x.mean(axis=(0, 2, 3)) for x in grab.x], axis=0, weights=sizes)
var = np.average([x.transpose(1, 0, 2, 3).reshape(x.shape[1], -1).var(axis=1, ddof=1) for x in grab.x], axis=0,
                 weights=sizes)
bn1 = m["bn1"]
old_mu = results["psg"][0].model["bn1"].buffers["running_mean"]
print(f"  bn1 running mean, channel 0: the psg run's {old_mu[0]:.4f}; recomputed by swa "
      f"{bn1.buffers['running_mean'][0]:.4f}; by hand over {sum(sizes)} training images {mu[0]:.4f}")
check_close("bn1's recomputed statistics = a pass by hand (mean and unbiased variance, averaged over images)",
            np.concatenate([mu, var]), np.concatenate([bn1.buffers["running_mean"], bn1.buffers["running_var"]]),
            rtol=1e-5, atol=1e-6)
work = rec["work"]
per_epoch_fwd = s_swa["dense_macs"]["forward"] // s_swa["epochs"]
print(f"  the ledger, declared extra work: averaging {work['update']['ops']:,} ops, {work['update']['bytes']:,} bytes "
      f"(update phase); the BatchNorm pass {work['forward']['macs']:,} MACs (forward phase) = one forward over "
      f"the {rec['bn_update']['images']} training images ({per_epoch_fwd:,} MACs an epoch of forwards); "
      f"{(work['update']['energy_pj'] + work['forward']['energy_pj']) * 1e-12 / s_swa['energy_j']['total']:.1%} "
      "of the run's training energy")
check("the BatchNorm pass is counted as one forward over the training set", work["forward"]["macs"] == per_epoch_fwd)
finish()
