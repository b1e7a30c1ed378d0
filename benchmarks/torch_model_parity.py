"""Whole-model parity with PyTorch: same weights, same batches, 5 SGD steps.

Run with a Python that has torch, numba and minicnn (not the project's venv):
    /path/to/torch-venv/bin/python benchmarks/torch_model_parity.py
Prints the loss of both and the worst relative gradient difference per step.
"""
import numpy as np, torch, sys
sys.path.insert(0, __import__("os").path.dirname(__file__))
from torch_reference import convnet_small, resnet
from minicnn.models import build
from minicnn.losses import SoftmaxCrossEntropy
from minicnn.training import SGD
torch.set_default_dtype(torch.float64)

def copy_weights(m, t):
    ours = [(q, l, p) for q, l, p in m.named_parameters()]
    theirs = list(t.named_parameters())
    assert len(ours) == len(theirs), (len(ours), len(theirs))
    for (q, l, p), (tn, tp) in zip(ours, theirs):
        assert tuple(tp.shape) == l.params[p].shape, (q, tn)
        with torch.no_grad(): tp.copy_(torch.tensor(l.params[p]))
    return ours, theirs

for name, tm in (("convnet-small", convnet_small()), ("resnet8", resnet(1))):
    m = build(name, dtype=np.float64)
    tm = tm.double()
    ours, theirs = copy_weights(m, tm)
    opt = SGD(m, lr=0.05, momentum=0.9, weight_decay=5e-4)
    topt = torch.optim.SGD(tm.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    rng = np.random.default_rng(0)
    for step in range(5):
        x = rng.standard_normal((16, 3, 32, 32)); y = rng.integers(0, 10, 16)
        L = SoftmaxCrossEntropy(); lo = L.forward(m.forward(x), y); m.zero_grad(); m.backward(L.backward())
        tl = torch.nn.functional.cross_entropy(tm(torch.tensor(x)), torch.tensor(y)); topt.zero_grad(); tl.backward()
        worst = max(np.abs(l.grads[p] - tp.grad.numpy()).max() / (np.abs(tp.grad.numpy()).max() + 1e-12) for (q, l, p), (tn, tp) in zip(ours, theirs))
        opt.step(); topt.step()
        print(name, step, lo, tl.item(), "worst grad rel", worst)
    wdiff = max(np.abs(l.params[p] - tp.detach().numpy()).max() for (q, l, p), (tn, tp) in zip(ours, theirs))
    print("max weight diff after 5 steps", wdiff)
