"""Committed results cannot drift silently from the code: the first two epochs of one committed run of each kind — a
search, a dense training, a retraining — re-run from the configuration recorded with them, and compared with the
committed logs.

On the torch build the study recorded (`environment.json`) and one thread, as its workers ran, the rerun is bit for
bit the committed log (measured: every difference 0.0). The tolerance is the log's own rounding (6 significant
digits), not more: early training is chaotic, so a rounding difference — two threads instead of one — already moves
the second epoch's training loss by 0.012 and its test loss by 0.58, as much as a changed weight decay (2e-4 for
1e-4: 0.011 and 0.52). No tolerance could tell those apart; so the check is exact where exactness is possible and
skips, naming both builds, where the torch build differs."""
import json
from pathlib import Path

import pytest
import torch

from eb_study.data import cifar10_subset
from eb_study.ebtrain import Recipe, dense_stage, search_stage
from eb_study.models import build_model
from eb_study.report import read_log
from eb_study.settings import Retraining, Search
from eb_study.store import load_json, stage_spec
from eb_study.studies import STUDIES, TABLE2_STANDARD, table2_cells
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
    env = R / 'environment.json'
    if not env.exists(): pytest.skip(f"{env} is not committed: the environment of the committed runs is unknown")
    recorded = load_json(env)['torch']
    if recorded != torch.__version__:
        pytest.skip(f"the committed runs were made with torch {recorded}, this is {torch.__version__}: early training is "
                    "chaotic, so a 2-epoch rerun reproduces them only on the same build")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # as the study's workers: CPU rounding depends on the thread count
    c = STUDIES['table2'].full()
    cells = table2_cells(c, TABLE2_STANDARD, tmp_path_factory.mktemp('drift'), 'cpu')
    yield c, cells, tmp_path_factory.mktemp('rerun')
    torch.set_num_threads(threads)


def committed_run(path: Path) -> Path:
    if not (path / 'log.csv').exists(): pytest.skip(f"{path} is not committed yet (the study has not finished that stage)")
    return path


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
    committed, cfg = committed_run(R / 'searches' / f'{TABLE2_STANDARD}-seed0'), cells.config(0, c['main'])
    same_spec(committed, stage_spec('search', Recipe.of(cfg), Search.of(cfg, full_search=cfg.search_to_end)))
    search_stage(cfg, cells.data, cells.loaders(0), tmp / 'search', 'cpu', progress=False, hooks=[StopAfter(EPOCHS)])
    close_to(committed, tmp / 'search')


def test_dense(study):
    c, cells, tmp = study
    committed, cfg = committed_run(R / 'dense' / 'seed0'), cells.config(0, c['main'])
    same_spec(committed, stage_spec('dense', Recipe.of(cfg)))
    dense_stage(cfg, cells.data, cells.loaders(0), tmp / 'dense', 'cpu', progress=False, hooks=[StopAfter(EPOCHS)])
    close_to(committed, tmp / 'dense')


def test_retraining(study):
    """EB re-init's retraining: its start is fixed by the ticket's architecture and its seed, both recorded."""
    c, cells, tmp = study
    committed = committed_run(R / 'retrain' / f"eb-reinit-p{c['main']:g}-seed0")
    cfg, ticket = cells.config(0, c['main'], init='random'), load_json(committed / 'ticket.json')
    same_spec(committed, stage_spec('retrain', Retraining.of(cfg), parent=load_json(committed / 'spec.json')['parent']))
    net = build_model(ticket['config'], seed=ticket['seed'])
    fit_stage(tmp / 'retrain', net, cells.loaders(0), cfg.train_config(None, retrain=True), 'cpu', [StopAfter(EPOCHS)], False)
    close_to(committed, tmp / 'retrain')


def test_tolerance_is_tight(study):
    """A small change to what is trained — weight decay 2e-4 instead of 1e-4 — moves the first two epochs out of it."""
    import dataclasses
    c, cells, tmp = study
    committed = committed_run(R / 'dense' / 'seed0')
    cfg = dataclasses.replace(cells.config(0, c['main']), weight_decay=2e-4)
    dense_stage(cfg, cells.data, cells.loaders(0), tmp / 'changed', 'cpu', progress=False, hooks=[StopAfter(EPOCHS)])
    with pytest.raises(AssertionError): close_to(committed, tmp / 'changed')
