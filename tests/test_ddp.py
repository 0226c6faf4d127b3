"""One EB Train run on two processes (gloo, CPU) under `torchrun`: every rank holds the same masks and parameters;
the run equals one process that splits each batch into two "ghost batches" (BatchNorm statistics per shard, as DDP
without SyncBatchNorm computes them) and differs from a plain one-process run by exactly that; the command line run
completes, and resumes after one rank is killed."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from conftest import fault_env, fired, read_log, results, resumed
from eb_study.data import load_data, get_loaders
from eb_study.detector import EarlyBird
from eb_study.masking import add_bn_l1_grad
from eb_study.models import get_model
from eb_study.train import TrainConfig, check_run_folder, lr_at

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason='needs torch.distributed with gloo')
TORCHRUN = shutil.which('torchrun') or str(Path(sys.executable).with_name('torchrun'))
EPOCHS, BATCH = 3, 64


def torchrun(*args, nproc=2, **kw):
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    return [TORCHRUN, '--nproc-per-node', str(nproc), '--master-port', str(29500 + os.getpid() % 1000), *map(str, args)], env


def ghost_batch_run(shards: int, device='cpu', sync_bn=False, epochs=EPOCHS):
    """The worker's run in one process: each global batch as `shards` shards, each normalised by its own BN statistics
    (with `sync_bn`: the whole batch's, as SyncBatchNorm computes them), the loss the mean of the shards' mean losses
    (what DDP's gradient average computes; the last batch of an epoch splits unevenly); shards=1 is a plain run."""
    data = load_data('digits')
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # as the torchrun workers (OMP_NUM_THREADS=1): CPU rounding depends on the thread count
    loaders = [get_loaders(data, batch_size=BATCH, seed=0, device=device)[0] for _ in range(shards)]
    for r, dl in enumerate(loaders): dl.shard = (r, shards)
    torch.manual_seed(0)
    model = get_model('vgg11', data.num_classes, 0.125, seed=0).to(device)
    cfg = TrainConfig(epochs=epochs, lr=0.05, sparsity=1e-4, channels_last=False)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    eb = EarlyBird((0.5,), length=2, threshold=0.3)
    for epoch in range(epochs):
        model.train()
        for g in opt.param_groups: g['lr'] = lr_at(cfg, epoch)
        for dl in loaders: dl.set_epoch(epoch)
        for batches in (zip(*loaders) if not sync_bn else ([b] for b in full_batch(loaders[0], epoch))):
            if sync_bn:  # one forward over the whole batch; the shards' losses as DDP averages them
                (x, y), = batches
                loss = sum(torch.nn.functional.cross_entropy(o, t) for o, t in
                           zip(model(x).tensor_split(shards), y.tensor_split(shards))) / shards
            else: loss = sum(torch.nn.functional.cross_entropy(model(x), y) for x, y in batches) / shards
            opt.zero_grad(); loss.backward(); add_bn_l1_grad(model, cfg.sparsity); opt.step()
        eb.step(model)
    torch.set_num_threads(threads)
    return model, eb


def full_batch(loader, epoch):
    """`loader`'s global batches of `epoch`, unsharded (shard r of a batch is its r-th `tensor_split`)."""
    shard, loader.shard = loader.shard, (0, 1)
    loader.set_epoch(epoch)
    try: yield from loader
    finally: loader.shard = shard


def test_two_ranks_hold_the_same_state_and_equal_the_ghost_batch_run(tmp_path):
    cmd, env = torchrun(Path(__file__).with_name('ddp_worker.py'), tmp_path, EPOCHS, BATCH)
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=600)
    r0, r1 = (torch.load(tmp_path / f'rank{r}.pt', weights_only=False) for r in (0, 1))
    assert (r0['rank'], r1['rank'], r0['world']) == (0, 1, 2)
    assert r0['emerged_at'] == r1['emerged_at'] and len(r0['masks']) == 2
    assert all(torch.equal(a, b) for a, b in zip(r0['masks'], r1['masks']))            # the same masks on every rank
    assert all(torch.equal(r0['params'][n], r1['params'][n]) for n in r0['params'])     # bit for bit the same weights
    assert [h['train_loss'] for h in r0['history']] == [h['train_loss'] for h in r1['history']]  # all-reduced loss
    ghost, eb = ghost_batch_run(2)
    for n, p in ghost.named_parameters():   # the same computation, sums in another order: float rounding only
        torch.testing.assert_close(r0['params'][n], p.detach(), atol=1e-4, rtol=1e-3)
    assert eb.emerged_at == r0['emerged_at']
    assert all(torch.equal(a, b) for a, b in zip(eb.queues[0.5].masks, r0['masks']))
    plain, _ = ghost_batch_run(1)           # one process, full-batch BN statistics: a different run
    diff = max(float((plain.state_dict()[n] - r0['params'][n]).abs().max()) for n in r0['params'])
    assert diff > 1e-2, diff


ARGS = ['--device', 'cpu', '--arch', 'vgg11', '--width', '0.125', '--epochs', 6, '--retrain_epochs', 3, '--full_search',
        '--no-ns', '--no-dense', '--quiet']


def test_cli_on_two_processes_resumes_after_a_rank_is_killed(tmp_path):
    cmd, env = torchrun('-m', 'eb_study', *ARGS, '--out', tmp_path / 'straight')
    straight = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert straight.returncode == 0, straight.stderr
    assert straight.stdout.count('run folder') == 1                                   # one summary: rank 0's
    killed = tmp_path / 'killed'
    cmd, env = torchrun('-m', 'eb_study', *ARGS, '--out', killed)
    faulty, once = fault_env(tmp_path, 'search-', 3, 'mid-epoch', 'SIGKILL', env)      # a rank dies mid-search, in epoch 3
    died = subprocess.run(cmd, env=faulty, capture_output=True, text=True, timeout=600)
    assert died.returncode != 0, died.stdout                                          # and takes the job down
    record, before = fired(once)
    search = Path(record['stage'])
    assert len(before) == 2 and not (search / 'result.json').exists() and check_run_folder(search) == 2
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)  # the job restarted
    assert again.returncode == 0, again.stderr
    a, b = results(straight.stdout), results(again.stdout)
    for k in ('eb_epochs', 'ticket_acc', 'search_acc', 'train_flops_eb'): assert a[k] == b[k], k
    la, lb = (read_log(next(d.glob('search-*')) / 'log.csv') for d in (tmp_path / 'straight', killed))
    assert [(r['epoch'], r['train_loss'], r['test_acc']) for r in la] == [(r['epoch'], r['train_loss'], r['test_acc']) for r in lb]
    resumed(once, len(la))                                                            # the two epochs kept, timings too


