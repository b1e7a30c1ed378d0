"""Lesson 11: selective layer update (SLU) -- learned gates that skip residual blocks per sample.

Run it top to bottom:

    python lessons/11_slu.py

E2-Train (Wang et al., NeurIPS 2019) §3.2 adds "a light-weight RNN gating network per
layer block" (the official code, GATECH-EIC/E2Train: every residual block but the first).
Per sample, the gate reads the block's input -- the previous block's output -- and decides
whether the block runs, "during both feed-forward and back-propagation" (§3.2). Eq. 1,
min L + alpha * C (C: the FLOPs of the selected layers), pushes the executed fraction down;
the official code (main_all.py, ``--minimum``) gives the term a sign s = +1 above a target
and -1 below it, loss = L + alpha * s * C, so that C settles near the target: minicnn's
term is that one. This lesson

1. builds the gates (the official design, §3.2 leaves it to its supplement: global
   pooling -> 1x1 "conv" to 10 -> one shared LSTM cell -> linear -> sigmoid) and measures
   what they cost next to the network they steer;
2. trains with SLU (exec=skip: skipped samples are really not computed) and follows the
   executed fraction of every gate over training;
3. shows which blocks ran for a few test images;
4. compares exec=skip with exec=mask (the official code: compute every block, multiply by
   the decision afterwards) -- the same seed, so the same first decisions;
5. puts SLU next to stochastic depth (Huang et al. 2016) at equal executed work and a
   plain run: test accuracy against training energy (the paper's Figs. 4-5; §4.3 sets SD's
   dropping ratio equal to SLU's);
6. looks at what the gates learn from: the straight-through task gradient dL/dm, per image.

Figures: ``11_gates.png``, ``11_accuracy_vs_energy.png`` and ``11_gate_signal.png`` in the output folder.
"""
import numpy as np
from matplotlib.figure import Figure

from _lesson import QUICK, Timer, check, finish, load_data, save, section
from minicnn.cost import Ledger
from minicnn.hooks import HookList
from minicnn.losses import SoftmaxCrossEntropy
from minicnn.methods import attach, build_methods
from minicnn.models import build
from minicnn.training import SGD, Trainer, make_schedule

MODEL = "resnet8" if QUICK else "resnet20"
N_TRAIN, N_TEST, EPOCHS = (256, 100, 2) if QUICK else (1024, 500, 4)
BATCH, LR, SEED, TARGET = 64, 0.1, 0, 0.6

ds = load_data(N_TRAIN, N_TEST, seed=0)

# ---------------------------------------------------------------------------------------------
section("1. The gates and what they cost")
model = build(MODEL, num_classes=ds.num_classes, seed=SEED)
slu = build_methods([f"slu:target={TARGET}"])[0]
attach(model, [slu])                      # the gates become model.aux layers: trained, saved, counted
print(f"{MODEL}: {len(slu.gated)} gated blocks (every block but the first); the gate layers:")
for q, layer, p in model.named_parameters():
    if q.startswith("aux."):
        print(f"  {q:<28} {str(layer.params[p].shape):<10}")
gate_params = sum(layer.num_params() for layer in slu.gates.layers())
print(f"gate parameters: {gate_params:,} ({gate_params / (model.num_params() - gate_params):.2%} of the network's)")
ledger = Ledger(model)
model.set_hooks(HookList([slu, ledger]))
model.eval()
x8 = (ds.test_x[:1].astype(np.float32) / 255 - 0.5) / 0.25
model.forward(x8)
per = ledger.per_layer()
gate_macs = sum(c["eval"].macs for n, c in per.items() if n.startswith("aux."))
net_macs = sum(c["eval"].macs for n, c in per.items() if not n.startswith("aux."))
print(f"one image at evaluation: gates {gate_macs:,} MACs, the blocks that ran {net_macs:,} MACs "
      f"-> the gates cost {gate_macs / net_macs:.4%} (§3.2: under 0.04% of the feed-forward FLOPs for its RNN gates)")
check("the gates cost under 1% of the MACs of the blocks they steer", gate_macs < 0.01 * net_macs,
      f"{gate_macs / net_macs:.4%}")
print(f"which blocks this untrained network ran for it: {slu.executed_blocks()[0].astype(int)} "
      "(p starts near 0.5, the threshold at evaluation)")

