"""resnet20's training step (forward + loss + backward, no optimizer) with Winograd (auto) against im2col, alternated in one process.

    python benchmarks/bench_conv_algo_step.py [BATCH]

Prints the mean seconds per step of 4 steps, 4 rounds each, the algorithms alternating round by round
(``minicnn.kernels.conv2d.ALGORITHM``). No PyTorch in the process (compare ``bench_vs_torch.py --also-im2col``).
"""
import os, time, numpy as np, sys
from minicnn.kernels.process import speed_settings
from minicnn.models import build
from minicnn.losses import SoftmaxCrossEntropy
import minicnn.kernels.conv2d as c2
import minicnn.layers.conv as lc
B=int(sys.argv[1]) if len(sys.argv)>1 else 128
with speed_settings():
    m=build("resnet20"); m.train()
    x=np.random.default_rng(0).standard_normal((B,3,32,32)).astype(np.float32); y=np.arange(B)%10
    loss=SoftmaxCrossEntropy()
    def step():
        out=m.forward(x); l=loss.forward(out,y); m.backward(loss.backward())
    for algo in ["auto","im2col"]*4:
        c2.ALGORITHM=algo
        step(); step()
        t=time.perf_counter()
        for _ in range(4): step()
        print(algo, B, (time.perf_counter()-t)/4)
