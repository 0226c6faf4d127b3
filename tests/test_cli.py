"""End-to-end runs of the `eb-study` console script in fresh processes: results, stage reuse, resume after SIGKILL in
every training stage, bad input."""
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from eb_study.cost import energy_counter

from conftest import clean_error, fault_env, fired, run_script, run_folder, results, read_log, resumed
from eb_study.data import cifar10_subset
from eb_study.train import check_run_folder

# A small, quick configuration: eighth-width VGG-11 on the offline digits data, without network slimming beside it
# (one test runs the default, with it).
QUICK = ['--arch', 'vgg11', '--width', '0.125', '--quiet', '--no-ns']
SUBSET = cifar10_subset(Path(__file__).parent)


def eb_study(*args, check=True, **kw): return run_script('eb-study', *args, check=check, **kw)


def stage(out: Path, name: str) -> Path:
    """The one stage folder `name-*` under `out`."""
    found = sorted(out.glob(f'{name}-*'))
    assert len(found) == 1, found
    return found[0]


def test_run_writes_results_and_summary(tmp_path):
    out = tmp_path / 'runs'
    r = eb_study(*QUICK[:-1], '--epochs', 8, '--retrain_epochs', 3, '--threshold', 0.2, '--out', out)
    res = results(r.stdout)
    for k in ('eb_epoch epochs dense_acc ticket_acc params_before params_after flops_before flops_after '
              'train_flops_eb train_flops_dense train_bitops_eb train_bitops_dense wall_s_eb wall_s_dense '
              'energy_j_eb energy_j_dense search_bits retrain_bits stages stage_dirs').split():
        assert k in res, k
    assert res['epochs'] == 8 and 0 <= res['ticket_acc'] <= 1 and 0 <= res['dense_acc'] <= 1
    assert res['params_after'] < res['params_before']
    run = run_folder(r.stdout)
    assert run.parent == out and run.name.startswith('eb-')
    assert json.loads((run / 'config.json').read_text())['arch'] == 'vgg11'
    for f in ('distance_matrix.png', 'curves.png'): assert (run / f).stat().st_size > 0, f
    for s in ('search', 'retrain', 'dense'): assert len(read_log(stage(out, s) / 'log.csv')) > 0, s
    assert 'EB epoch' in r.stdout and 'training FLOPs' in r.stdout
    assert res['ns_acc'] is not None and res['train_flops_ns'] > res['train_flops_eb'] > 0   # NS on the same schedule
    assert ' NS ' in r.stdout.split('training FLOPs')[1].splitlines()[0] and 'dense' in r.stdout
    assert len(read_log(stage(out, 'ns-finetune') / 'log.csv')) == 3
    # a second run of a finished configuration trains nothing and reports the same numbers
    again = eb_study(*QUICK[:-1], '--epochs', 8, '--retrain_epochs', 3, '--threshold', 0.2, '--out', out)
    assert results(again.stdout) == res and again.stdout == r.stdout


def test_changing_the_ticket_reuses_search_and_dense(tmp_path):
    """`--init`, `--retrain-epochs` and `--retrain-bits` change only the retraining: no search or dense epoch again."""
    out, args = tmp_path / 'runs', [*QUICK, '--epochs', 6, '--retrain-epochs', 2, '--threshold', 0.3, '--length', 3]
    first = results(eb_study(*args, '--out', out).stdout)
    search, dense = stage(out, 'search'), stage(out, 'dense')
    before = {d: ((d / 'checkpoint.pt').stat().st_mtime_ns, (d / 'log.csv').read_text()) for d in (search, dense)}
    for change in (['--init', 'random'], ['--retrain-epochs', 3], ['--retrain-bits', 8]):
        res = results(eb_study(*args, *change, '--out', out).stdout)
        assert res['stage_dirs']['search'] == str(search) and res['stage_dirs']['dense'] == str(dense)
        assert res['dense_acc'] == first['dense_acc'] and res['eb_epochs'] == first['eb_epochs']
        assert len(read_log(Path(res['stage_dirs']['retrain']) / 'log.csv')) == res['retrain_epochs']
    after = {d: ((d / 'checkpoint.pt').stat().st_mtime_ns, (d / 'log.csv').read_text()) for d in (search, dense)}
    assert after == before                                         # not one epoch of search or dense trained again
    assert len(list(out.glob('retrain-*'))) == 4 and len(list(out.glob('search-*'))) == 1