# ---------------------------------------------------------------------------------------------
section(f"2. Training with SLU (target {TARGET}, exec=skip): {MODEL}, {N_TRAIN} images, {EPOCHS} epochs")


def train(specs, name):
    model = build(MODEL, num_classes=ds.num_classes, seed=SEED)       # identical initial weights in every run
    methods = build_methods(specs)
    attach(model, methods)
    opt = SGD(model, lr=LR, momentum=0.9, weight_decay=5e-4)
    ledger = Ledger(model)
    tr = Trainer(model, ds, opt, make_schedule("cosine", LR, EPOCHS), EPOCHS, batch_size=BATCH,
                 augment=("flip", "crop"), methods=methods, ledger=ledger, seed=SEED, progress=False, verbose=False)
    with Timer() as t:
        summary = tr.fit()
    print(f"  {name:<26} {t.seconds:6.1f} s   final test accuracy {summary['final_test_acc']:.1%}")
    return dict(tr=tr, methods=methods, summary=summary, seconds=t.seconds, model=model, name=name)


runs = {"slu skip": train([f"slu:target={TARGET},exec=skip"], "SLU, exec=skip")}
hist = runs["slu skip"]["tr"].state.history
recs = [h["method_records"]["slu"] for h in hist]
print(f"\n{'epoch':<7}{'C (MAC-weighted)':>17}   each gate's fraction of samples run")
for h, r in zip(hist, recs):
    print(f"{h['epoch']:<7}{r['executed']:>17.3f}   " + " ".join(f"{v:.2f}" for v in r["gate_fractions"]))
print("C is the cost term's executed fraction; s = +1 pushes it down when above target, -1 up when below "
      f"(batches above target in the last epoch: {recs[-1]['above_target']:.0%})")
check("the executed fraction is strictly between 0 and 1 in every epoch",
      all(0.0 < r["executed"] < 1.0 for r in recs))
check(f"the cost term holds C within 0.1 of the target {TARGET} in the last epoch",
      abs(recs[-1]["executed"] - TARGET) <= 0.1, f"C = {recs[-1]['executed']:.3f}")

# ---------------------------------------------------------------------------------------------
section("3. Which blocks ran, per test image")
run = runs["slu skip"]
slu_trained, m = run["methods"][0], run["model"]
m.eval()
x = (ds.test_x[:8].astype(np.float32) / 255 - run["tr"].mean[:, None, None]) / run["tr"].std[:, None, None]
logits = m.forward(x.astype(np.float32))
ran = slu_trained.executed_blocks()
check("the first block always runs", ran[:, 0].all())
print("image  label  predicted  blocks run (1 = ran; the first block always runs)")
for i in range(len(x)):
    print(f"{i:<7}{ds.test_y[i]:<7}{logits[i].argmax():<11}{' '.join(str(int(v)) for v in ran[i])}")
print("a skipped block still passes the sample on through its shortcut (identity, or the 1x1 projection)")
p = np.stack(slu_trained.p, axis=1)
print(f"at evaluation a block runs when p > 0.5: here {ran[:, 1:].mean():.0%} of the gated blocks ran, while "
      f"training sampled m ~ Bernoulli(p) and ran {recs[-1]['executed']:.0%}.\n"
      f"p for these images: mean {p.mean():.2f}, spread across images {p.std(axis=0).mean():.3f} -- gates whose p "
      "sits on the same side of 0.5 for every image\nrun all or nothing at evaluation; the official code samples at "
      "evaluation too (slu:sample_at_eval=true) and so runs the training fraction, at the price of a random accuracy.")
print("Trained to 64 epochs (resnet8 and resnet20), the spread across images stays at 0.001-0.003: the gates learn\n"
      "the target rate, not which images may skip (README, 'Why SLU costs accuracy here'; run\n"
      "benchmarks/papers/converged/slu_gates.py on a model.npz to see it).")

# ---------------------------------------------------------------------------------------------
section("4. exec=skip against exec=mask (the official 'compute all, mask after'), same seed")
runs["slu mask"] = train([f"slu:target={TARGET},exec=mask"], "SLU, exec=mask")
print(f"\n{'':<34}{'skip':>14}{'mask':>14}")
rows = [("executed fraction C (last epoch)", lambda r: r["tr"].state.history[-1]["method_records"]["slu"]["executed"]),
        ("gate decisions with a task gradient", lambda r: r["tr"].state.history[-1]["method_records"]["slu"]
         ["task_grad_samples"]),
        ("final test accuracy", lambda r: r["summary"]["final_test_acc"]),
        ("training MACs", lambda r: r["summary"]["macs"]["total"]),
        ("training energy (J)", lambda r: r["summary"]["energy_j"]["total"]),
        ("wall time (s)", lambda r: r["seconds"])]
