"""Shared helpers for the end-to-end tests."""
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
