"""``gradprune``: stochastic pruning of activation gradients with the DBTD threshold (Ye et al. 2019).

``--method gradprune[:p=0.9,where=auto,sparse_below=-1]``

What it does (§3.2; the maths and the kernel are in :mod:`minicnn.methods._dbtd`):
every training step, at every pruning site, the activation gradient g gets
the threshold ``tau = sqrt(pi/2) * mean|g| * Phi^-1(p)`` and Algorithm 1's
stochastic pruning (entries below tau become 0 or +-tau, unbiased: Lemma 1).

Where (§3.2, Fig. 2), per Conv2d, decided from the layer that follows it:

* **Conv-BN-ReLU** (a BatchNorm2d follows the conv: ResNets): prune the
  gradient at the conv's *output*, after BatchNorm's backward, before the
  conv uses it for dW and dx (``backward_output_grad``). BN's backward makes
  that gradient fully dense, so this is where sparsity must be made.
* **Conv-ReLU** (no BN: AlexNet): prune the conv's *input* gradient
  g_{A_I} (``backward_input_grad``). It flows through the ReLU (and a
  max-pool) below, which keep zeros zero, and becomes the output gradient
  of the conv below: that conv's dW and dx use the sparsity. The gradient
  arriving at the topmost conv of a Conv-ReLU net (from the FC layers) is
  not pruned: no site above it.

``where=output`` / ``where=input`` forces one rule for every conv.

p: the percentile, ``0.5 <= p < 1``. The paper's grid is p = 85 / 90 / 95 /
99.5% (Tables 1-3); 0.9 is minicnn's default (the middle of that grid: the
paper names no default).

Formats and the ledger: a layer's gradient formats describe what its own
backward reads (``grad_output``) and writes (``grad_input``). The pruned
tensors are declared ``TensorFormat(sparse=True)`` where they are read
(``grad_output`` of the consuming conv and of the ReLU / pool layers in
between) and where a zero-preserving layer writes one (``grad_input`` of those
ReLU / pool layers); the pruning conv of an input site writes its dx dense
(its ``grad_input`` stays fp32: it computed every entry, and the threshold
needs them all). The ledger then counts the convs' backward MACs by non-zeros
and the bytes of the sparse form: values + 32-bit indices, 8 bytes per
non-zero, so a sparse tensor is smaller than the dense fp32 one (4 bytes per
entry) only below density 0.5 (at 0.4, 3.2 bytes per entry: 20% less). The
DBTD pass itself is work a plain run does not do, declared ``extra`` in the
pruning layer's ``backward_input`` phase: 5 elementwise ops per entry
(``|g|`` and the sum; compare, draw, select), reading g (dense fp32, as the
layer wrote it) and writing the sparse result once. So at an input site the
bytes are: the conv writes dx dense, the pass reads it dense and writes it
sparse, the layer below reads it sparse (tests/test_issue15_correctness.py
holds the ledger to an independent observer of every kernel's reads and
writes). With that pass counted, gradprune can move *more* bytes than the
dense run (``extra_work = True``): a saving in MACs, not necessarily in
memory traffic.

CPU time: the convs take the sparse numba path
(:mod:`minicnn.kernels.sparse_conv`) only when dy's density is below
``sparse_below`` (default -1: per conv, the crossover measured on this
machine by ``benchmarks/bench_sparse_conv.py``, see
:func:`~minicnn.kernels.sparse_conv.sparse_crossover`; 0 never uses it);
above it the dense BLAS path is faster on a CPU, and the saving is a
hardware estimate only (the ledger's).

Counting the non-zeros (each pruned tensor): the pruning kernel counts
what it writes, once. ``observe_backward`` (the records) reuses that count
when the conv consumes exactly the pruned array, and so does the ledger:
the method hands it over with ``minicnn.cost.counts.note_nonzeros`` for
that array object only (a copy, a view or any other tensor is counted by
the ledger itself, with a compiled loop). Until 2026-12-06 the ledger counted
the pruned tensor again, a third of the method's overhead on resnet20
(1.22-1.24x the plain step, 1.13-1.16x without it, same benchmark and
minute); ``tests/test_dbtd.py`` holds a run's ledger totals equal with and
without the note, ``tests/test_issue15_correctness.py`` holds them to an
independent observer of every kernel's reads and writes, and the kernel's
count is held to the reference. The conv's density test stops counting
once its bound is reached (a dy of density 0.5 against a bound of 0.1 is
decided after about a fifth of it).
The cost of the method against the plain step, measured:
``docs/measurements/method_overheads_gradprune.md``.

The flags: ``on_train_begin`` sets the consuming convs'
``sparse_backward_below``; ``on_train_end`` puts back what was there
before, so a model trained with gradprune and used without it takes the
dense path again.

Records, per epoch: per pruning site the density of g before and after
pruning (non-zeros / entries over the epoch's batches) and the mean tau;
overall densities (entry-weighted); and per conv the density of the output
gradient its backward consumed (``dy_density``), overall ``rho_nnz`` -- the
quantity of Ye et al.'s Tables 1-3 (for a Conv-BN net it is the "after"
density; for a Conv-ReLU net the pruned g_{A_I} after the ReLU and pool
below). ``p=0.5`` gives tau = 0, prunes nothing and trains exactly like the
baseline: use it to measure a baseline's rho_nnz.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..cost.counts import Tensor, note_nonzeros
from ..cost.formats import TensorFormat
from ..kernels.elementwise import count_nonzero
from ..kernels.sparse_conv import sparse_crossover
from ..layers.activation import ReLU
from ..layers.linear import Flatten
from ..layers.batchnorm import BatchNorm2d
from ..layers.conv import Conv2d
from ..layers.pooling import MaxPool2d
from ._dbtd import dbtd_prune
from .base import Method, backbone_leaves, register_method

SPARSE = TensorFormat(sparse=True)
#: layers whose backward keeps a zero of dy zero in dx (a sparse dy gives a dx at most as dense)
ZERO_PRESERVING = (ReLU, MaxPool2d, Flatten)


@dataclass
class SiteStats:
    """One pruning site's running statistics over an epoch (the sums its record divides)."""
    entries: int = 0        # entries of g pruned (summed over the epoch's batches)
    nnz_before: int = 0     # non-zeros of g before pruning
    nnz_after: int = 0      # non-zeros after pruning
    tau_sum: float = 0.0    # sum of the thresholds tau
    calls: int = 0          # prunings (batches)

    def add(self, entries: int, nnz_before: int, nnz_after: int, tau: float) -> None:
        self.entries += entries
        self.nnz_before += nnz_before
        self.nnz_after += nnz_after
        self.tau_sum += tau
        self.calls += 1


