"""The same models and recipe in PyTorch, for accuracy and speed comparisons.

Never part of minicnn: run it with a separate Python that has torch, e.g.
    python -m venv /tmp/tv && /tmp/tv/bin/pip install torch numpy
    /tmp/tv/bin/python benchmarks/torch_reference.py train --data-dir ../shared/data/cifar-10-batches-py
    /tmp/tv/bin/python benchmarks/torch_reference.py bench

`train` mirrors `minicnn train --model convnet-small --dataset cifar10 --epochs 4
--lr 0.01 --schedule cosine --augment flip` (batch 128, momentum 0.9, weight decay
5e-4, per-channel normalization from the training set, CosineAnnealingLR per epoch).
"""
import argparse
import os
import pickle
import time

import numpy as np
import torch
import torch.nn as nn


def convnet_small(num_classes=10):
    def cbr(i, o):
        return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]
    return nn.Sequential(*cbr(3, 32), *cbr(32, 32), nn.MaxPool2d(2), *cbr(32, 64), *cbr(64, 64), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(4096, num_classes))


class Block(nn.Module):
    def __init__(self, i, o, s):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(i, o, 3, s, 1, bias=False), nn.BatchNorm2d(o)
        self.conv2, self.bn2 = nn.Conv2d(o, o, 3, 1, 1, bias=False), nn.BatchNorm2d(o)
        self.short = nn.Sequential()
        if s != 1 or i != o:
            self.short = nn.Sequential(nn.Conv2d(i, o, 1, s, bias=False), nn.BatchNorm2d(o))

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(h)) + self.short(x))


def resnet(n=3, num_classes=10):
    layers, c = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()], 16
    for stage, o in enumerate((16, 32, 64)):
        for b in range(n):
            layers.append(Block(c, o, 2 if stage > 0 and b == 0 else 1))
            c = o
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes))


def init(model):
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return model


def load(d):
    def rd(f):
        with open(os.path.join(d, f), "rb") as fh:
            b = pickle.load(fh, encoding="bytes")
        return np.asarray(b[b"data"], np.uint8).reshape(-1, 3, 32, 32), np.asarray(b[b"labels"], np.int64)
    tr = [rd(f) for f in sorted(os.listdir(d)) if f.startswith("data_batch")]
    te = rd("test_batch")
    return np.concatenate([t[0] for t in tr]), np.concatenate([t[1] for t in tr]), te[0], te[1]


def train(a):
    torch.manual_seed(a.seed)
    xtr, ytr, xte, yte = load(a.data_dir)
    mean = (xtr / 255.0).mean(axis=(0, 2, 3)).reshape(1, 3, 1, 1)
    std = (xtr / 255.0).std(axis=(0, 2, 3)).reshape(1, 3, 1, 1)
    norm = lambda x: torch.tensor(((x / 255.0 - mean) / std).astype(np.float32))
    model = init(convnet_small() if a.model == "convnet-small" else resnet(3))
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum, weight_decay=a.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, a.epochs)
    rng = np.random.default_rng(a.seed)
    for ep in range(a.epochs):
        model.train()
        perm = rng.permutation(len(ytr))
        for i in range(0, len(ytr), 128):
            idx = perm[i:i + 128]
            xb = xtr[idx].copy()
            flip = rng.random(len(idx)) < 0.5
            xb[flip] = xb[flip, :, :, ::-1]
            loss = nn.functional.cross_entropy(model(norm(xb)), torch.tensor(ytr[idx]))
            opt.zero_grad(); loss.backward(); opt.step()
        sched.step()
        model.eval()
        with torch.no_grad():
            acc = (model(norm(xte)).argmax(1).numpy() == yte).mean()
        print(f"epoch {ep + 1}: test acc {acc:.4f}")


def bench(a):
    for name, m in (("convnet-small", convnet_small()), ("resnet20", resnet(3))):
        init(m)
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        x, y = torch.randn(a.batch_size, 3, 32, 32), torch.randint(0, 10, (a.batch_size,))
        ts = []
        for i in range(12):
            t = time.perf_counter()
            loss = nn.functional.cross_entropy(m(x), y); opt.zero_grad(); loss.backward(); opt.step()
            if i >= 2:
                ts.append(time.perf_counter() - t)
        print(f"{name:>14}: {a.batch_size / np.median(ts):7.1f} img/s (torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads)")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--data-dir", required=True)
    t.add_argument("--model", default="convnet-small")
    t.add_argument("--epochs", type=int, default=4)
    t.add_argument("--lr", type=float, default=0.01)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--momentum", type=float, default=0.9)
    t.add_argument("--weight-decay", type=float, default=5e-4)
    b = sub.add_parser("bench")
    b.add_argument("--batch-size", type=int, default=128)
    a = p.parse_args()
    train(a) if a.cmd == "train" else bench(a)
