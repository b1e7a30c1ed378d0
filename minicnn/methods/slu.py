"""``slu``: selective layer update with learned per-sample gates (E2-Train §3.2, Eq. 1).

``--method slu[:target=0.6,alpha=1.0,gate=rnn,exec=skip,sample_at_eval=false]``

Every residual block but the first gets a gate (:class:`~minicnn.methods.gating.GateNetwork`)
reading the previous block's output; per sample it outputs p and the block runs when
m = 1[p > u], u ~ U(0, 1) from the method's own stream (at evaluation m = 1[p > 0.5],
see :class:`~minicnn.methods.gating.GateDecision`). Blocks with a projection shortcut are
gated too, as in the official code (a skipped sample takes the shortcut). The gates are
method-owned parameters (``model.add_aux``), trained by the same optimizer.

The gates' gradient, straight-through (dm/dp = 1), has two parts:

* the task loss: a block computes y = relu(s + m * F(x)) (s the shortcut, F the residual
  branch), so dL/dm = <dL/d(s + m F), F(x)> per sample, read at bn2 (F's last layer):
  its output in ``forward_output``, the gradient arriving there in ``backward_output_grad``;
* the cost term alpha * s * C (:class:`~minicnn.methods.gating.CostTerm`): C the
  MAC-weighted executed fraction of the gated blocks, s = +1 above ``target``, -1 below.
  Eq. 1 of the paper is L + alpha * C (no sign, no target); the sign and the target are
  the official code's (``main_all.py``: ``reg`` = -1 when the batch's executed percentage
  is at most ``--minimum``, else +1).

``exec`` -- how a gated block runs in training:

* ``skip`` (default): the block runs its residual branch on the kept samples only,
  forward and backward (``BasicBlock``'s gather/scatter): the skipped work is not done.
  The price: F(x) does not exist for a skipped sample, so its gate gets no task gradient
  -- skipped samples' gates are moved by the cost term alone. The estimator is biased:
  a gate that closes never learns from the task that it should have opened (the cost
  term's -1 below target is what reopens gates). BatchNorm in a gated block normalizes
  over the kept samples only.
* ``mask``: the official behaviour -- every block computes F(x) for every sample and the
  output is multiplied by m afterwards (``forward_output`` on bn2; the gradient into bn2
  is multiplied by m too, so the branch's weights learn from kept samples only). The
  official code masks the block's output, m * relu(s + F) + (1 - m) * s; minicnn masks F,
  relu(s + m F): the same for an identity shortcut (s is a ReLU output, s >= 0), a ReLU of
  the projection's output where the official code passes it on as is. The
  straight-through gradient is exact for every sample, nothing is saved, and BatchNorm
  sees the whole batch (as the official code).

At evaluation both modes skip (with running statistics the two are identical,
``tests/test_residual.py``), so ``minicnn evaluate`` saves the skipped work.

Defaults: target 0.6 (E2-Train's middle setting: Table 3 skips 20/40/60%, i.e. runs
80/60/40%); alpha 1.0, calibrated on the CIFAR slice (resnet20, 4,153 images, batch 128,
SGD lr 0.1 momentum 0.9; docs/measurements/methods3_helper_runs.md): the executed fraction settles at
0.58-0.60 for target 0.6 and 0.393-0.402 for target 0.4 from the first epoch on. The
official constant (beta = 1e-5 per gate and sample) is alpha = beta * G * N = 0.01 for
resnet20 at N = 128 (:class:`~minicnn.methods.gating.CostTerm`): 100 times weaker, made
for 64k iterations; the slice gives ~30 steps per epoch. Gates start at p ~ 0.5
(PyTorch's default init of the head), so the first batches run about half the blocks.

Records per epoch: ``executed`` (the mean over batches of C, the MAC-weighted executed
fraction of the gated blocks), ``gate_fractions`` (each gate's plain fraction of samples
run), ``cost`` (mean alpha*s*C), ``above_target`` (fraction of batches with s = +1),
``task_grad_samples`` (fraction of gate decisions that received a task gradient: 1.0 with
exec=mask, the executed fraction with exec=skip); and, when the epoch evaluated,
``eval_executed`` / ``eval_gate_fractions`` (the same at evaluation, m = 1[p > 0.5]).

Evaluation runs a different fraction from training: a gate whose p is 0.6 for every
sample runs 60% of them in training and all of them at evaluation (0.4: none). The
fraction at evaluation equals training's only when the gates' p are spread across
samples; ``sample_at_eval=true`` (the official behaviour) runs the training fraction,
with a random test accuracy.

Measured (2026-12-07, ``benchmarks/papers/converged/slu_gates.py``): on the CIFAR slice the learned
gates do *not* become input-adaptive. After 16-64 epochs every gate's p is the target for every
test image (spread across images 0.001-0.008: resnet8 and resnet20, target 0.6 and 0.8, alpha 1.0
and the official 0.01, exec skip and mask), so SLU skips at random at the target rate, like a
per-sample stochastic depth, and at evaluation runs every block (deterministic gates; sampled
ones score 0.5-3.3 points lower). With the official alpha 0.01 the executed fraction also drifts
far below the target (0.27 against 0.8 after 16 epochs on resnet8). There was something to learn:
on SLU's trained resnet20 networks, running each block for the same share of the test images, chosen
block by block as those whose output changes most when it is skipped (no labels), costs 0.2 point
against running every block, against 1.6 at random; ranked by the learned p, the images do no better
than at random (``benchmarks/papers/converged/slu_oracle.py``). The gates' only per-image signal,
the straight-through dL/dm, is a spread of either sign around a mean near zero on those networks,
and follows the label-free effect of skipping only weakly (``slu_signal.py``): a gate that fits its
expectation given the image has little to fit. The README ("The converged regime") has the runs.
"""
from __future__ import annotations

