"""``e2train``: E2-Train (Wang et al., NeurIPS 2019) -- SMD + SLU + PSG (§3, §4.5, Table 3).

``--method e2train[:smd_p=0.5,epochs_scale=1.333,slu_target=0.6,slu_alpha=1.0,gate=rnn,exec=skip,psg_beta=0.05]``

A named combination (:class:`~minicnn.methods.base.Combination`): ``build_methods``
replaces it by its three parts, built *by name* through the method registry, so each
part is the ordinary method with its own key, random stream, records and saved state,
and the trainer has no special case:

* ``smd:p=<smd_p>,epochs_scale=<epochs_scale>`` -- stochastic mini-batch dropping
  (§3.1): each batch is skipped with probability p; the run is stretched by
  epochs_scale so that the energy ratio is the paper's (§4.2: "We adopt SMD under
  this energy ratio of 0.67 in all the remaining experiments"; at p = 0.5 that is
  0.67 / 0.5 = 4/3 of the iterations, 1.333, which is also how the official code
  stretches its LR milestones, ``int(32000 * 4/3)``);
* ``slu:target=<slu_target>,alpha=<slu_alpha>,gate=<gate>,exec=<exec>`` -- selective
  layer update (§3.2), see :mod:`minicnn.methods.slu`;
* ``psg:beta=<psg_beta>`` -- predictive sign gradient descent (§3.3, Eq. 2) with the
  adaptive threshold beta = 0.05 of §4.4 (Table 3 also reports 0.1).

Order: smd first (a dropped batch reaches no other part), then slu, then psg -- PSG
acts on the layers that run, after SLU has decided which run.

The paper's settings (§4.1, §4.5): ResNet-74 on CIFAR-10, SGD momentum 0.9, weight decay
1e-4, initial LR 0.03 when PSG is used ("as SignSGD[21] suggested small learning rates";
``minicnn train`` says so when a run with psg leaves ``--lr`` at its default), 64k iterations, and
stochastic weight averaging "when PSG is adopted" (§4.1, their ref. [67]): not a part of
this combination -- add ``--method swa`` (:mod:`minicnn.methods.swa`), as the
``e2train`` preset does. Table 3 (with beta = 0.05): skipping 20/40/60% (slu_target
0.8/0.6/0.4) gives 84.64/88.72/92.81% energy savings at 92.12/91.84/91.36%.
"""
from __future__ import annotations

from .base import Combination, METHODS, parse_method_spec, register_method

PARTS = ("smd", "slu", "psg")


@register_method("e2train")
class E2Train(Combination):

    def __init__(self, smd_p: float = 0.5, epochs_scale: float = 1.333, slu_target: float = 0.6,
                 slu_alpha: float = 1.0, gate: str = "rnn", exec: str = "skip", psg_beta: float = 0.05):
        self.smd_p, self.epochs_scale = float(smd_p), float(epochs_scale)
        self.slu_target, self.slu_alpha, self.gate, self.exec = float(slu_target), float(slu_alpha), gate, exec
        self.psg_beta = float(psg_beta)
        self.part_specs()                      # fails early on a missing part

    def part_specs(self) -> list[str]:
        missing = [p for p in PARTS if p not in METHODS]
        if missing:
            raise ValueError(f"method e2train needs the methods {', '.join(missing)}, not registered in this build")
        return [f"smd:p={self.smd_p},epochs_scale={self.epochs_scale}",
                f"slu:target={self.slu_target},alpha={self.slu_alpha},gate={self.gate},exec={self.exec}",
                f"psg:beta={self.psg_beta}"]

    def parts(self):
        return [parse_method_spec(spec) for spec in self.part_specs()]
