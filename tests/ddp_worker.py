"""Run by `torchrun` from tests/test_ddp.py: a short EB search of a small BN convnet on the embedded digits, in a
process group; every rank saves what it holds (masks, queue, parameters) to `out/rank{r}.pt` for the test to compare.
Arguments: out epochs batch [device [sync_bn]]; on 'cuda' the processes may share one GPU (gloo handles CUDA tensors).
(The library writes on rank 0 only; this file is test code, so every rank writes its own file.)"""
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from eb_study.data import load_data, get_loaders
from eb_study.detector import EarlyBird
from eb_study.dist import init_distributed, rank, world_size
from eb_study.ebtrain import EBSearch
from eb_study.models import get_model
from eb_study.train import TrainConfig, Trainer

out, epochs, batch = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
device, sync_bn = (sys.argv[4] if len(sys.argv) > 4 else 'cpu'), (len(sys.argv) > 5 and sys.argv[5] == '1')
torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
device = init_distributed(torch.device(device), 'gloo')
data = load_data('digits')
loaders = get_loaders(data, batch_size=batch, seed=0, device=device)
torch.manual_seed(0)
model = get_model('vgg11', data.num_classes, 0.125, seed=0)
eb = EarlyBird((0.5,), length=2, threshold=0.3)
t = Trainer(model, *loaders, TrainConfig(epochs=epochs, lr=0.05, sparsity=1e-4, channels_last=False, sync_bn=sync_bn),
            hooks=[EBSearch(eb, stop=False)], device=device, progress=False)
t.fit()
torch.save(dict(rank=rank(), world=world_size(), emerged_at=eb.emerged_at, masks=eb.queues[0.5].masks,
                params={n: p.detach().cpu().clone() for n, p in t.model.named_parameters()},
                sync_bn_layers=sum(isinstance(m, torch.nn.SyncBatchNorm) for m in t.model.modules()),
                history=t.history), out / f'rank{rank()}.pt')
dist.destroy_process_group()
