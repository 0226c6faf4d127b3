"""The Table 2 grid on Ray and on SLURM (submitit's local executor) from the command line: the same results.csv as the
sequential run; a Ray worker SIGKILLed mid-cell and a SLURM job pre-empted mid-cell do not lose the grid; without
ray and submitit the local executor still runs and the others say what to install."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import clean_error, run_script, read_log
from eb_study.compare import CompareGrid, compare
from eb_study.ebtrain import EBConfig

# Four cells (EB Train and network slimming at two ratios, one seed); full digits and 8 retraining epochs, so that a
# cell trains for a few seconds: long enough to be interrupted in the middle.
RECIPE = dict(arch='vgg11', width=0.125, epochs=4, retrain_epochs=8, threshold=0.3, length=2)
GRID = dict(methods=('eb', 'ns'), ratios=(0.3, 0.5), seeds=(0,), protocol='recipe')  # the recipe's 8 retraining epochs
TIMINGS = ['wall_s', 'energy_j', 'epoch_s', 'epoch_s_dense']  # measured, so they differ from run to run
CELL_STAGES = ('retrain', 'ns-finetune')  # the stages only a cell job trains


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


def started(out: Path, *args, env=None):
    exe = str(Path(sys.executable).with_name('eb-study'))
    return subprocess.Popen([exe, *cli_args(out), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, 'OMP_NUM_THREADS': '1', **(env or {})})


def mid_cell(out: Path) -> list[Path]:
    """The cell stages in the middle of their training: a checkpoint written, no result yet."""
    return [d for s in CELL_STAGES for d in out.glob(f'{s}-*')
            if (d / 'checkpoint.pt').exists() and not (d / 'result.json').exists()]


def processes(*markers: str) -> list[int]:
    """The pids of this user's processes whose command line contains every one of `markers`."""
    ps = subprocess.run(['ps', '-ww', '-eo', 'pid=,args='], capture_output=True, text=True).stdout
    return [int(l.split(None, 1)[0]) for l in ps.splitlines() if all(m in l for m in markers) and 'ps -eo' not in l]


def interrupt_mid_cell(proc, out: Path, marker: str | tuple[str, ...], sig, timeout=300) -> dict[Path, list[dict]]:
    """Wait until a cell job is mid-training, then send `sig` to one worker process running a job; return, for every
    stage then mid-training, the log rows its checkpoint holds (what a resumed stage keeps, timings included)."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None: pytest.fail(f"the grid ended before a cell could be interrupted:\n{proc.stdout.read()}")
        pids, stages = processes(*((marker,) if isinstance(marker, str) else marker)), mid_cell(out)
        if pids and stages:
            os.kill(pids[0], sig)
            time.sleep(1)   # the signalled job stops (SIGKILL) or checkpoints and exits (SIGUSR2)
            done = {d: torch.load(d / 'checkpoint.pt', weights_only=True)['epoch'] for d in stages}
            return {d: read_log(d / 'log.csv')[:e] for d, e in done.items()}
        time.sleep(0.02)
    pytest.fail('no cell job was seen mid-training')


def finish(proc, timeout=600) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    return out


def resumed(before: dict[Path, list[dict]]):
    """Each stage interrupted mid-training kept the epochs its checkpoint held, to the timing: it resumed there (a
    stage trained again from scratch would have logged new times), and it went on to the end."""
    assert any(before.values()), 'no stage had a finished epoch when the job was interrupted'
    for d, rows in before.items():
        final = read_log(d / 'log.csv')
        assert (d / 'result.json').exists() and len(final) > len(rows) and final[:len(rows)] == rows, (d, rows, final)


def test_ray_grid_equals_the_sequential_run(tmp_path, sequential):
    pytest.importorskip('ray')
    out = tmp_path / 'ray'
    text = finish(started(out, '--executor', 'ray', '--workers', '2'))
    same_results(out, sequential)
    assert text.count(': done') == 2 and text.count(': acc ') == 4, text   # 2 shared jobs, then the 4 cells
    assert len(list(out.glob('search-*'))) == 1 and len(list(out.glob('dense-*'))) == 1  # shared stages ran once


def test_ray_worker_killed_mid_cell_does_not_lose_the_grid(tmp_path, sequential):
    pytest.importorskip('ray')
    out = tmp_path / 'ray-kill'
    proc = started(out, '--executor', 'ray', '--workers', '2', '--retries', '2')
    before = interrupt_mid_cell(proc, out, 'ray::grid_job', signal.SIGKILL)
    assert not (out / 'results.csv').exists()                           # the kill hit an unfinished grid
    finish(proc)
    same_results(out, sequential)                                       # Ray reran the task; it resumed
    resumed(before)


def test_slurm_path_with_submitits_local_executor_survives_a_preemption(tmp_path, sequential):
    pytest.importorskip('submitit')
    out = tmp_path / 'slurm'
    proc = started(out, '--executor', 'slurm', '--slurm-cluster', 'local', '--time-min', '10')
    # SIGUSR2 is what SLURM sends before it pre-empts a job; submitit checkpoints the job and requeues it
    # this test's own jobs only (their command line names its submitit folder): another run's may be on the machine
    before = interrupt_mid_cell(proc, out, ('submitit.core._submit', str(out / 'submitit')), signal.SIGUSR2)
    finish(proc)
    same_results(out, sequential)
    resumed(before)
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
    clean_error(r, '1 of 4 jobs failed', 'is corrupt or truncated', 'eb p=0.')
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