def test_low_precision_search_lf_and_ll(tmp_path):
    """LF (8-bit search, 32-bit retraining) and LL (both 8-bit): the stages ran in 8 bits and are costed as such."""
    from eb_study.lowprec import LPConfig
    q8 = LPConfig.bits(8, rounding='nearest').quantizer('weight')
    args = [*QUICK, '--epochs', 4, '--retrain-epochs', 2, '--threshold', 0.3, '--length', 2, '--no-dense']
    out = tmp_path / 'runs'
    for name, extra in (('lf', ['--search-bits', 8]), ('ll', ['--search-bits', 8, '--retrain-bits', 8])):
        r = eb_study(*args, *extra, '--out', out)
        res = results(r.stdout)
        st = res['stages']
        assert (res['search_bits'], res['retrain_bits']) == (8, 8 if name == 'll' else 32)
        assert res['train_bitops_eb'] == st['search']['train_flops'] * 8 + st['retrain']['train_flops'] * res['retrain_bits']
        assert res['train_bitops_dense'] == 32 * res['train_flops_dense']
        gpu = energy_counter(res['device']) is not None                         # measured where the GPU has a counter
        assert (res['energy_j_eb'] is None and res['energy_j_dense'] is None) != gpu  # CPU: not measured, not invented
        assert '8-bit' in r.stdout and ('energy: not measured' in r.stdout) != gpu and 'simulated' in r.stdout
        # the EB weights come from the 8-bit search: every tensor is on its 8-bit grid
        ticket = torch.load(Path(res['stage_dirs']['search']) / 'eb_ticket_p0.5.pt', weights_only=True)['model']
        weights = [v for k, v in ticket.items() if v.is_floating_point() and 'running' not in k]
        assert weights and all(torch.equal(q8(w), w) for w in weights)
        retrained = torch.load(Path(res['stage_dirs']['retrain']) / 'model.pt', weights_only=True)['state_dict']
        on_grid = [torch.equal(q8(w), w) for k, w in retrained.items() if w.is_floating_point() and 'running' not in k]
        assert all(on_grid) if name == 'll' else not all(on_grid)
    assert len(list(out.glob('search-*'))) == 1                    # LL retrains LF's ticket: one 8-bit search


def test_same_seed_same_masks_other_seed_differs(tmp_path):
    args = [*QUICK, '--epochs', 4, '--retrain_epochs', 1, '--no_dense', '--full_search']
    for name, seed in (('a', 0), ('b', 0), ('c', 1)): eb_study(*args, '--seed', seed, '--out', tmp_path / name)
    masks = {n: torch.load(stage(tmp_path / n, 'search') / 'masks.pt', weights_only=True)[0.5] for n in 'abc'}
    assert torch.equal(masks['a'], masks['b'])
    assert not torch.equal(masks['a'], masks['c'])


# Where each stage is killed (tests/faults): mid-epoch, as an outside kill mostly lands; after an epoch's checkpoint and
# before its log, the window where the two records disagree; after the retraining's last epoch, nothing left to train.
KILLS = (('search', 3, 'mid-epoch'), ('retrain', 6, 'between-writes'), ('dense', 3, 'between-writes'))


def test_resume_after_kill_in_every_stage_gives_the_same_run(tmp_path):
    """SIGKILL during the search, then during retraining, then during the dense baseline; the resumed run equals a
    straight one: the same masks, logs and accuracies, each killed stage keeping what it had checkpointed."""
    args = [*QUICK, '--epochs', 6, '--retrain_epochs', 6, '--full_search']
    straight = results(eb_study(*args, '--out', tmp_path / 'straight').stdout)
    killed = tmp_path / 'killed'
    exe = shutil.which('eb-study') or str(Path(sys.executable).with_name('eb-study'))
    faults = []
    for name, epoch, where in KILLS:
        env, once = fault_env(tmp_path, f'{name}-', epoch, where, 'SIGKILL')
        r = subprocess.run([exe, *map(str, args), '--out', str(killed)], env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == -signal.SIGKILL, (name, r.returncode, r.stderr)
        record, before = fired(once)
        d = Path(record['stage'])
        assert d.parent == killed and d.name.startswith(f'{name}-') and not (d / 'result.json').exists()
        assert len(before) == (epoch if where == 'between-writes' else epoch - 1)
        assert check_run_folder(d) == epoch - 1                   # the log lags the checkpoint by the epoch being written
        faults.append(once)
    resumed_run = results(eb_study(*args, '--out', killed).stdout)
    for k in ('eb_epochs', 'ticket_acc', 'dense_acc', 'search_acc', 'train_flops_eb'): assert resumed_run[k] == straight[k], k
    a = torch.load(stage(tmp_path / 'straight', 'search') / 'masks.pt', weights_only=True)
    b = torch.load(stage(killed, 'search') / 'masks.pt', weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[r], b[r]) for r in a)
    for (name, *_), once in zip(KILLS, faults):
        la, lb = (read_log(stage(d, name) / 'log.csv') for d in (tmp_path / 'straight', killed))
        assert [(r['epoch'], r['train_loss'], r['test_acc']) for r in la] == [(r['epoch'], r['train_loss'], r['test_acc']) for r in lb]
        resumed(once, len(la))                                    # what it had checkpointed kept, timings and all


