"""The models of the papers, at CIFAR scale (32x32 inputs).

convnet-small   4 conv (3x3, BN, ReLU) + 2 max-pools + linear: 24,518,656
                forward MACs per image. The quick model of the lessons.
resnet{6n+2}    CIFAR ResNets of He et al. 2016 (§4.2): a 3x3 conv to 16
                channels, three stages of n BasicBlocks at 16/32/64 channels
                (stride 2 at the start of stages 2 and 3, projection
                shortcuts), global average pooling, linear: 6n+2 layers with
                weights. Any depth 6n+2 builds by name (resnet8: n=1,
                resnet20: n=3 with 40,813,184 forward MACs per image,
                resnet32, resnet38, resnet44, resnet56, resnet74, resnet110,
                ...); ``MODELS`` lists the depths of the papers (8, 20; 38,
                74 and 110 are E2-Train's, §4.1, §4.3, §4.6) and also answers
                ``"resnet56" in MODELS`` for every other one.
alexnet-cifar   AlexNet's five conv layers and ReLUs, no BN, as commonly
                adapted to CIFAR (11x11 stride-4 first conv, three max-pools,
                one linear classifier); ``width`` scales the channels.
alexnet-ye      Ye et al. 2019's CIFAR AlexNet (§4.1): first two convs 3x3
                stride 1 padding 2, FC-1 4096x2048, FC-2 2048x2048, ReLUs,
                no BN (a Conv-ReLU network): 227,711,744 forward MACs per
                image. See :func:`alexnet_ye` for what minicnn had to guess.
vgg11-cifar     VGG-11 configuration "A" (8 conv3x3 + ReLU, five max-pools,
                no BN), one linear classifier; ``width`` scales the channels.
                The WUS paper (§4) trains AlexNet and VGG-11 on CIFAR.

Weight init: Kaiming-normal (He et al. 2015, fan_out, gain sqrt(2), the
torchvision ResNet choice) for convolutions, PyTorch's default for linear
layers, weight 1 and bias 0 for BatchNorm, zero conv biases.
"""
from __future__ import annotations

import re

import numpy as np

from ..layers import (BasicBlock, BatchNorm2d, Conv2d, Flatten, GlobalAvgPool2d, Linear,
                      MaxPool2d, ReLU, Sequential)


def kaiming_normal_(conv: Conv2d, rng: np.random.Generator) -> None:
    """Fill a conv's weight with N(0, 2/fan_out), fan_out = out_channels*kh*kw."""
    w = conv.params["weight"]
    fan_out = w.shape[0] * w.shape[2] * w.shape[3]
    w[...] = rng.normal(0.0, np.sqrt(2.0 / fan_out), size=w.shape)
    if "bias" in conv.params:
        conv.params["bias"][...] = 0.0


class Model(Sequential):
    """A Sequential that remembers how it was built (for checkpoints), and may hold
    layers owned by training methods.

    ``model.aux`` holds the layers a method adds with :meth:`add_aux` (SLU's
    gates). They are not part of ``forward``: the method runs them itself,
    through ``model.aux.forward_child`` / ``backward_child`` so that hooks
    (the ledger) see them. They are parameters like any other: in
    ``named_parameters`` (so the optimizer trains them), ``state_dict``
    (so ``model.npz`` saves them), ``train()``/``eval()``/``zero_grad()``;
    and they are *not* part of the dense cost of the model (a plain run has
    no gates).
    """

    def __init__(self, *layers, arch: str, config: dict, dtype=np.float32):
        self.arch = arch
        self.config = config
        super().__init__(*layers, dtype=dtype)
        self.aux = Sequential(dtype=dtype)
        self.aux.name = "aux"

    def add_aux(self, name: str, layer):
        """Add a method-owned layer as ``aux.<name>``; returns it."""
        if any(n == name for n, _ in self.aux._children):
            raise ValueError(f"{self.arch}: an auxiliary layer named {name!r} exists already")
        self.aux._children.append((name, layer))
        layer.name = f"aux.{name}"
        if layer.is_container:
            layer._name_children(layer.name)
            layer.set_hooks(self.hooks)
        layer.training = self.training
        return layer

    def modules(self):
        yield from super().modules()
        if len(self.aux):
            yield self.aux
            yield from self.aux.modules()

    def set_hooks(self, hooks):
        super().set_hooks(hooks)
        self.aux.set_hooks(hooks)

    def train(self):
        super().train()
        self.aux.train()
        return self

    def eval(self):
        super().eval()
        self.aux.eval()
        return self

    def zero_grad(self):
        super().zero_grad()
        self.aux.zero_grad()

    def extra_repr(self):
        return f"arch={self.arch!r}" + super().extra_repr()


