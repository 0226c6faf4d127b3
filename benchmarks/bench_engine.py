"""Epoch time of eb_study's training engine against (1) a loop written the way the paper's code is and (2) the pure
compute floor, plus the cost of EB detection per epoch. Prints measured times and ratios; asserts nothing.

    python benchmarks/bench_engine.py [--data PATH.npz] [--device cpu|cuda] [--epochs 3] [--precisions fp32,bf16]

Model: quarter-width VGG-16 (the CPU-scale study model); data: the shared CIFAR-10 subset (5,085 images).
"""
import argparse, statistics, time
from pathlib import Path

import torch
from torch import nn

from eb_study.data import load_data, get_loaders, cifar10_subset
from eb_study.detector import EarlyBird
from eb_study.masking import add_bn_l1_grad
from eb_study.models import get_model
from eb_study.train import Trainer, TrainConfig


def sync(device):
    if device.type == 'cuda': torch.cuda.synchronize()


def timed(fn, device, repeats):
    """Run `fn` once to warm up, then `repeats` times; return the list of wall times in seconds."""
    fn(); sync(device)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter(); fn(); sync(device); out.append(time.perf_counter() - t0)
    return out


def reference_epoch(x, y, device, batch_size=64):
    """The paper's style: torchvision transforms per image in a Dataset, a DataLoader with one worker, fp32."""
    from torch.utils.data import DataLoader, Dataset
    import torchvision.transforms as T
    from PIL import Image

    class Cifar(Dataset):
        def __init__(self, x, y):
            self.x, self.y = x.permute(0, 2, 3, 1).numpy(), y.numpy()
            self.tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                                 T.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))])
        def __len__(self): return len(self.y)
        def __getitem__(self, i): return self.tf(Image.fromarray(self.x[i])), int(self.y[i])

    torch.manual_seed(0)
    model = get_model('vgg16', width=0.25).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    dl = DataLoader(Cifar(x, y), batch_size=batch_size, shuffle=True, num_workers=1, persistent_workers=True)

    def epoch():
        model.train()
        for xb, yb in dl:
            xb, yb = xb.to(device), yb.to(device)
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xb), yb)
            loss.backward()
            add_bn_l1_grad(model, 1e-4)
            opt.step()
    return epoch


def engine_epoch(data, device, precision, channels_last):
    torch.manual_seed(0)
    tr, te = get_loaders(data, batch_size=64, device=device, seed=0)
    t = Trainer(get_model('vgg16', width=0.25), tr, te,
                TrainConfig(epochs=1000, sparsity=1e-4, precision=precision, channels_last=channels_last), device=device, progress=False)
    def epoch():
        t.train_epoch(); t.epoch += 1
    return epoch, t


def floor_epoch(data, device, precision, channels_last, batch_size=64):
    """Same model, optimiser, sparsity and precision on batches already in memory: no data pipeline at all."""
    torch.manual_seed(0)
    model = get_model('vgg16', width=0.25).to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    n = len(data.y_train)
    xs = torch.randn(n, 3, 32, 32, device=device).contiguous(memory_format=fmt).split(batch_size)
    ys = data.y_train.to(device).split(batch_size)
    def epoch():
        model.train()
        for xb, yb in zip(xs, ys):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == 'bf16'):
                loss = nn.functional.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            add_bn_l1_grad(model, 1e-4)
            opt.step()
    return epoch


def fmt(ts): return f"{statistics.mean(ts):6.2f} s ± {statistics.pstdev(ts):.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--data', default=cifar10_subset(Path(__file__).parent) or 'digits', help='dataset (default: the shared CIFAR-10 subset)')
    ap.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    ap.add_argument('--epochs', type=int, default=3, help='timed epochs per variant (after one warm-up epoch)')
    ap.add_argument('--precisions', default='fp32,bf16')
    ap.add_argument('--channels-last', action='store_true')
    a = ap.parse_args()
    device = torch.device(a.device)
    data = load_data(str(a.data))
    print(f"device {device} ({torch.get_num_threads()} threads){' ' + torch.cuda.get_device_name() if device.type == 'cuda' else ''}; "
          f"torch {torch.__version__}; {len(data.y_train)} training images; quarter-width VGG-16, batch 64")

    ref = timed(reference_epoch(data.x_train, data.y_train, device), device, a.epochs)
    print(f"reference loop (DataLoader, per-image transforms, fp32): {fmt(ref)} per epoch")
    for precision in a.precisions.split(','):
        eng_fn, trainer = engine_epoch(data, device, precision, a.channels_last)
        eng = timed(eng_fn, device, a.epochs)
        flo = timed(floor_epoch(data, device, precision, a.channels_last), device, a.epochs)
        eb = EarlyBird(ratios=(0.3, 0.5, 0.7))
        det = timed(lambda: eb.step(trainer.model), device, 20)
        print(f"engine, {precision}:  {fmt(eng)} per epoch   compute floor {fmt(flo)}")
        print(f"  speed-up over the reference loop: {statistics.mean(ref) / statistics.mean(eng):.2f}x")
        print(f"  engine over the compute floor:    {100 * (statistics.mean(eng) / statistics.mean(flo) - 1):+.1f} %")
        print(f"  EB detection (3 ratios) per epoch: {1e3 * statistics.mean(det):.2f} ms = "
              f"{100 * statistics.mean(det) / statistics.mean(eng):.3f} % of an epoch")


if __name__ == '__main__':
    main()
