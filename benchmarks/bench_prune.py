"""Does pruning pay in time, not only in FLOPs? One training step of a pruned VGG-16 against the dense one.

For p = 0.3 / 0.5 / 0.7 and widths 0.25 and 1, prints the step-time ratio (dense / pruned), the FLOP ratio (dense /
pruned, `training_flops`) and their quotient (1 = the pruned network turns all its FLOP saving into time), for the
exact-count channel mask and for the mask rounded to multiples of `round_to` channels per layer (`round_mask`).

The masks come from BN scales drawn at random, shrinking with depth as network slimming's do (deeper layers lose more
channels), so that every layer keeps an uneven count. Batch 64, channels-last (the engine's default), SGD step
included; each time is the median of `--steps` timed steps after two warm-up steps, and the whole series (dense and
pruned, interleaved) is repeated `--repeats` times: the time ratio printed is the median over the repeats, with their
range, because small networks time noisily on a shared CPU.
"""
import argparse, statistics, time

import torch
from torch import nn

from eb_study.masking import bn_layers, channel_mask, round_mask, bn_scales
from eb_study.models import get_model
from eb_study.prune import prune_channels, training_flops


def step_time(model: nn.Module, device, steps: int, batch: int = 64) -> float:
    model = model.to(device, memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)
    times = []
    for i in range(steps + 2):
        if device.type == 'cuda': torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True); nn.functional.cross_entropy(model(x), y).backward(); opt.step()
        if device.type == 'cuda': torch.cuda.synchronize()
        if i >= 2: times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    ap.add_argument('--steps', type=int, default=20)
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--widths', default='0.25,1')
    ap.add_argument('--round-to', type=int, default=8)
    a = ap.parse_args()
    device = torch.device(a.device)
    print(f"device {device} ({torch.get_num_threads()} threads); torch {torch.__version__}; VGG-16, batch 64, channels-last")
    print(f"{'width':>6} {'p':>5} {'mask':>9} {'time ratio (range)':>22} {'FLOP ratio':>11} {'quotient':>9}")
    for width in map(float, a.widths.split(',')):
        dense = get_model('vgg16', width=width, seed=0)
        g = torch.Generator().manual_seed(0)
        for i, bn in enumerate(bn_layers(dense).values()):
            bn.weight.data = torch.rand(bn.num_features, generator=g) / (1 + i / 4)
        nets = {}
        for p in (0.3, 0.5, 0.7):
            exact = channel_mask(dense, p)
            for name, mask in (('exact', exact), (f'round {a.round_to}', round_mask(exact, bn_scales(dense), a.round_to))):
                nets[p, name] = prune_channels(dense, mask)
        ratios = {k: [] for k in nets}
        for _ in range(a.repeats):
            t_dense = step_time(dense, device, a.steps)
            for k, net in nets.items(): ratios[k].append(t_dense / step_time(net, device, a.steps))
        f_dense = training_flops(dense)
        for (p, name), net in nets.items():
            tr, fr = statistics.median(ratios[p, name]), f_dense / training_flops(net)
            span = f"({min(ratios[p, name]):.2f}-{max(ratios[p, name]):.2f})"
            print(f"{width:>6g} {p:>5g} {name:>9} {tr:>9.2f}x {span:>12} {fr:>10.2f}x {tr / fr:>9.2f}")

if __name__ == '__main__':
    main()