def _conv_bn_relu(i, cin, cout, dtype, rng):
    return [(f"conv{i}", Conv2d(cin, cout, 3, padding=1, bias=False, dtype=dtype, rng=rng)),
            (f"bn{i}", BatchNorm2d(cout, dtype=dtype)),
            (f"relu{i}", ReLU(dtype=dtype))]


def convnet_small(num_classes, dtype, rng):
    layers = (_conv_bn_relu(1, 3, 32, dtype, rng) + _conv_bn_relu(2, 32, 32, dtype, rng)
              + [("pool1", MaxPool2d(2, dtype=dtype))]
              + _conv_bn_relu(3, 32, 64, dtype, rng) + _conv_bn_relu(4, 64, 64, dtype, rng)
              + [("pool2", MaxPool2d(2, dtype=dtype)), ("flatten", Flatten(dtype=dtype)),
                 ("fc", Linear(64 * 8 * 8, num_classes, dtype=dtype, rng=rng))])
    return layers


def resnet_cifar(n, num_classes, dtype, rng):
    layers = _conv_bn_relu(1, 3, 16, dtype, rng)
    cin = 16
    for stage, cout in enumerate((16, 32, 64), start=1):
        blocks = []
        for b in range(n):
            stride = 2 if (stage > 1 and b == 0) else 1
            blocks.append((str(b), BasicBlock(cin, cout, stride=stride, dtype=dtype, rng=rng)))
            cin = cout
        layers.append((f"layer{stage}", Sequential(*blocks, dtype=dtype)))
    layers += [("pool", GlobalAvgPool2d(dtype=dtype)), ("fc", Linear(64, num_classes, dtype=dtype, rng=rng))]
    return layers


def _scaled(channels, width, name):
    """Channel counts times ``width``, rounded; every layer must keep at least one channel."""
    if not width > 0:
        raise ValueError(f"{name}: width must be > 0, got {width}")
    out = [int(round(c * width)) for c in channels]
    if min(out) < 1:
        raise ValueError(f"{name}: width {width} leaves a layer with no channels "
                         f"(smallest width allowed: {0.5 / min(channels):.3g})")
    return out


def alexnet_cifar(num_classes, dtype, rng, width=1.0):
    c = _scaled((64, 192, 384, 256, 256), width, "alexnet-cifar")
    spec = [(3, c[0], 11, 4, 5), (c[0], c[1], 5, 1, 2), (c[1], c[2], 3, 1, 1), (c[2], c[3], 3, 1, 1),
            (c[3], c[4], 3, 1, 1)]
    layers = []
    for i, (cin, cout, k, s, p) in enumerate(spec, start=1):
        layers += [(f"conv{i}", Conv2d(cin, cout, k, stride=s, padding=p, dtype=dtype, rng=rng)),
                   (f"relu{i}", ReLU(dtype=dtype))]
        if i in (1, 2, 5):
            layers.append((f"pool{i}", MaxPool2d(2, dtype=dtype)))
    # 32 -> conv1 s4 -> 8 -> pool -> 4 -> pool -> 2 -> pool -> 1
    layers += [("flatten", Flatten(dtype=dtype)), ("fc", Linear(c[4], num_classes, dtype=dtype, rng=rng))]
    return layers


def alexnet_ye(num_classes, dtype, rng, width=1.0):
    """Ye et al. (2019) §4.1: AlexNet for CIFAR, "the kernels in first two convolution layers are set as
    3x3 with padding = 2 and stride = 1 [and] FC-1 and FC-2 ... re-sized to 4096x2048 and 2048x2048".

    ::

        conv1 3->64    3x3 s1 p2  32 -> 34   ReLU  maxpool 2x2 s2 -> 17
        conv2 64->192  3x3 s1 p2  17 -> 19   ReLU  maxpool 2x2 s2 -> 9
        conv3 192->384 3x3 s1 p1   9         ReLU
        conv4 384->256 3x3 s1 p1   9         ReLU
        conv5 256->256 3x3 s1 p1   9         ReLU  maxpool 2x2 s2 -> 4
        flatten 256*4*4 = 4096
        fc1 4096->2048 ReLU   fc2 2048->2048 ReLU   fc3 2048->num_classes

    What the paper leaves open and minicnn chose (guesses, each the one that
    fits the stated sizes):

    * Channels 64/192/384/256/256 and conv3-5 3x3 padding 1: torchvision's
      AlexNet (the paper used PyTorch); 256 channels at the end is what makes
      FC-1's 4096 inputs work out as 256 x 4 x 4.
    * Max-pooling 2x2 stride 2 after conv1, conv2, conv5: torchvision's 3x3
      stride-2 pools would leave 256 x 3 x 3 = 2304 inputs for FC-1, not 4096;
      2x2 pools give exactly 4096.
    * No dropout (minicnn has no Dropout layer; the paper does not mention it),
      no BatchNorm (Ye et al. treat AlexNet as their Conv-ReLU case, §3.2).
    * Conv and FC biases as in torchvision (conv biases start at 0).

    ``width`` scales every channel count and the FC widths (1.0: the paper's
    network; smaller for quick lessons and tests).
    """
    c = _scaled((64, 192, 384, 256, 256, 2048), width, "alexnet-ye")
    spec = [(3, c[0], 2), (c[0], c[1], 2), (c[1], c[2], 1), (c[2], c[3], 1), (c[3], c[4], 1)]
    layers = []
    for i, (cin, cout, pad) in enumerate(spec, start=1):
        layers += [(f"conv{i}", Conv2d(cin, cout, 3, stride=1, padding=pad, dtype=dtype, rng=rng)),
                   (f"relu{i}", ReLU(dtype=dtype))]
        if i in (1, 2, 5):
            layers.append((f"pool{i}", MaxPool2d(2, dtype=dtype)))
    hidden = c[5]
    layers += [("flatten", Flatten(dtype=dtype)),
               ("fc1", Linear(c[4] * 4 * 4, hidden, dtype=dtype, rng=rng)), ("relu6", ReLU(dtype=dtype)),
               ("fc2", Linear(hidden, hidden, dtype=dtype, rng=rng)), ("relu7", ReLU(dtype=dtype)),
               ("fc3", Linear(hidden, num_classes, dtype=dtype, rng=rng))]
    return layers


