"""Shared helpers for the end-to-end tests."""
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from eb_study.train import check_run_folder


def run_script(name, *args, check=True, **kw):
    """Run the console script `name` with `args` in a fresh process; raise with its output if it fails and `check`."""
    exe = shutil.which(name) or str(Path(sys.executable).with_name(name))
    r = subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=600, **kw)
    if check and r.returncode != 0: raise AssertionError(f"{name} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def clean_error(r, *messages: str) -> None:
    """`r`, a finished command, stopped with exit code 2 and a message holding each of `messages`, with no traceback."""
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    for m in messages: assert m in r.stderr, r.stderr
    assert 'Traceback' not in r.stderr, r.stderr


def run_folder(stdout: str) -> Path:
    """The run folder an `eb-study` summary names on its 'run folder' line."""
    return Path(next(l for l in stdout.splitlines() if l.strip().startswith('run folder')).split()[-1])


def results(stdout: str) -> dict:
    """The `results.json` of the run whose summary is `stdout`."""
    return json.loads((run_folder(stdout) / 'results.json').read_text())


def read_log(path) -> list[dict]:
    """The rows of an engine's `log.csv`, columns by name."""
    with open(path, newline='') as f: return list(csv.DictReader(f))


FAULTS = Path(__file__).with_name('faults')   # its sitecustomize.py injects the fault EB_STUDY_FAULT names


def fault_env(tmp_path: Path, stage: str, epoch: int, where: str, signal: str, env: dict | None = None) -> tuple[dict, Path]:
    """An environment in which the first process to reach `where` ('mid-epoch' or 'between-writes': after the epoch's
    checkpoint, before its log) in epoch `epoch` of a stage folder named `stage`* sends itself `signal`, once in the
    whole run; and the file that records it (`tests/faults/sitecustomize.py`)."""
    once = tmp_path / f'fault-{stage.strip("-")}-{epoch}-{where}-{signal}'
    paths = [str(FAULTS), *filter(None, [os.environ.get('PYTHONPATH')])]
    return {**os.environ, **(env or {}), 'PYTHONPATH': os.pathsep.join(paths),
            'EB_STUDY_FAULT': f'{stage}:{epoch}:{where}:{signal}', 'EB_STUDY_FAULT_ONCE': str(once)}, once


def fired(once: Path) -> tuple[dict, list[dict]]:
    """The injected fault's record (pid, stage folder, the process's argv) and the history the stage had checkpointed."""
    assert once.exists(), f"the fault {once.name} never fired"
    return json.loads(once.read_text()), torch.load(f'{once}.checkpoint.pt', weights_only=True)['history']


def resumed(once: Path, epochs: int) -> Path:
    """The stage the fault hit finished all `epochs` and kept, timings included, every epoch checkpointed before the
    fault (a stage trained again from scratch would have logged new times); its folder keeps the run-folder invariant."""
    rec, before = fired(once)
    d = Path(rec['stage'])
    final = torch.load(d / 'checkpoint.pt', weights_only=True)['history']
    assert before and final[:len(before)] == before and len(final) == epochs, (d, before, final)
    assert (d / 'result.json').exists() and check_run_folder(d) == epochs
    return d


def training_folders(out: Path) -> list[Path]:
    """The stage folders under `out` that hold a checkpoint (training stages)."""
    return [c.parent for c in Path(out).glob('*/checkpoint.pt')]