import numpy as np

from ..layers.residual import BasicBlock
from .base import Method, register_method
from .gating import GATE_KINDS, CostTerm, DirectRunner, GateDecision, GateNetwork, residual_macs

EXEC_MODES = ("skip", "mask")


@register_method("slu")
class SLU(Method):
    name = "slu"
    acts_in_eval = True        # the gates decide which blocks run at evaluation too
    extra_work = True          # the gates are work a plain run does not do (aux layers, counted)

    def __init__(self, target: float = 0.6, alpha: float = 1.0, gate: str = "rnn", exec: str = "skip",
                 sample_at_eval: bool = False):
        if gate not in GATE_KINDS:
            raise ValueError(f"method slu: gate must be one of {', '.join(GATE_KINDS)}, got {gate!r}")
        if exec not in EXEC_MODES:
            raise ValueError(f"method slu: exec must be one of {', '.join(EXEC_MODES)}, got {exec!r}")
        self.target, self.alpha, self.gate, self.exec = float(target), float(alpha), gate, exec
        self.sample_at_eval = bool(sample_at_eval)
        self.cost = CostTerm(self.target, self.alpha)          # validates target and alpha
        self.decision = GateDecision(self.sample_at_eval)
        self.gates: GateNetwork | None = None
        self.rng = np.random.default_rng(0)      # the trainer gives the method its own stream
        self.last_record: dict = {}

    # -- set-up -----------------------------------------------------------------------------
    def attach(self, model):
        """Find the residual blocks, build the gates and register them as the model's aux layers."""
        blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
        if len(blocks) < 2:
            raise ValueError(f"method {self.name}: needs a model with at least 2 residual blocks "
                             f"(e.g. resnet20), {getattr(model, 'arch', 'this model')} has {len(blocks)}")
        self.first, self.gated = blocks[0], blocks[1:]
        self._gate_of = {id(b): l for l, b in enumerate(self.gated)}
        self._bn2_of = {id(b.bn2): l for l, b in enumerate(self.gated)}
        init_rng = np.random.default_rng(0)
        self.gates = GateNetwork([b.in_channels for b in self.gated], self.gate, dtype=model.dtype, rng=init_rng)
        add_aux = getattr(model, "add_aux", None)
        key = self.key or self.name
        if add_aux is not None:
            for short, layer in self.gates.named_layers():
                add_aux(f"{key}.{short}", layer)
        self.runner = getattr(model, "aux", None) or DirectRunner
        self.block_macs = np.zeros(len(self.gated), dtype=np.int64)
        self._begin_pass(0)
        self._reset_epoch()
        return self

    def _begin_pass(self, n: int) -> None:
        self.gates.reset()
        self.p: list = [None] * len(self.gated)          # each gate's p (N,), this pass
        self.m: list = [None] * len(self.gated)          # each gate's decision (N,) bool
        self._F: list = [None] * len(self.gated)         # bn2's output (the kept rows with exec=skip)
        self.task_dm: list = [np.zeros(n) for _ in self.gated]   # dL_task/dm per gate and sample
        self._training_pass = False

    def _reset_epoch(self) -> None:
        self._acc = {"batches": 0, "executed": 0.0, "cost": 0.0, "above": 0,
                     "fractions": np.zeros(len(self.gated)), "task_grad": 0.0,
                     "eval_run": np.zeros(len(self.gated)), "eval_seen": 0}

    # -- layer level ------------------------------------------------------------------------
    def block_gate(self, block, x):
        if block is self.first:                       # a new forward pass starts: reset the gates
            self._begin_pass(x.shape[0])
            self._training_pass = block.training
            return None
        l = self._gate_of.get(id(block))
        if l is None:
            return None
        if self.block_macs[l] == 0:
            self.block_macs[l] = residual_macs(block, x.shape)
        p = self.gates.forward_step(x, self.runner)
        m = self.decision.decide(p, block.training, self.rng)
        self.p[l], self.m[l] = p, m
        if not block.training:
            self._acc["eval_run"][l] += m.sum()
            if l == 0:
                self._acc["eval_seen"] += len(m)
        if block.training and self.exec == "mask":
            return None                               # compute every sample, mask bn2's output
        return m

    def forward_output(self, layer, x, y):
        l = self._bn2_of.get(id(layer))
        if l is None or not layer.training or self.m[l] is None:
            return y
        self._F[l] = y
        if self.exec == "mask":
            return y * self.m[l].astype(y.dtype)[:, None, None, None]
        return y

    def backward_output_grad(self, layer, dy):
        l = self._bn2_of.get(id(layer))
        if l is None or self._F[l] is None:
            return dy
        g = np.einsum("nchw,nchw->n", dy, self._F[l], dtype=np.float64)
        if self.exec == "mask":
            self.task_dm[l] = g
            return dy * self.m[l].astype(dy.dtype)[:, None, None, None]
        self.task_dm[l][self.m[l]] = g                    # the kept rows, in order
        return dy

    # -- after the backbone's backward: the gates' backward -------------------------------------
    def gate_backward(self) -> dict:
        """Cost term + straight-through task gradient -> the gates' parameter gradients."""
        if not self._training_pass or any(m is None for m in self.m):
            return {}
        res = self.cost(self.m, self.block_macs)
        dps = [self.decision.backward(t + c) for t, c in zip(self.task_dm, res.dm)]
        self.gates.backward(dps, self.runner)
        a = self._acc
        a["batches"] += 1
        a["executed"] += res.executed
        a["cost"] += res.value
        a["above"] += res.sign > 0
        a["fractions"] += res.fractions
        a["task_grad"] += 1.0 if self.exec == "mask" else float(np.mean([m.mean() for m in self.m]))
        self._F = [None] * len(self.gated)
        return {"executed": res.executed, "cost": res.value, "sign": res.sign}

    def on_after_backward(self, state):
        self.gate_backward()

    def on_epoch_begin(self, state):
        self._reset_epoch()

    def epoch_record(self, state=None) -> dict:
        a, n = self._acc, max(self._acc["batches"], 1)
        rec = {"executed": a["executed"] / n, "gate_fractions": [float(v) for v in a["fractions"] / n],
               "cost": a["cost"] / n, "above_target": a["above"] / n, "task_grad_samples": a["task_grad"] / n,
               "target": self.target, "batches": a["batches"]}
        if a["eval_seen"]:
            frac = a["eval_run"] / a["eval_seen"]
            w = self.block_macs / max(self.block_macs.sum(), 1)
            rec["eval_executed"] = float(np.dot(w, frac))
            rec["eval_gate_fractions"] = [float(v) for v in frac]
        self.last_record = rec
        return rec

    def executed_blocks(self) -> np.ndarray:
        """(N, blocks) bool: which blocks ran for each sample in the last forward pass (the first always)."""
        n = len(self.m[0]) if self.m and self.m[0] is not None else 0
        return np.column_stack([np.ones(n, bool)] + [m for m in self.m])
