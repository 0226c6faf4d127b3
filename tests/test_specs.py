"""The stage folders that today's code computes for every committed study are the ones the study wrote: each committed
summary's `spec.json` is, byte for byte, what the same stage of the declared configuration writes now. So a study
resumed under new code finds its stage folders (their names are hashes of these specs), and every committed row still
names the stages it came from."""
import dataclasses
from pathlib import Path

import pytest

from eb_study.compare import LOWBIT_SEARCH
from eb_study.data import cifar10_subset
from eb_study.ebtrain import Recipe, dense_dir, stage_dirs
from eb_study.studies import STUDIES, TABLE2_STANDARD, scale_cells, point_name, table2_cells

RESULTS = Path(__file__).parents[1] / 'nbs' / 'results'
pytestmark = pytest.mark.skipif(not cifar10_subset(), reason='the stages of a comparison are built on its data: ../shared/data/cifar10_subset.npz')


def full(name: str) -> dict:
    """The declared configuration of study `name`, its data by name (as committed, also where the data is absent)."""
    c = STUDIES[name].full()
    return {**c, 'recipe': dataclasses.replace(c['recipe'], dataset='cifar10_subset')}


def same_spec(summary: Path, stage: Path) -> bool:
    """The committed summary's spec.json equals, byte for byte, the spec.json of the stage folder written now."""
    return (summary / 'spec.json').read_bytes() == (stage / 'spec.json').read_bytes()


def committed(folder: Path) -> list[Path]:
    return sorted(p.parent for p in folder.glob('*/spec.json')) if folder.exists() else []


def test_table2_and_second_schedule_stages(tmp_path):
    checked = 0
    for name in ('table2', 'second-schedule'):
        c, runs = full(name), tmp_path / name
        for s in c['seeds']:
            for v in c['variants']:
                summary = RESULTS / name / 'searches' / f'{v}-seed{s}'
                if summary.exists():
                    stage = stage_dirs(table2_cells(c, v, runs).config(s, c['main']), runs, create=('search',))['search']
                    assert same_spec(summary, stage), summary; checked += 1
            cells = table2_cells(c, TABLE2_STANDARD, runs)
            summary = RESULTS / name / 'dense' / f'seed{s}'
            if summary.exists(): assert same_spec(summary, dense_dir(cells.config(s, c['main']), runs)), summary; checked += 1
            summary = RESULTS / name / 'searches' / f'8-bit-seed{s}'
            if summary.exists():
                stage = stage_dirs(cells.config(s, c['main'], **LOWBIT_SEARCH), runs, create=('search',))['search']
                assert same_spec(summary, stage), summary; checked += 1
            summary = RESULTS / name / 'retrain' / f"eb-reinit-p{c['main']:g}-seed{s}"
            if summary.exists():
                stage = stage_dirs(cells.config(s, c['main'], init='random'), runs, create=('prune', 'retrain'))['retrain']
                assert same_spec(summary, stage), summary; checked += 1
    n = sum(len(committed(RESULTS / name / kind)) for name in ('table2', 'second-schedule') for kind in ('searches', 'dense', 'retrain'))
    assert checked == n and n > 0, (checked, n)                               # every committed summary was checked


@pytest.mark.parametrize('name', ['rethinking', 'rethinking-2t'])
def test_rethinking_dense_stages(tmp_path, name):
    c = full(name)
    found = committed(RESULTS / name / 'dense')
    assert found
    for summary in found:                                                     # lr{lr}-epochs{e}-seed{s}
        lr, e, s = summary.name.removeprefix('lr').replace('-epochs', ' ').replace('-seed', ' ').split()
        stage = dense_dir(Recipe.of(c['recipe'], seed=int(s), lr=float(lr), epochs=int(e)), tmp_path)
        assert same_spec(summary, stage), summary


def test_scale_stages(tmp_path):
    c = full('scale')
    found = [p for kind in ('dense', 'searches') for p in committed(RESULTS / 'scale' / kind)]
    for summary in found:                                                     # w{width}-T{T}-seed{s}
        point = next(p for p in c['points'] if summary.name.startswith(point_name(p['width'], p['epochs']) + '-'))
        s = int(summary.name.rsplit('-seed', 1)[1])
        cells = scale_cells(c, point['width'], point['epochs'], tmp_path)
        cfg = cells.config(s, cells.grid.ratios[0])
        stage = dense_dir(cfg, tmp_path) if summary.parent.name == 'dense' else stage_dirs(cfg, tmp_path, create=('search',))['search']
        assert same_spec(summary, stage), summary