VGG11 = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]


def vgg11_cifar(num_classes, dtype, rng, width=1.0):
    layers, cin, i, p = [], 3, 0, 0
    widths = iter(_scaled([v for v in VGG11 if v != "M"], width, "vgg11-cifar"))
    for v in VGG11:
        if v == "M":
            p += 1
            layers.append((f"pool{p}", MaxPool2d(2, dtype=dtype)))
        else:
            i += 1
            cout = next(widths)
            layers += [(f"conv{i}", Conv2d(cin, cout, 3, padding=1, dtype=dtype, rng=rng)), (f"relu{i}", ReLU(dtype=dtype))]
            cin = cout
    layers += [("flatten", Flatten(dtype=dtype)), ("fc", Linear(cin, num_classes, dtype=dtype, rng=rng))]
    return layers


def _resnet_depth(name: str) -> int | None:
    """n for a name "resnet{6n+2}" (n >= 1), else None."""
    m = re.fullmatch(r"resnet([1-9][0-9]*)", name) if isinstance(name, str) else None
    if m is None:
        return None
    depth = int(m.group(1))
    return (depth - 2) // 6 if depth >= 8 and (depth - 2) % 6 == 0 else None


def _resnet_builder(n: int):
    def builder(num_classes, dtype, rng):
        return resnet_cifar(n, num_classes, dtype, rng)
    builder.__name__ = f"resnet{6 * n + 2}"
    return builder


class ModelRegistry(dict):
    """Name -> builder. Iterating lists the named models; lookups also accept any
    ``resnet{6n+2}`` (so ``"resnet56" in MODELS`` and ``MODELS["resnet56"]`` work)."""

    def __contains__(self, name):
        return dict.__contains__(self, name) or _resnet_depth(name) is not None

    def __missing__(self, name):
        n = _resnet_depth(name)
        if n is None:
            raise KeyError(name)
        return _resnet_builder(n)

    def get(self, name, default=None):
        return self[name] if name in self else default


MODELS = ModelRegistry({
    "convnet-small": convnet_small,
    "resnet20": _resnet_builder(3),
    "resnet8": _resnet_builder(1),
    "resnet38": _resnet_builder(6),
    "resnet74": _resnet_builder(12),
    "resnet110": _resnet_builder(18),
    "alexnet-cifar": alexnet_cifar,
    "alexnet-ye": alexnet_ye,
    "vgg11-cifar": vgg11_cifar,
})


def build(name: str, num_classes: int = 10, dtype=np.float32, seed: int = 0, **options) -> Model:
    """Build model ``name`` with seeded weights. Options: ``width`` for alexnet-cifar/alexnet-ye/vgg11-cifar.

    ``name`` is one of ``MODELS`` or any CIFAR ResNet depth ``resnet{6n+2}``
    (``build("resnet38")``: 6 blocks per stage)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)} (or any resnet{{6n+2}})")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    rng = np.random.default_rng(seed)
    layers = MODELS[name](num_classes, dtype, rng, **options)
    model = Model(*layers, arch=name, config=dict(num_classes=num_classes, **options), dtype=dtype)
    for layer in model.modules():
        if isinstance(layer, Conv2d):
            kaiming_normal_(layer, rng)
    return model
