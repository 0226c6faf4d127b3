"""The Table 2 grid on Ray and on SLURM (submitit's local executor) from the command line: the same results.csv as the
sequential run; a Ray worker SIGKILLed mid-cell and a SLURM job pre-empted mid-cell do not lose the grid (the faults
injected at a chosen point by `tests/faults`, so that nothing depends on timing); without
ray and submitit the local executor still runs and the others say what to install."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import clean_error, fault_env, fired, resumed, run_script, training_folders
from eb_study.compare import CompareGrid, compare
from eb_study.ebtrain import EBConfig
from eb_study.train import check_run_folder

# Four cells (EB Train and network slimming at two ratios, one seed); full digits and 8 retraining epochs, so that a
# cell trains for a few seconds: long enough to be interrupted in the middle.
RECIPE = dict(arch='vgg11', width=0.125, epochs=4, retrain_epochs=8, threshold=0.3, length=2)
GRID = dict(methods=('eb', 'ns'), ratios=(0.3, 0.5), seeds=(0,), protocol='recipe')  # the recipe's 8 retraining epochs
TIMINGS = ['wall_s', 'energy_j', 'epoch_s', 'epoch_s_dense']  # measured, so they differ from run to run


def cli_args(out):
    opt = lambda k: '--' + k.replace('_', '-')
    args = [a for k, v in {**RECIPE, **GRID}.items()
            for a in (opt(k), ','.join(map(str, v)) if isinstance(v, tuple) else str(v))]
    return ['compare', *args, '--device', 'cpu', '--quiet', '--out', str(out)]


@pytest.fixture(scope='module')
def sequential(tmp_path_factory):
    """The grid run by `compare`, one job after another in this process: the reference `results.csv`."""
    root, threads = tmp_path_factory.mktemp('seq'), torch.get_num_threads()
    torch.set_num_threads(1)   # as the workers (OMP_NUM_THREADS=1): CPU results depend on the thread count
    try: compare(EBConfig(**RECIPE), CompareGrid(**GRID), root, device='cpu')
    finally: torch.set_num_threads(threads)
    return pd.read_csv(root / 'results.csv')


def same_results(out: Path, reference: pd.DataFrame):
    got = pd.read_csv(out / 'results.csv')
    assert len(got) == 4 and got.acc.notna().all()
    pd.testing.assert_frame_equal(got.drop(columns=TIMINGS), reference.drop(columns=TIMINGS))


# Ray starts its workers at niceness 15, so any CPU-bound process beside them (the other process of `pytest -n 2`, or
# anything else on the machine) takes nearly all their CPU: under load a grid of seconds took over 600 s. At niceness 0
# they get their fair share, and how long the grid takes no longer depends on what else runs.
FAIR = {'OMP_NUM_THREADS': '1', 'RAY_worker_niceness': '0'}


def started(out: Path, *args, env=None):
    """The grid's command line, started in the background; its output goes to a file beside `out` (no pipe to fill)."""
    exe = str(Path(sys.executable).with_name('eb-study'))
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f'{out.name}.out', 'w') as log:
        return subprocess.Popen([exe, *cli_args(out), *args], stdout=log, stderr=subprocess.STDOUT, text=True,
                                env={**(env or os.environ), **FAIR})


def finish(proc, out: Path, timeout=600) -> str:
    """Wait for the grid to end, reading every training folder it writes as it goes: each keeps the run-folder invariant
    at every instant (`check_run_folder`, safe beside a writer); the grid's output, once it succeeded."""
    deadline, seen = time.monotonic() + timeout, {}
    while proc.poll() is None:
        if time.monotonic() > deadline: proc.kill(); pytest.fail(f'the grid did not end within {timeout} s')
        for d in training_folders(out):
            changed = tuple(f.stat().st_mtime_ns if f.exists() else None for f in (d / 'log.csv', d / 'checkpoint.pt'))
            if seen.get(d) != changed: check_run_folder(d); seen[d] = changed   # each new state, once
        time.sleep(0.05)   # how often to look; nothing waits on this
    text = (out.parent / f'{out.name}.out').read_text()
    assert proc.returncode == 0, text
    assert seen, 'no training folder was read while the grid ran'
    for d in training_folders(out): assert check_run_folder(d) > 0 and (d / 'result.json').exists(), d   # finished, full logs
    return text


def test_ray_grid_equals_the_sequential_run(tmp_path, sequential):
    pytest.importorskip('ray')
    out = tmp_path / 'ray'
    text = finish(started(out, '--executor', 'ray', '--workers', '2'), out)
    same_results(out, sequential)
    assert text.count(': done') == 2 and text.count(': acc ') == 4, text   # 2 shared jobs, then the 4 cells
    assert len(list(out.glob('search-*'))) == 1 and len(list(out.glob('dense-*'))) == 1  # shared stages ran once


