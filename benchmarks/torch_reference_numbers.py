"""Reference numbers for tests/test_training.py, computed with PyTorch.

Run with a Python that has torch (never the project's venv):
    /path/to/torch-venv/bin/python benchmarks/torch_reference_numbers.py
"""
import torch

for nesterov in (False, True):
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=nesterov)
    for g in [[0.3, -0.1, 0.2], [0.0, 0.5, -0.4], [1.0, 1.0, 1.0]]:
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    print("sgd nesterov" if nesterov else "sgd", p.detach().numpy().tolist())

p = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
opt = torch.optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01)
for g in ([0.3], None, [0.3]):
    p.grad = None if g is None else torch.tensor(g, dtype=torch.float64)
    opt.step()
print("sgd with a skipped step", p.item())

sched = torch.optim.lr_scheduler.CosineAnnealingLR(torch.optim.SGD([p], lr=0.01), T_max=4)
lrs = []
for _ in range(4):
    lrs.append(sched.get_last_lr()[0])
    sched.optimizer.step()
    sched.step()
print("cosine", lrs)

torch.manual_seed(0)
z = torch.randn(4, 5, dtype=torch.float64) * 3
y = torch.tensor([0, 3, 4, 1])
print("cross entropy", torch.nn.functional.cross_entropy(z, y).item(), z.numpy().tolist())