@dataclass
class Consumed:
    """The output gradient one conv's backward consumed over an epoch: entries and non-zeros (rho_nnz)."""
    entries: int = 0
    nnz: int = 0


@register_method("gradprune")
class GradPrune(Method):
    """Ye et al. 2019: DBTD threshold (§3.2) + stochastic pruning (Algorithm 1) of activation gradients."""

    extra_work = True       # the DBTD pass (see the module docstring)

    def __init__(self, p: float = 0.9, where: str = "auto", sparse_below: float = -1.0):
        if not 0.5 <= p < 1.0:
            raise ValueError(f"method gradprune: p must be in [0.5, 1), got {p}")
        if where not in ("auto", "output", "input"):
            raise ValueError(f"method gradprune: where must be auto, output or input, got {where!r}")
        if not (sparse_below == -1.0 or 0.0 <= sparse_below <= 1.0):
            raise ValueError(f"method gradprune: sparse_below must be -1 (auto) or in [0, 1], got {sparse_below}")
        self.p, self.where, self.sparse_below = p, where, sparse_below
        self._sites: dict[str, str] = {}        # conv name -> "output" | "input"
        self._acc: dict[str, SiteStats] = {}
        self._dy: dict[str, Consumed] = {}
        self._ledger = None
        self._below_before: dict = {}           # conv -> its sparse_backward_below before on_train_begin

    # -- setup ------------------------------------------------------------------
    def _plan(self, model):
        """Pruning site per conv, and which layers read (``sparse_out``) and write (``sparse_in``) a sparse gradient.

        A layer's ``grad_output`` / ``grad_input`` format is what *its own*
        backward reads / writes. At an input site the conv writes its dx dense
        (it computes every entry; the threshold needs them all) and the pruning
        pass then reads that and writes the sparse tensor, which the layers
        below read: so the pruning conv's own ``grad_input`` stays dense. Below
        it, a layer that keeps zeros zero (ReLU, MaxPool2d, Flatten) writes a
        gradient at most as dense as the one it read (declared sparse too); any
        other layer (a BatchNorm2d, with ``where=input`` on a BN net) reads the
        sparse tensor and writes a dense one, and the sparsity stops there.
        """
        leaves = backbone_leaves(model)
        sites, sparse_out, sparse_in = {}, set(), set()
        for i, layer in enumerate(leaves):
            if not isinstance(layer, Conv2d):
                continue
            nxt = leaves[i + 1] if i + 1 < len(leaves) else None
            site = self.where if self.where != "auto" else ("output" if isinstance(nxt, BatchNorm2d) else "input")
            sites[layer.name] = site
            if site == "output":
                sparse_out.add(layer.name)
            else:
                # the layers below it in backward order, down to and including the next conv
                for below in reversed(leaves[:i]):
                    sparse_out.add(below.name)
                    if not isinstance(below, ZERO_PRESERVING):
                        break
                    sparse_in.add(below.name)
        return sites, sparse_out, sparse_in

    def on_train_begin(self, state):
        sites, sparse_out, sparse_in = self._plan(state.model)
        if not sites:
            raise ValueError("method gradprune: the model has no Conv2d layer")
        self._sites = sites
        for layer in state.model.leaves():
            if layer.name in sparse_out:
                state.formats.set(layer, "grad_output", SPARSE)
                if isinstance(layer, Conv2d):
                    self._below_before.setdefault(layer, layer.sparse_backward_below)
                    layer.sparse_backward_below = (sparse_crossover(layer.in_channels) if self.sparse_below < 0
                                                   else self.sparse_below)
            if layer.name in sparse_in:
                state.formats.set(layer, "grad_input", SPARSE)
        self._ledger = state.ledger

    def on_train_end(self, state):
        """Put back every conv's ``sparse_backward_below`` as it was before training (the class default, 0:
        no density test, the dense path): the model, used later without gradprune, runs as any other.

        Called by the Trainer for a completed and for a diverged run. An interrupted fit (Ctrl-C, an
        exception) calls no hook: its model keeps the flags until ``on_train_end`` runs (they change
        no result, only which backward kernel runs); the next ``on_train_begin`` keeps the values saved first.
        """
        for layer, below in self._below_before.items():
            layer.sparse_backward_below = below
        self._below_before = {}

    def on_epoch_begin(self, state):
        self._last = (None, 0)
        self._acc = {name: SiteStats() for name in self._sites}
        self._dy = {name: Consumed() for name in self._sites}

    # -- the pruning --------------------------------------------------------------
    def _prune(self, layer, g):
        seed = int(self.rng.integers(2**63))
        out, tau, nnz_in, nnz_out = dbtd_prune(g, self.p, seed)
        self._acc[layer.name].add(g.size, nnz_in, nnz_out, tau)
        self._last = (out, nnz_out)      # observe_backward reuses the count when the conv consumes exactly this
        note_nonzeros(out, nnz_out)       # ... and so does the ledger (one count per pruned tensor, not two)
        if self._ledger is not None:      # read g (fp32, as the layer wrote it), write the sparse result
            m = self._ledger.meter(layer)
            self._ledger.add_work(layer, "backward_input",
                                  m.counts(ops=5 * g.size, moved=[(None, Tensor(g.shape)),
                                                                  (SPARSE, Tensor(g.shape, nnz_out))]),
                                  extra=True)
        return out

    def backward_output_grad(self, layer, dy):
        if self._sites.get(layer.name) == "output" and layer.training:
            return self._prune(layer, dy)
        return dy

    def backward_input_grad(self, layer, dx):
        if dx is not None and self._sites.get(layer.name) == "input" and layer.training:
            return self._prune(layer, dx)
        return dx

    def observe_backward(self, layer, dy, dx):
        """The density of the output gradient each conv's backward consumed (Ye et al.'s rho_nnz)."""
        d = self._dy.get(layer.name)
        if d is not None and layer.training:
            d.entries += dy.size
            pruned, nnz = self._last
            d.nnz += nnz if dy is pruned else count_nonzero(dy)

    # -- records ---------------------------------------------------------------------
    def epoch_record(self, state) -> dict:
        layers = {}
        entries = nnz_in = nnz_out = 0
        for name, a in self._acc.items():
            if a.entries == 0:
                continue
            layers[name] = {"site": self._sites[name], "density_before": a.nnz_before / a.entries,
                            "density_after": a.nnz_after / a.entries, "tau_mean": a.tau_sum / a.calls}
            entries, nnz_in, nnz_out = entries + a.entries, nnz_in + a.nnz_before, nnz_out + a.nnz_after
        rec = {"p": self.p, "layers": layers}
        if entries:
            rec.update(density_before=nnz_in / entries, density_after=nnz_out / entries)
        consumed = {name: d.nnz / d.entries for name, d in self._dy.items() if d.entries}
        if consumed:
            rec["dy_density"] = consumed
            rec["rho_nnz"] = sum(d.nnz for d in self._dy.values()) / sum(d.entries for d in self._dy.values())
        return rec