def test_ray_worker_killed_between_checkpoint_and_log_does_not_lose_the_grid(tmp_path, sequential):
    """A Ray worker SIGKILLed in the window that once failed this test: an EB retraining's third epoch checkpointed, its
    log not yet written. Ray reruns the task; the stage resumes from the checkpoint with its full log."""
    pytest.importorskip('ray')
    out = tmp_path / 'ray-kill'
    env, once = fault_env(tmp_path, 'retrain-', 3, 'between-writes', 'SIGKILL')
    finish(started(out, '--executor', 'ray', '--workers', '2', '--retries', '2', env=env), out)
    record, before = fired(once)
    assert 'default_worker.py' in ' '.join(record['argv']) and len(before) == 3   # a Ray worker died, three epochs in
    same_results(out, sequential)                                       # Ray reran the task; it resumed
    resumed(once, RECIPE['retrain_epochs'])


def test_slurm_path_with_submitits_local_executor_survives_a_preemption(tmp_path, sequential):
    pytest.importorskip('submitit')
    out = tmp_path / 'slurm'
    # SIGUSR2 is what SLURM sends before it pre-empts a job; submitit checkpoints the job and requeues it. Here the first
    # job to reach the middle of a fine-tuning's third epoch sends it to itself.
    env, once = fault_env(tmp_path, 'ns-finetune-', 3, 'mid-epoch', 'SIGUSR2')
    finish(started(out, '--executor', 'slurm', '--slurm-cluster', 'local', '--time-min', '10', env=env), out)
    record, before = fired(once)
    assert record['argv'][0].endswith('submitit/core/_submit.py') and len(before) == 2   # a SLURM job, two epochs in
    same_results(out, sequential)
    resumed(once, RECIPE['retrain_epochs'])
    logs = [p.read_text() for p in (out / 'submitit').glob('*_log.out')]
    hit = [t for t in logs if 'Caught signal SIGUSR2' in t]
    assert len(logs) == 6 and len(hit) == 1, logs                       # 2 shared jobs and 4 cells; one was signalled
    assert 'Calling checkpoint method' in hit[0] and 'Requeued job' in hit[0] and hit[0].count('Starting with') == 2, hit[0]
    # fault injection: the EB cells' rows lost and one retraining's checkpoint corrupt -> that job fails, named; the rest is kept
    for d in out.glob('cell-*'):
        if json.loads((d / 'spec.json').read_text())['method'] == 'eb': shutil.rmtree(d)
    retrain = next(out.glob('retrain-*'))
    (retrain / 'result.json').unlink(); (retrain / 'checkpoint.pt').write_bytes(b'not a checkpoint')
    r = run_script('eb-study', *cli_args(out), '--executor', 'slurm', '--slurm-cluster', 'local', check=False)
    clean_error(r, '1 of 6 jobs failed', 'is corrupt or truncated', 'eb p=0.')   # the 2 shared jobs and 4 cells ran again
    assert len(list(out.glob('cell-*/row.json'))) == 3                  # the other cells are kept
    (retrain / 'checkpoint.pt').unlink()                                # as the message says: delete it, run again
    r = run_script('eb-study', *cli_args(out), '--executor', 'slurm', '--slurm-cluster', 'local')
    same_results(out, sequential)


BLOCK = "import sys; sys.modules['ray'] = sys.modules['submitit'] = None; from eb_study.cli import main; main()"


def test_without_ray_and_submitit_the_local_executor_runs_and_the_others_say_what_to_install(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, '-c', BLOCK, *a], capture_output=True, text=True, timeout=600,
                                    env={**os.environ, 'OMP_NUM_THREADS': '1'})
    quick = ['compare', '--arch', 'vgg11', '--width', '0.125', '--epochs', '4', '--threshold', '0.9', '--length', '2',
             '--methods', 'eb', '--ratios', '0.5', '--seeds', '0', '--device', 'cpu', '--quiet']
    r = run(*quick, '--out', tmp_path / 'local')
    assert r.returncode == 0 and len(pd.read_csv(tmp_path / 'local' / 'results.csv')) == 1, r.stderr
    for executor, extra in (('ray', 'ray'), ('slurm', 'slurm')):
        r = run(*quick, '--executor', executor, '--out', tmp_path / executor)
        clean_error(r, f"pip install 'eb_study[{extra}]'")
        assert not (tmp_path / executor / 'results.csv').exists()


@pytest.mark.parametrize('args, message', [
    (['--executor', 'dask'], "unknown executor 'dask'"),
    (['--executor', 'ray', '--workers', '0'], 'workers must be >= 1'),
    (['--executor', 'slurm', '--slurm-cluster', 'pbs'], 'slurm_cluster must be'),
    (['--executor', 'ray', '--workers', '2', '--ray-address', 'auto'], 'a running cluster at ray_address has its own size'),
])
def test_bad_executor_options_stop_with_a_clear_message(tmp_path, args, message):
    clean_error(run_script('eb-study', *cli_args(tmp_path / 'runs'), *args, check=False), message)
