"""Cost of `TrainConfig.deterministic` (cuDNN deterministic kernels only, the default) on GPUs: training-step time of
VGG-16 and PreResNet-56 at CIFAR size, batch 256, channels-last fp32, each setting measured twice. Needs CUDA.
Results of one H100 run: nbs/results/gpu/bench_deterministic.txt."""
import time, torch
from eb_study.models import get_model
torch.backends.cudnn.benchmark = False
for arch in ('vgg16', 'preresnet56'):
    for det in (False, True, False, True):
        torch.backends.cudnn.deterministic = det
        m = get_model(arch, 10, 1.0, seed=0).cuda().to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
        x = torch.randn(256, 3, 32, 32, device='cuda').contiguous(memory_format=torch.channels_last); y = torch.randint(0, 10, (256,), device='cuda')
        def step():
            loss = torch.nn.functional.cross_entropy(m(x), y); opt.zero_grad(); loss.backward(); opt.step()
        for _ in range(20): step()
        torch.cuda.synchronize(); t = time.perf_counter()
        for _ in range(100): step()
        torch.cuda.synchronize(); print(f"{arch:12s} deterministic={det!s:5s} {1000 * (time.perf_counter() - t) / 100:.2f} ms/step (batch 256)")
