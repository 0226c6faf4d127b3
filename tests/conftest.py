"""Shared helpers for the end-to-end tests."""
import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path


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
