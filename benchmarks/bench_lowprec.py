"""Overhead of *simulated* low precision: epoch time of the training engine with the `LowPrecision` hook (8-bit
block floating point, SWALP's five quantities) against the same epoch in fp32, and which quantities cost what.
Prints measured times and ratios; asserts nothing.

    python benchmarks/bench_lowprec.py [--data PATH.npz] [--device cpu|cuda] [--repeats 2] [--images 2048]

Simulated quantisation rounds values in fp32 arithmetic, so it can only add time; the savings it stands for (fewer
bit-operations on 8-bit hardware) are counted by `eb_study.cost`, not measured here.
Model: quarter-width VGG-16 (the CPU-scale study model); data: the shared CIFAR-10 subset, else digits.
"""
import argparse, os, statistics, time
from pathlib import Path

import torch

from eb_study.data import load_data, get_loaders, ImageData, cifar10_subset
from eb_study.lowprec import LowPrecision, LPConfig
from eb_study.models import get_model
from eb_study.train import Trainer, TrainConfig

VARIANTS = {  # name: LPConfig, or None for plain fp32
    'fp32': None,
    '8-bit: weights, grads, momentum': LPConfig(act=None, error=None),
    '8-bit: activations, errors': LPConfig(weight=None, grad=None, momentum=None),
    '8-bit: all five (SWALP, LF/LL search)': LPConfig(),
    '8-bit: all five, nearest rounding': LPConfig(rounding='nearest'),
}


def epoch_times(data, device, lp, repeats):
    loaders = get_loaders(data, batch_size=64, device=device, seed=0)
    torch.manual_seed(0)
    hooks = [LowPrecision(lp)] if lp else []
    t = Trainer(get_model('vgg16', num_classes=data.num_classes, width=0.25), *loaders,
                TrainConfig(epochs=repeats + 1, lr=0.05, sparsity=1e-4), hooks=hooks, device=device, progress=False)
    times = []
    for h in hooks: h.before_fit(t)
    for _ in range(repeats + 1):  # the first epoch warms up
        if device.type == 'cuda': torch.cuda.synchronize()
        t0 = time.perf_counter(); t.train_epoch()
        if device.type == 'cuda': torch.cuda.synchronize()
        times.append(time.perf_counter() - t0); t.epoch += 1
    for h in hooks: h.after_fit(t)
    return times[1:]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--data', default=str(cifar10_subset(Path(__file__).parent) or 'digits'), help='dataset (default: the shared CIFAR-10 subset)')
    ap.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    ap.add_argument('--repeats', type=int, default=2, help='timed epochs per variant (after one warm-up epoch)')
    ap.add_argument('--images', type=int, default=2048, help='training images per epoch (0: all)')
    a = ap.parse_args()
    device = torch.device(a.device)
    data = load_data(a.data)
    if a.images: data = ImageData(data.x_train[:a.images], data.y_train[:a.images], data.x_test[:256], data.y_test[:256],
                                  data.num_classes, data.mean, data.std, data.name)
    cpu = os.cpu_count()
    print(f"device {device} ({torch.get_num_threads()} threads, {cpu} cores), torch {torch.__version__}; "
          f"data {Path(a.data).name}: {len(data.y_train)} training images per epoch; quarter-width VGG-16, batch 64")
    base = None
    for name, lp in VARIANTS.items():
        ts = epoch_times(data, device, lp, a.repeats)
        med = statistics.median(ts)
        base = base or med
        print(f"  {name:<40} {med:7.2f} s/epoch  ({med / base:.2f}x fp32)")
    print("Simulated low precision only adds work on fp32 hardware: the ratios above are its overhead, not a saving. "
          "The 4x fewer bit-operations of an 8-bit search are an accounting figure (eb_study.cost).")


if __name__ == '__main__':
    main()
