"""End-to-end runs of the `eb-study` console script in fresh processes: results, resume after SIGKILL, bad input."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import run_script

# A small, quick configuration: eighth-width VGG-11 on the offline digits data.
QUICK = ['--arch', 'vgg11', '--width', '0.125', '--quiet']
SUBSET = Path(__file__).resolve().parents[1].parent / 'shared' / 'data' / 'cifar10_subset.npz'


def eb_study(*args, check=True, **kw): return run_script('eb-study', *args, check=check, **kw)


def test_run_writes_results_and_summary(tmp_path):
    out = tmp_path / 'run'
    r = eb_study(*QUICK, '--epochs', 8, '--retrain_epochs', 3, '--threshold', 0.2, '--out', out)
    res = json.loads((out / 'results.json').read_text())
    for k in ('eb_epoch epochs dense_acc ticket_acc params_before params_after flops_before flops_after '
              'train_flops_eb train_flops_dense train_bitops_eb train_bitops_dense wall_s_eb wall_s_dense '
              'energy_j_eb energy_j_dense search_bits retrain_bits stages').split():
        assert k in res, k
    assert res['epochs'] == 8 and 0 <= res['ticket_acc'] <= 1 and 0 <= res['dense_acc'] <= 1
    assert res['params_after'] < res['params_before']
    assert json.loads((out / 'config.json').read_text())['arch'] == 'vgg11'
    for f in ('distance_matrix.png', 'curves.png', 'search/log.csv', 'retrain/log.csv', 'dense/log.csv'):
        assert (out / f).stat().st_size > 0, f
    assert 'EB epoch' in r.stdout and 'training FLOPs' in r.stdout and str(out) in r.stdout
    # a second run of a finished folder trains nothing and reports the same numbers
    again = eb_study(*QUICK, '--epochs', 8, '--retrain_epochs', 3, '--threshold', 0.2, '--out', out)
    assert json.loads((out / 'results.json').read_text()) == res
    assert again.stdout == r.stdout


def test_low_precision_search_lf_and_ll(tmp_path):
    """LF (8-bit search, 32-bit retraining) and LL (both 8-bit): the stages ran in 8 bits and are costed as such."""
    from eb_study.lowprec import LPConfig
    q8 = LPConfig.bits(8, rounding='nearest').quantizer('weight')
    args = [*QUICK, '--epochs', 4, '--retrain-epochs', 2, '--threshold', 0.3, '--length', 2, '--no-dense']
    for name, extra in (('lf', ['--search-bits', 8]), ('ll', ['--search-bits', 8, '--retrain-bits', 8])):
        out = tmp_path / name
        r = eb_study(*args, *extra, '--out', out)
        res = json.loads((out / 'results.json').read_text())
        st = res['stages']
        assert (res['search_bits'], res['retrain_bits']) == (8, 8 if name == 'll' else 32)
        assert res['train_bitops_eb'] == st['search']['train_flops'] * 8 + st['retrain']['train_flops'] * res['retrain_bits']
        assert res['train_bitops_dense'] == 32 * res['train_flops_dense']
        assert res['energy_j_eb'] is None and res['energy_j_dense'] is None     # CPU: not measured, not invented
        assert 'search               ' in r.stdout and '8-bit' in r.stdout and 'energy: not measured' in r.stdout
        # the EB weights come from the 8-bit search: every tensor is on its 8-bit grid
        ticket = torch.load(out / 'search' / 'eb_ticket.pt', weights_only=True)['model']
        weights = [v for k, v in ticket.items() if v.is_floating_point() and 'running' not in k]
        assert weights and all(torch.equal(q8(w), w) for w in weights)
        retrained = torch.load(out / 'retrain' / 'model.pt', weights_only=True)['state_dict']
        on_grid = [torch.equal(q8(w), w) for k, w in retrained.items() if w.is_floating_point() and 'running' not in k]
        assert all(on_grid) if name == 'll' else not all(on_grid)


def test_same_seed_same_masks_other_seed_differs(tmp_path):
    args = [*QUICK, '--epochs', 4, '--retrain_epochs', 1, '--no_dense', '--full_search']
    for name, seed in (('a', 0), ('b', 0), ('c', 1)): eb_study(*args, '--seed', seed, '--out', tmp_path / name)
    masks = {n: torch.load(tmp_path / n / 'search' / 'masks.pt', weights_only=True)[0.5] for n in 'abc'}
    assert torch.equal(masks['a'], masks['b'])
    assert not torch.equal(masks['a'], masks['c'])


def test_resume_after_kill_mid_epoch_gives_same_masks(tmp_path):
    args = [*QUICK, '--epochs', 6, '--retrain_epochs', 1, '--no_dense', '--full_search']
    eb_study(*args, '--out', tmp_path / 'straight')

    killed = tmp_path / 'killed'
    exe = shutil.which('eb-study') or str(Path(sys.executable).with_name('eb-study'))
    p = subprocess.Popen([exe, *map(str, args), '--out', str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = killed / 'search' / 'log.csv'
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= 3:  # header + 2 epochs done
            break
        time.sleep(0.05)
    epoch_s = float(log.read_text().splitlines()[-1].split(',')[-1])
    time.sleep(epoch_s / 2)                                     # well inside epoch 3
    p.send_signal(signal.SIGKILL); p.wait()
    assert p.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    ck = torch.load(killed / 'search' / 'checkpoint.pt', weights_only=True)
    assert 2 <= ck['epoch'] < 6
    assert not (killed / 'search' / 'result.json').exists()

    eb_study(*args, '--out', killed)
    a = torch.load(tmp_path / 'straight' / 'search' / 'masks.pt', weights_only=True)
    b = torch.load(killed / 'search' / 'masks.pt', weights_only=True)
    assert a.keys() == b.keys()
    for r in a: assert torch.equal(a[r], b[r]), r
    ra, rb = (json.loads((d / 'results.json').read_text()) for d in (tmp_path / 'straight', killed))
    assert ra['ticket_acc'] == rb['ticket_acc'] and ra['eb_epochs'] == rb['eb_epochs']


def test_corrupt_checkpoint_is_named(tmp_path):
    out = tmp_path / 'run'
    eb_study(*QUICK, '--epochs', 2, '--retrain_epochs', 1, '--no_dense', '--full_search', '--out', out)
    (out / 'search' / 'result.json').unlink()                   # force the search stage to reload its checkpoint
    ck = out / 'search' / 'checkpoint.pt'
    ck.write_bytes(ck.read_bytes()[:1000])
    r = eb_study(*QUICK, '--epochs', 2, '--retrain_epochs', 1, '--no_dense', '--full_search', '--out', out, check=False)
    assert r.returncode == 2
    assert 'checkpoint.pt is corrupt or truncated' in r.stderr and 'Traceback' not in r.stderr


@pytest.mark.parametrize('args, message', [
    (['--arch', 'vgg7'], "unknown model 'vgg7'"),
    (['--dataset', 'imagenet'], "unknown dataset 'imagenet'"),
    (['--dataset', '/no/such/file.npz'], '/no/such/file.npz'),
    (['--ratio', '1.5'], 'ratio must be in [0, 1)'),
    (['--ratios', '0.3;0.5'], 'comma-separated'),
    (['--init', 'lottery'], 'init must be one of'),
    (['--lr', '1e12', '--epochs', '2'], 'training loss is'),
    (['--search-bits', '8', '--lr', '1e12', '--epochs', '2'], 'training loss is'),   # NaN in 8 bits is caught too
    (['--search-bits', '1'], 'search_bits must be an integer word length'),
    (['--retrain-bits', '8', '--precision', 'bf16'], "use precision='fp32'"),
])
def test_bad_input_stops_with_a_clear_message(tmp_path, args, message):
    r = eb_study(*QUICK, *args, '--out', tmp_path / 'run', check=False)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert message in r.stderr, r.stderr
    assert 'Traceback' not in r.stderr


@pytest.mark.skipif(not SUBSET.exists(), reason='shared CIFAR-10 subset not present')
def test_npz_dataset(tmp_path):
    out = tmp_path / 'run'
    eb_study('--dataset', SUBSET, '--arch', 'vgg11', '--width', '0.125', '--epochs', 1, '--retrain_epochs', 1,
             '--no_dense', '--quiet', '--out', out)
    res = json.loads((out / 'results.json').read_text())
    assert res['search_epochs'] == 1 and 0 <= res['ticket_acc'] <= 1


def test_cifar_without_data_asks_for_download(tmp_path):
    r = eb_study(*QUICK, '--dataset', 'cifar10', '--out', tmp_path / 'run', check=False,
                 env={**os.environ, 'EB_STUDY_DATA': str(tmp_path / 'empty')})
    assert r.returncode == 2, r.stderr
    assert 'download' in r.stderr and str(tmp_path / 'empty') in r.stderr, r.stderr
    assert not (tmp_path / 'empty').exists() or not any((tmp_path / 'empty').iterdir())  # nothing fetched