for label, f in rows:
    a, b = f(runs["slu skip"]), f(runs["slu mask"])
    print(f"{label:<34}{a:>14.4g}{b:>14.4g}")
check("exec=skip does fewer training MACs than exec=mask",
      runs["slu skip"]["summary"]["macs"]["total"] < runs["slu mask"]["summary"]["macs"]["total"])
check("exec=mask saves nothing (it computes every block)", runs["slu mask"]["summary"]["savings"]["macs"] <= 0.0,
      f"savings {runs['slu mask']['summary']['savings']['macs']:.1%}")
print("skip does the work of the blocks that ran only; mask does all of it (and BatchNorm sees the whole batch).\n"
      "The price of skipping: a skipped sample's gate gets no task gradient (F(x) was never computed),\n"
      "only the cost term's -- on this small run, compare the accuracies above.")

# ---------------------------------------------------------------------------------------------
section("5. SLU against stochastic depth at equal work, and a plain run")
sd_probe = build_methods(["stochastic-depth"])[0]
sd_probe.attach(build(MODEL, num_classes=ds.num_classes))
M = sd_probe.block_macs.astype(float)
c = float(np.mean([h["method_records"]["slu"]["executed"] for h in runs["slu skip"]["tr"].state.history]))
target_all = (M[0] + c * M[1:].sum()) / M.sum()          # SLU's first block always runs
print(f"SLU ran C = {c:.3f} of its gated blocks' work = {target_all:.3f} of all residual-branch work; "
      f"stochastic depth gets p_last for that expected fraction")
runs["sd"] = train([f"stochastic-depth:target={target_all:.4f}"], "stochastic depth")
runs["baseline"] = train([], "baseline")
sd_rec = runs["sd"]["tr"].state.history[-1]["method_records"]["stochastic-depth"]
print(f"stochastic depth: p_last = {sd_rec['p_last']:.3f}, executed {sd_rec['executed']:.3f} "
      f"(expected {sd_rec['expected_executed']:.3f})")
check("stochastic depth runs the expected fraction within 0.1", abs(sd_rec["executed"] - sd_rec["expected_executed"])
      <= 0.1, f"{sd_rec['executed']:.3f} vs {sd_rec['expected_executed']:.3f}")
check(f"SLU at target {TARGET} saves at least 20% of the training MACs", runs["slu skip"]["summary"]["savings"]["macs"]
      >= 0.2, f"{runs['slu skip']['summary']['savings']['macs']:.1%}")
print(f"\n{'run':<20}{'test acc':>10}{'energy (J)':>12}{'vs baseline':>13}")
eb = runs["baseline"]["summary"]["energy_j"]["total"]
for key in ("baseline", "sd", "slu skip", "slu mask"):
    r = runs[key]
    e = r["summary"]["energy_j"]["total"]
    print(f"{r['name']:<20}{r['summary']['final_test_acc']:>10.1%}{e:>12.4f}{e / eb:>12.0%}")

fig = Figure(figsize=(13, 4.6), layout="constrained")
ax1, ax2 = fig.subplots(1, 2)
for key, color in (("baseline", "#4c72b0"), ("sd", "#55a868"), ("slu skip", "#c44e52"), ("slu mask", "#dd8452")):
    h = runs[key]["tr"].state.history
    ax1.plot([r["energy_j_cum"] for r in h], [100 * r["test_acc"] for r in h], "-o", color=color,
             label=runs[key]["name"])
ax1.set_xlim(left=0)
ax1.set(xlabel="cumulative training energy (J, ledger estimate)", ylabel="test accuracy (%)",
        title="Accuracy against training energy (cf. E2-Train Figs. 4-5)")
