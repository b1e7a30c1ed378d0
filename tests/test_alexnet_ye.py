"""alexnet-ye (Ye et al. 2019 §4.1): shapes, forward MACs from first principles, `minicnn cost`."""
import subprocess
import sys

import numpy as np
import pytest

from minicnn.cost import static_cost
from minicnn.layers import Conv2d, Linear, MaxPool2d
from minicnn.models import build


def conv(cin, cout, k, hout):
    return hout * hout * cout * cin * k * k


# written from the paper's sizes and the zoo docstring's guesses, not from the model code:
# 32 -p2-> 34 -pool-> 17 -p2-> 19 -pool-> 9 -> 9 -> 9 -pool-> 4; FC-1 4096x2048, FC-2 2048x2048
ALEXNET_YE = (conv(3, 64, 3, 34) + conv(64, 192, 3, 19) + conv(192, 384, 3, 9) + conv(384, 256, 3, 9)
              + conv(256, 256, 3, 9) + 4096 * 2048 + 2048 * 2048 + 2048 * 10)


def test_documented_number():
    assert ALEXNET_YE == 227_711_744


def test_layer_shapes_follow_the_paper():
    m = build("alexnet-ye")
    convs = [l for l in m.leaves() if isinstance(l, Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding) for c in convs[:2]] == \
        [(3, 64, (3, 3), (1, 1), (2, 2)), (64, 192, (3, 3), (1, 1), (2, 2))]      # §4.1: 3x3, padding 2, stride 1
    fcs = [l for l in m.leaves() if isinstance(l, Linear)]
    assert [(f.in_features, f.out_features) for f in fcs] == [(4096, 2048), (2048, 2048), (2048, 10)]
    shape = (2, 3, 32, 32)
    seen = {}
    for layer in m.leaves():
        shape = layer.output_shape(shape)
        seen[layer.name] = shape
    assert seen["conv1"] == (2, 64, 34, 34) and seen["pool1"] == (2, 64, 17, 17)
    assert seen["conv2"] == (2, 192, 19, 19) and seen["pool2"] == (2, 192, 9, 9)
    assert seen["pool5"] == (2, 256, 4, 4) and seen["flatten"] == (2, 4096) and shape == (2, 10)
    assert sum(isinstance(l, MaxPool2d) for l in m.leaves()) == 3


def test_forward_macs_and_a_small_width_runs():
    cost = static_cost(build("alexnet-ye"), 3)
    assert sum(per["forward"].macs for per in cost.values()) == 3 * ALEXNET_YE
    m = build("alexnet-ye", num_classes=7, width=0.125)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    assert m.forward(x).shape == (2, 7)
    assert m.leaves()[-1].in_features == 256        # 2048 * 0.125


def test_minicnn_cost_alexnet_ye():
    r = subprocess.run([sys.executable, "-m", "minicnn", "cost", "--model", "alexnet-ye", "--batch-size", "2"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "fc2" in r.stdout and "conv5" in r.stdout
    assert str(2 * ALEXNET_YE) in r.stdout.replace(",", "")
