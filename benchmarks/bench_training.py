"""Training throughput (images/s, forward + backward + SGD step, batch 128, float32).

    python benchmarks/bench_training.py [--models convnet-small,resnet20] [--batch-size 128] [--steps 10]

Same as ``minicnn bench``. For PyTorch's figures on the same machine, run
``benchmarks/torch_reference.py bench`` with a Python that has torch.
"""
import argparse

from minicnn.bench import bench_training
from minicnn.kernels import apply_speed_settings, thread_info

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="convnet-small,resnet20")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    a = p.parse_args()
    apply_speed_settings()              # as minicnn train has them (minicnn/kernels/process.py)
    print(thread_info())
    for name in a.models.split(","):
        r = bench_training(name, a.batch_size, a.steps)
        print(f"{r['model']:>14}: {r['images_per_s']:7.1f} img/s  ({r['step_ms']:.1f} ms/step, median of {r['steps']})")