def test_corrupt_checkpoint_is_named(tmp_path):
    out = tmp_path / 'runs'
    args = [*QUICK, '--epochs', 2, '--retrain_epochs', 1, '--no_dense', '--full_search', '--out', out]
    eb_study(*args)
    search = stage(out, 'search')
    (search / 'result.json').unlink()                             # force the search stage to reload its checkpoint
    ck = search / 'checkpoint.pt'
    ck.write_bytes(ck.read_bytes()[:1000])
    clean_error(eb_study(*args, check=False), 'checkpoint.pt is corrupt or truncated')


@pytest.mark.parametrize('args, message', [
    (['--arch', 'vgg7'], "unknown model 'vgg7'"),
    (['--dataset', 'imagenet'], "unknown dataset 'imagenet'"),
    (['--dataset', '/no/such/file.npz'], '/no/such/file.npz'),
    (['--ratio', '1.5'], 'ratio must be in [0, 1)'),
    (['--ratios', '0.3;0.5'], 'comma-separated'),
    (['--init', 'lottery'], 'init must be one of'),
    (['--mode', 'oldest'], "mode must be 'newest' or 'consecutive'"),
    (['--lr', '1e12', '--epochs', '2'], 'training loss is'),
    (['--search-bits', '8', '--lr', '1e12', '--epochs', '2'], 'training loss is'),   # NaN in 8 bits is caught too
    (['--search-bits', '1'], 'search_bits must be an integer word length'),
    (['--retrain-bits', '8', '--precision', 'bf16'], "use precision='fp32'"),
])
def test_bad_input_stops_with_a_clear_message(tmp_path, args, message):
    clean_error(eb_study(*QUICK, *args, '--out', tmp_path / 'runs', check=False), message)


@pytest.mark.parametrize('args', [['--arch', 'vgg7'], ['--dataset', 'imagenet'], ['--dataset', '/no/such/file.npz']])
def test_bad_input_leaves_no_folder_behind(tmp_path, args):
    r = eb_study(*QUICK, *args, '--out', tmp_path / 'runs', check=False)
    assert r.returncode == 2 and not (tmp_path / 'runs').exists(), list((tmp_path / 'runs').rglob('*'))


def test_help_lists_every_configuration_field():
    from dataclasses import fields
    from eb_study.ebtrain import EBConfig
    text = eb_study('--help').stdout
    for f in fields(EBConfig): assert '--' + f.name.replace('_', '-') in text, f.name
    assert 'rethink' in text and '--download' in text


@pytest.mark.skipif(SUBSET is None, reason='shared CIFAR-10 subset not present')
def test_npz_dataset(tmp_path):
    r = eb_study('--dataset', SUBSET, '--arch', 'vgg11', '--width', '0.125', '--epochs', 1, '--retrain_epochs', 1,
                 '--no_dense', '--quiet', '--out', tmp_path / 'runs')
    res = results(r.stdout)
    assert res['search_epochs'] == 1 and 0 <= res['ticket_acc'] <= 1


def test_cifar_without_data_asks_for_download(tmp_path):
    r = eb_study(*QUICK, '--dataset', 'cifar10', '--out', tmp_path / 'runs', check=False,
                 env={**os.environ, 'EB_STUDY_DATA': str(tmp_path / 'empty')})
    clean_error(r, 'download', str(tmp_path / 'empty'))
    assert not (tmp_path / 'empty').exists() or not any((tmp_path / 'empty').iterdir())  # nothing fetched


def test_log_tensorboard_writes_every_stage_as_event_files_equal_to_its_log(tmp_path):
    """`eb-study --log tensorboard`: each training stage's events, read back with TensorBoard's own reader, hold the
    scalars of its log.csv, under a run named by what the stage is."""
    pytest.importorskip('tensorboard')
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    out = tmp_path / 'runs'
    eb_study(*QUICK, '--epochs', 3, '--retrain_epochs', 2, '--length', 2, '--log', 'tensorboard', '--out', out)
    stages = sorted(p.parent for p in out.glob('*/log.csv'))
    assert {p.name.split('-')[0] for p in stages} == {'search', 'retrain', 'dense'}
    for d in stages:
        runs = list((d / 'tb').iterdir())
        assert len(runs) == 1 and runs[0].name.startswith(d.name.rsplit('-', 1)[0]), runs   # named by its kind first
        assert not set(runs[0].name) & set(' ()[]'), runs                                    # and typable in a shell
        ea = EventAccumulator(str(runs[0]), size_guidance={'scalars': 0}).Reload()
        log = read_log(d / 'log.csv')
        for k in ('train_loss', 'test_acc', 'lr'):
            assert [e.step for e in ea.Scalars(k)] == [int(r['epoch']) for r in log]
            assert all(abs(e.value - float(r[k])) <= 1e-5 * max(1, abs(float(r[k]))) for e, r in zip(ea.Scalars(k), log)), (d, k)
    assert any('eb/max_distance_p0.5' in EventAccumulator(str(next((d / 'tb').iterdir()))).Reload().Tags()['scalars']
               for d in stages if d.name.startswith('search'))
