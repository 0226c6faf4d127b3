"""Committed results cannot drift silently from the code: the first two epochs of one committed run of each kind — a
search, a dense training, a retraining — re-run from the configuration recorded with them, and compared with the
committed logs.

On the machine that made a run (its summary's `environment.json`: torch build, CPU, threads) the rerun is bit for bit
the committed log (measured: every difference 0.0). The tolerance is the log's own rounding (6 significant digits),
not more: early training is chaotic, so a rounding difference — two threads instead of one — already moves the second
epoch's training loss by 0.012 and its test loss by 0.58, as much as a changed weight decay (2e-4 for 1e-4: 0.011 and
0.52), and another CPU with the same torch build (an AMD EPYC against the Intel Xeon of seed 0) moves the first
epoch's already. No tolerance could tell those apart; so each check takes the first seed whose committed run was made
on a machine like this one, and skips, naming the machines, where none was."""
import json
from pathlib import Path

import pytest
import torch

from eb_study.data import cifar10_subset
from eb_study.ebtrain import Recipe, dense_stage, search_stage
from eb_study.models import build_model
from eb_study.report import read_log
from eb_study.settings import Retraining, Search
from eb_study.store import environment, load_json, stage_spec
from eb_study.studies import STUDIES, TABLE2_STANDARD, search_summary, table2_cells
from eb_study.train import Hook, fit_stage

R = Path(__file__).resolve().parents[1] / 'nbs' / 'results' / 'table2'
EPOCHS = 2
TOLERANCE = dict(train_loss=1e-4, test_loss=1e-4, train_acc=1e-5, test_acc=1e-5)  # the log's rounding (%g, 6 digits)

pytestmark = pytest.mark.skipif(not cifar10_subset(), reason='needs ../shared/data/cifar10_subset.npz')


class StopAfter(Hook):
    def __init__(self, n): self.n = n
    def after_epoch(self, t): return t.epoch >= self.n


@pytest.fixture(scope='module')
def study(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # as the study's workers: CPU rounding depends on the thread count
    c = STUDIES['table2'].full()
    cells = table2_cells(c, TABLE2_STANDARD, tmp_path_factory.mktemp('drift'), 'cpu')
    yield c, cells, tmp_path_factory.mktemp('rerun')
    torch.set_num_threads(threads)


def machines(summary: Path) -> list[dict]:
    "The machines that trained a committed run, in order (a single record, as older studies wrote it, is one)."
    envs = load_json(summary / 'environment.json') if (summary / 'environment.json').exists() else []
    return [envs] if isinstance(envs, dict) else envs


def made_here(summary: Path) -> bool:
    """Whether the first epochs of a committed run were trained on a machine like this one: the first machine it lists
    has this torch build, CPU and thread count (and this kernel level, where it was recorded)."""
    here, envs = environment(threads=1), machines(summary)
    return bool(envs) and all(envs[0].get(k, here[k]) == here[k] for k in ('torch', 'machine', 'cpu', 'cpu_capability', 'threads_per_process'))


def committed_run(c: dict, name) -> tuple[Path, int]:
    "The first seed's committed run `name(seed)` made on a machine like this one, and its seed (skip if none is)."
    runs = [(R / name(s), s) for s in c['seeds'] if (R / name(s) / 'log.csv').exists()]
    if not runs: pytest.skip(f"{R / name(c['seeds'][0])} is not committed yet (the study has not finished that stage)")
    for path, s in runs:
        if made_here(path): return path, s
    made = sorted({e['cpu'] for p, _ in runs for e in machines(p)})
    pytest.skip(f"no committed {name('N')} was made on this machine ({environment(threads=1)['cpu']}, torch {torch.__version__}); "
                f"they were made on {made or 'unrecorded machines'}: early training is chaotic, so a 2-epoch rerun reproduces "
                "a run only on the machine that made it")


def same_spec(committed: Path, spec: dict):
    assert load_json(committed / 'spec.json') == json.loads(json.dumps(spec)), f"{committed}: recorded configuration differs"


def close_to(committed: Path, rerun: Path):
    old, new = read_log(committed / 'log.csv')[:EPOCHS], read_log(rerun / 'log.csv')
    assert len(new) == EPOCHS and len(old) == EPOCHS
    for o, n in zip(old, new):
        assert o['lr'] == n['lr'], (o, n)
        for k, tol in TOLERANCE.items():
            assert abs(o[k] - n[k]) <= tol, f"{committed.name} epoch {o['epoch']}: {k} {n[k]:.5f}, committed {o[k]:.5f}"


def test_search(study):
    c, cells, tmp = study
    committed, s = committed_run(c, lambda s: search_summary(TABLE2_STANDARD, s))
    cfg = cells.config(s, c['main'])
    same_spec(committed, stage_spec('search', Recipe.of(cfg), Search.of(cfg, full_search=cfg.search_to_end)))
    search_stage(cfg, cells.data, cells.loaders(s), tmp / 'search', 'cpu', progress=False, hooks=[StopAfter(EPOCHS)])
    close_to(committed, tmp / 'search')


def test_dense(study):
    c, cells, tmp = study
    committed, s = committed_run(c, lambda s: f'dense/seed{s}')
    cfg = cells.config(s, c['main'])
    same_spec(committed, stage_spec('dense', Recipe.of(cfg)))
    dense_stage(cfg, cells.data, cells.loaders(s), tmp / 'dense', 'cpu', progress=False, hooks=[StopAfter(EPOCHS)])
    close_to(committed, tmp / 'dense')


def test_retraining(study):
    """EB re-init's retraining: its start is fixed by the ticket's architecture and its seed, both recorded."""
    c, cells, tmp = study
    committed, s = committed_run(c, lambda s: f"retrain/eb-reinit-p{c['main']:g}-seed{s}")
    cfg, ticket = cells.config(s, c['main'], init='random'), load_json(committed / 'ticket.json')
    same_spec(committed, stage_spec('retrain', Retraining.of(cfg), parent=load_json(committed / 'spec.json')['parent']))
    net = build_model(ticket['config'], seed=ticket['seed'])
    fit_stage(tmp / 'retrain', net, cells.loaders(s), cfg.train_config(None, retrain=True), 'cpu', [StopAfter(EPOCHS)], False)
    close_to(committed, tmp / 'retrain')


def test_tolerance_is_tight(study):
    """A small change to what is trained — weight decay 2e-4 instead of 1e-4 — moves the first two epochs out of it."""
    import dataclasses
    c, cells, tmp = study
    committed, s = committed_run(c, lambda s: f'dense/seed{s}')
    cfg = dataclasses.replace(cells.config(s, c['main']), weight_decay=2e-4)
    dense_stage(cfg, cells.data, cells.loaders(s), tmp / 'changed', 'cpu', progress=False, hooks=[StopAfter(EPOCHS)])
    with pytest.raises(AssertionError): close_to(committed, tmp / 'changed')
