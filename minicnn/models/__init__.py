"""Model zoo: ``build(name, num_classes=10, dtype=np.float32, seed=0, **options)``.

A model is a :class:`~minicnn.layers.Sequential` of named layers (its
``arch`` attribute holds the name it was built from). Layers are reached by
qualified names such as ``"layer2.0.conv1"``; ``model.named_parameters()``
yields ``(qualified_name, layer, param_name)`` for every parameter.
"""
from .zoo import MODELS, build, kaiming_normal_

__all__ = ["MODELS", "build", "kaiming_normal_"]