ax1.legend(fontsize=8, loc="lower right")
ax1.grid(alpha=0.3)
e_all = [runs[k]["summary"]["energy_j"]["total"] for k in ("baseline", "sd", "slu skip", "slu mask")]
ax2.bar(range(4), e_all, color=["#4c72b0", "#55a868", "#c44e52", "#dd8452"])
ax2.set_xticks(range(4), ["baseline", "stoch. depth", "SLU skip", "SLU mask"])
ax2.set(ylabel="training energy of the run (J)", title="Energy of the whole run")
ax2.grid(axis="y", alpha=0.3)
fig.suptitle(f"SLU vs stochastic depth ({MODEL}, {ds.name})", fontweight="bold")
save(fig, "11_accuracy_vs_energy.png")

fig = Figure(figsize=(13, 4.4), layout="constrained")
ax1, ax2 = fig.subplots(1, 2)
fr = np.array([h["method_records"]["slu"]["gate_fractions"] for h in runs["slu skip"]["tr"].state.history])
for g in range(fr.shape[1]):
    ax1.plot(range(1, len(fr) + 1), fr[:, g], "-o", label=f"gate {g} (block {g + 1})")
ax1.axhline(TARGET, color="k", ls="--", lw=1, label="target")
ax1.set(xlabel="epoch", ylabel="fraction of samples run", ylim=(0, 1), title="Each gate's executed fraction")
ax1.legend(fontsize=7, ncol=2)
ax1.grid(alpha=0.3)
ax2.imshow(ran.astype(int), cmap="Greens", vmin=0, vmax=1, aspect="auto")
ax2.set(xlabel="residual block", ylabel="test image", title="Blocks run at evaluation (green = ran)")
ax2.set_xticks(range(ran.shape[1]))
fig.suptitle("SLU's gates", fontweight="bold")
save(fig, "11_gates.png")

# ---------------------------------------------------------------------------------------------
section("6. What the gates learn from: dL/dm per image")
# A gate's gradient is the cost term (the same for every image) plus, per image, the straight-through task
# gradient dL/dm = <dL/d(s + m F), F(x)>: all a gate has to learn *which* images to skip. Here it is for every
# training image of the lesson, on the trained SLU network, as in training (BatchNorm on batch statistics), with
# every image given it (exec=mask), running every block.


class RunAll:
    """A decision that runs every block (the gates still compute p): we only want the gradient."""

    @staticmethod
    def decide(p, training, rng=None, u=None):
        return np.ones(len(p), dtype=bool)


slu_trained.decision, slu_trained.exec = RunAll(), "mask"
m.train()
loss = SoftmaxCrossEntropy()
dm = np.zeros((len(slu_trained.gated), N_TRAIN))
for start in range(0, N_TRAIN, BATCH):
    xb = (ds.train_x[start:start + BATCH].astype(np.float32) / 255 - run["tr"].mean[:, None, None]) \
        / run["tr"].std[:, None, None]
    yb = ds.train_y[start:start + BATCH]
    loss.forward(m.forward(xb.astype(np.float32)), yb)
    m.backward(loss.backward())
    for g, t in enumerate(slu_trained.task_dm):
        dm[g, start:start + len(yb)] = t * len(yb)        # the loss is a batch mean: per image, scale back
print(f"{'gate':<6}{'mean dL/dm':>12}{'spread (sd)':>13}{'share < 0 (run it)':>20}")
for g in range(len(dm)):
    print(f"{g:<6}{dm[g].mean():>+12.3f}{dm[g].std():>13.3f}{(dm[g] < 0).mean():>20.2f}")
check("dL/dm takes both signs across images at every gate", all(0 < (d < 0).mean() < 1 for d in dm))
print("A gate reads the image, not its label, so what it can learn is the mean of dL/dm given the image. On the\n"
      "converged networks that mean is near zero and the spread many times larger, of either sign; it follows\n"
      "the label-free effect of skipping only weakly (README, 'What the gates learn from';\n"
      "benchmarks/papers/converged/slu_signal.py): little for a gate to fit, so the cost term sets every p alike.")
fig = Figure(figsize=(6.5 + 0.8 * len(dm), 4), layout="constrained")
ax = fig.subplots()
ax.violinplot([d for d in dm], showmeans=True)
ax.axhline(0, color="k", lw=0.8)
ax.set(xlabel="gate", ylabel="dL/dm per image", title="The straight-through task gradient each gate gets, per "
       "training image (0: no preference)")
ax.set_xticks(range(1, len(dm) + 1), [str(g) for g in range(len(dm))])
ax.grid(axis="y", alpha=0.3)
save(fig, "11_gate_signal.png")
finish()
