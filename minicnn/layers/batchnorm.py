"""Batch normalization over (N, H, W) per channel, exactly torch.nn.BatchNorm2d.

Training mode, per channel over its n = N*H*W values::

    mu      = mean(x)                      var = mean((x - mu)^2)   (biased)
    inv_std = 1 / sqrt(var + eps)          xhat = (x - mu) * inv_std
    y       = gamma * xhat + beta
    running_mean <- (1 - momentum) * running_mean + momentum * mu
    running_var  <- (1 - momentum) * running_var  + momentum * var * n/(n-1)   (unbiased)

Eval mode uses ``running_mean`` and ``running_var`` in place of mu and var
(and updates nothing): y is then an affine function of x.

Backward (training mode), the compact form of the chain rule through mu and var::

    dbeta  = sum(dy)
    dgamma = sum(dy * xhat)
    dx     = (gamma * inv_std / n) * (n*dy - dbeta - xhat * dgamma)

which the kernel applies in one pass as ``dx = A*dy + B*(x - mu) + C`` per channel,
with ``A = gamma*inv_std``, ``B = -A*inv_std*dgamma/n``, ``C = -A*dbeta/n``.
In eval mode mu and var are constants: ``dx = gamma*inv_std*dy`` and dgamma,
dbeta are as above with the running statistics in xhat.

Cache: a reference to x (no copy; layers never mutate their inputs) and the
per-channel mu and inv_std in float64.
"""
from __future__ import annotations

import numbers

import numpy as np

from ..kernels.batchnorm import channel_affine, channel_affine2, channel_grad_sums, channel_mean_var
from ._leaf import as_grad, as_input, check_shape, need_cache, positive_int
from .base import Layer


class BatchNorm2d(Layer):
    """BatchNorm2d(num_features, eps=1e-5, momentum=0.1, dtype=np.float32).

    Params ``weight`` (gamma, init 1) and ``bias`` (beta, init 0); buffers
    ``running_mean`` (init 0) and ``running_var`` (init 1), updated in place.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, dtype=np.float32):
        super().__init__(dtype)
        self.num_features = positive_int(num_features, "BatchNorm2d num_features")
        if not isinstance(eps, numbers.Real) or not eps > 0:
            raise ValueError(f"BatchNorm2d eps must be > 0, got {eps!r}")
        if not isinstance(momentum, numbers.Real) or not 0 <= momentum <= 1:
            raise ValueError(f"BatchNorm2d momentum must be in [0, 1], got {momentum!r}")
        self.eps = float(eps)
        self.momentum = float(momentum)
        C = self.num_features
        self.add_param("weight", np.ones(C))
        self.add_param("bias", np.zeros(C))
        self.add_buffer("running_mean", np.zeros(C))
        self.add_buffer("running_var", np.ones(C))

    def output_shape(self, input_shape):
        return check_shape(self, input_shape, 4, self.num_features)

    def forward(self, x):
        x = as_input(self, x)
        N, C, H, W = self.output_shape(x.shape)
        n = N * H * W
        if self.training:
            if n < 2:
                raise ValueError(f"{self.name}: expected more than 1 value per channel when training, "
                                 f"got input of shape {x.shape}")
            mean, var = channel_mean_var(x)  # float64, biased variance
            m = self.momentum
            rm, rv = self.buffers["running_mean"], self.buffers["running_var"]
            rm[...] = (1 - m) * rm + m * mean
            rv[...] = (1 - m) * rv + m * var * (n / (n - 1))
        else:
            mean = self.buffers["running_mean"].astype(np.float64)
            var = self.buffers["running_var"].astype(np.float64)
        inv_std = 1.0 / np.sqrt(var + self.eps)
        scale = self.params["weight"] * inv_std  # float64
        shift = self.params["bias"] - mean * scale
        y = channel_affine(x, scale.astype(self.dtype), shift.astype(self.dtype), np.empty_like(x))
        self.cache = (x, mean, inv_std, self.training)
        return y

    def backward(self, dy):
        x, mean, inv_std, trained = need_cache(self)
        dy = as_grad(self, dy, x.shape)
        N, C, H, W = x.shape
        n = N * H * W
        gamma = self.params["weight"].astype(np.float64)
        want_w, want_b = self.wants_grad("weight"), self.wants_grad("bias")
        if want_w or want_b or (trained and self.needs_input_grad):
            sdy, sdyx = channel_grad_sums(dy, x, mean)  # sum(dy), sum(dy * (x - mu))
            dbeta, dgamma = sdy, sdyx * inv_std
            if want_w:
                self.grads["weight"] = dgamma.astype(self.dtype)
            if want_b:
                self.grads["bias"] = dbeta.astype(self.dtype)
        dx = None
        if self.needs_input_grad:
            a = gamma * inv_std
            dt = self.dtype
            if trained:
                b = -a * inv_std * dgamma / n
                c = -a * dbeta / n
                dx = channel_affine2(dy, x, mean.astype(dt), a.astype(dt), b.astype(dt), c.astype(dt),
                                     np.empty_like(x))
            else:  # eval: mu, var are constants, dx = gamma * inv_std * dy
                dx = channel_affine(dy, a.astype(dt), np.zeros(C, dtype=dt), np.empty_like(x))
        self.cache = None
        return dx

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine=True, track_running_stats=True"