def test_sync_bn_on_the_cpu_stops_with_a_clear_message(tmp_path):
    cmd, env = torchrun('-m', 'eb_study', *ARGS, '--sync-bn', '--out', tmp_path)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode != 0 and "SyncBatchNorm runs on GPUs only" in r.stderr, r.stderr[-2000:]


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
@pytest.mark.parametrize('sync_bn', [False, True])
def test_two_ranks_on_a_gpu_equal_one_process_with_the_same_bn_statistics(tmp_path, sync_bn):
    """Two processes on CUDA (sharing one GPU, gloo): with SyncBatchNorm the run equals one process that normalises
    the whole global batch at once; without it, the two-ghost-batch process, as on the CPU."""
    cmd, env = torchrun(Path(__file__).with_name('ddp_worker.py'), tmp_path, 1, BATCH, 'cuda', int(sync_bn))  # one epoch
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f'rank{r}.pt', weights_only=False) for r in (0, 1))
    assert r0['sync_bn_layers'] == (8 if sync_bn else 0)                               # VGG-11: 8 BN layers
    assert all(torch.equal(a, b) for a, b in zip(r0['masks'], r1['masks']))
    assert all(torch.equal(r0['params'][n], r1['params'][n]) for n in r0['params'])
    dist_to = lambda m: max(float((m.state_dict()[n].cpu() - r0['params'][n]).abs().max()) for n in r0['params'])
    same = dist_to(ghost_batch_run(2, 'cuda', sync_bn=sync_bn, epochs=1)[0])
    other = dist_to(ghost_batch_run(2, 'cuda', sync_bn=not sync_bn, epochs=1)[0])  # the other BN statistics
    # float rounding (sums in other orders, SyncBatchNorm's own statistics kernels) grows over the steps of training,
    # so after one epoch (23 steps): close to the run with the same BN statistics, several times closer than to the
    # other (on an H100 with SyncBatchNorm: 1.1e-4 against 7.8e-4, nbs/results/gpu/sync_bn_distances_h100.log)
    assert same < 1e-3 and other > 5 * same, (same, other)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
def test_cli_on_two_processes_on_a_gpu_with_sync_bn(tmp_path):
    args = [a for a in ARGS if a not in ('--device', 'cpu')]
    # the auto backend: NCCL with a GPU per process, gloo when two processes share one (NCCL refuses that)
    cmd, env = torchrun('-m', 'eb_study', *args, '--device', 'cuda', '--sync-bn', '--out', tmp_path)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count('run folder') == 1 and 'cuda' in r.stdout
    res = results(r.stdout)
    assert res['device'].startswith('cuda') and res['ticket_acc'] > 0.5, res
