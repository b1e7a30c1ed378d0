"""Bytes and energy of one alexnet-ye training step, baseline against gradprune at its input sites (issue 15).

    PYTHONPATH=. MINICNN_NUM_THREADS=1 python benchmarks/bytes_gradprune_input_site.py [P] [OUT.json]

One step on a batch of 32 images of the CIFAR-10 slice (``$MINICNN_CIFAR10`` or ../shared/data/cifar-10-batches-py),
from the seed-0 initialization, ``--method gradprune:p=P,where=input`` (default P = 0.9). Prints, per phase, the
ledger's bytes (MB), energy (uJ) and MACs, the conv layers' backward_input bytes (the pruning pass included:
it is charged there) and the pass's own (extra) bytes.
"""
import json
import os
import sys

from minicnn.cost import Ledger
from minicnn.data import load_dataset, subset
from minicnn.methods import attach, build_methods
from minicnn.models import build
from minicnn.training import SGD, Trainer, make_schedule

P = float(sys.argv[1]) if len(sys.argv) > 1 else 0.9
data = os.environ.get("MINICNN_CIFAR10") or os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                                                         "cifar-10-batches-py")
ds = subset(load_dataset("cifar10", data), 32, 10, seed=0)
out = {}
for spec in ([], [f"gradprune:p={P},where=input"]):
    methods = build_methods(spec)
    net = build("alexnet-ye", num_classes=10, seed=0)
    attach(net, methods)
    led = Ledger(net)
    tr = Trainer(net, ds, SGD(net, lr=0.01, momentum=0.9, weight_decay=5e-4), make_schedule("constant", 0.01, 1), 1,
                 batch_size=32, methods=methods, ledger=led, seed=0, progress=False, verbose=False)
    tr.fit()
    t, per = led.totals(), led.per_layer()
    out[spec[0] if spec else "baseline"] = {
        "phases": {p: {"bytes": t[p].bytes, "energy_uj": t[p].energy_pj * 1e-6, "macs": t[p].macs}
                   for p in ("forward", "backward_input", "backward_weight", "update", "total")},
        "conv_backward_input_bytes": {n: per[n]["backward_input"].bytes for n in per if n.startswith("conv")},
        "extra_backward_input_bytes": led.extra_totals()["backward_input"].bytes}
for name, r in out.items():
    print(name)
    for p, c in r["phases"].items():
        print(f"  {p:<16}{c['bytes'] / 1e6:>12.2f} MB{c['energy_uj']:>12.1f} uJ{c['macs']:>14.4g} MACs")
    print("  conv backward_input MB:", {n: round(v / 1e6, 2) for n, v in r["conv_backward_input_bytes"].items()})
    print(f"  pruning pass (extra) MB: {r['extra_backward_input_bytes'] / 1e6:.2f}")
if len(sys.argv) > 2:
    with open(sys.argv[2], "w") as f:
        json.dump(out, f, indent=1)
