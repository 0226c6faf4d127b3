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
from eb_study.studies import STUDIES, TABLE2_STANDARD, scale_cells, point_name, search_summary, table2_cells

RESULTS = Path(__file__).parents[1] / 'nbs' / 'results'
needs_data = pytest.mark.skipif(not cifar10_subset(), reason='the stages of a comparison are built on its data: ../shared/data/cifar10_subset.npz')


def full(name: str) -> dict:
    """The declared configuration of study `name`, its data by name (as committed, also where the data is absent)."""
    c = STUDIES[name].full()
    return {**c, 'recipe': dataclasses.replace(c['recipe'], dataset='cifar10_subset')}


def same_spec(summary: Path, stage: Path) -> bool:
    """The committed summary's spec.json equals, byte for byte, the spec.json of the stage folder written now."""
    return (summary / 'spec.json').read_bytes() == (stage / 'spec.json').read_bytes()


def committed(folder: Path) -> list[Path]:
    return sorted(p.parent for p in folder.glob('*/spec.json')) if folder.exists() else []


@needs_data
def test_table2_and_second_schedule_stages(tmp_path):
    checked = 0
    for name in ('table2', 'second-schedule'):
        c, runs = full(name), tmp_path / name
        for s in c['seeds']:
            for v in c['variants']:
                summary = RESULTS / name / search_summary(v, s)
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


@needs_data
@pytest.mark.parametrize('name', ['rethinking', 'rethinking-2t'])
def test_rethinking_dense_stages(tmp_path, name):
    c = full(name)
    found = committed(RESULTS / name / 'dense')
    assert found
    for summary in found:                                                     # lr{lr}-epochs{e}-seed{s}
        lr, e, s = summary.name.removeprefix('lr').replace('-epochs', ' ').replace('-seed', ' ').split()
        stage = dense_dir(Recipe.of(c['recipe'], seed=int(s), lr=float(lr), epochs=int(e)), tmp_path)
        assert same_spec(summary, stage), summary


@needs_data
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


# The folder of every stage kind for one configuration and each starting point, as the code composed them before each
# stage derived its own folder (`stage_folder`, commit aad9460 and earlier): a changed spec changes a hash here.
PINNED = {
    'search-inherit': 'search-18949cadfa',
    'dense-inherit': 'dense-c6c5bbfaa3',
    'prune-inherit': 'prune-5ee6af02ac',
    'retrain-inherit': 'retrain-99d0bc5a99',
    'run-inherit': 'eb-21b7c72c33',
    'ns-prune-inherit': 'ns-prune-28979beecf',
    'ns-finetune-inherit': 'ns-finetune-d9574d16fd',
    'oneshot-inherit': 'oneshot-5b19692228',
    'finetune-inherit': 'retrain-e998c8a745',
    'snip-inherit': 'snip-8c90dae13f',
    'thinet-prune-inherit': 'thinet-prune-8ed3cd1c8e',
    'thinet-finetune-inherit': 'thinet-finetune-212dd8fe62',
    'random-prune-inherit': 'random-prune-82a66fb37f',
    'random-retrain-inherit': 'retrain-bde678e2a2',
    'draw-prune-inherit': 'draw-prune-c952123c66',
    'draw-retrain-inherit': 'draw-retrain-59000ec6f4',
    'cell-inherit': 'cell-4a56100ee3',
    'search-random': 'search-18949cadfa',
    'dense-random': 'dense-c6c5bbfaa3',
    'prune-random': 'prune-31bd89753f',
    'retrain-random': 'retrain-7326588e40',
    'run-random': 'eb-f797a8af6c',
    'ns-prune-random': 'ns-prune-28979beecf',
    'ns-finetune-random': 'ns-finetune-d9574d16fd',
    'oneshot-random': 'oneshot-1d1d264591',
    'finetune-random': 'retrain-01a4cff69c',
    'snip-random': 'snip-616393edf6',
    'thinet-prune-random': 'thinet-prune-129c60d8a1',
    'thinet-finetune-random': 'thinet-finetune-fcb7da9756',
    'random-prune-random': 'random-prune-8898acdf99',
    'random-retrain-random': 'retrain-0bc6c566c3',
    'draw-prune-random': 'draw-prune-a3b6a665b6',
    'draw-retrain-random': 'draw-retrain-0551ab4e96',
    'cell-random': 'cell-b20e809bc6',
    'search-rewind': 'search-18949cadfa',
    'dense-rewind': 'dense-c6c5bbfaa3',
    'prune-rewind': 'prune-22261776e6',
    'retrain-rewind': 'retrain-f695223b08',
    'run-rewind': 'eb-029680a25b',
    'ns-prune-rewind': 'ns-prune-28979beecf',
    'ns-finetune-rewind': 'ns-finetune-d9574d16fd',
    'oneshot-rewind': 'oneshot-39aaf6edbe',
    'finetune-rewind': 'retrain-5b3afca09a',
    'snip-rewind': 'snip-8d1ea8a5cc',
    'thinet-prune-rewind': 'thinet-prune-ccab8cfa54',
    'thinet-finetune-rewind': 'thinet-finetune-f56db4d1f1',
    'random-prune-rewind': 'random-prune-9871fe3739',
    'random-retrain-rewind': 'retrain-8de7a5d823',
    'draw-prune-rewind': 'draw-prune-c01b90a6e7',
    'draw-retrain-rewind': 'draw-retrain-14eefba34d',
    'cell-rewind': 'cell-46b2de195b',
}


def test_every_stage_kind_keeps_its_folder(tmp_path):
    from eb_study.ebtrain import EBConfig, dense_dir, stage_dirs, stage_folder
    got = {}
    for init in ('inherit', 'random', 'rewind'):
        cfg = EBConfig(arch='vgg11', width=0.125, epochs=4, init=init, ratio=0.3, seed=2)
        d = stage_dirs(cfg, tmp_path)
        got.update({f'{k}-{init}': v.name for k, v in d.items()})
        ns, one = stage_folder('ns-prune', cfg, tmp_path, d['search']), stage_folder('oneshot', cfg, tmp_path, dense_dir(cfg, tmp_path), pruning='unstructured')
        thi, rnd = stage_folder('thinet-prune', cfg, tmp_path, dense_dir(cfg, tmp_path)), stage_folder('random-prune', cfg, tmp_path, d['search'], channels='random, seed 2000+seed')
        drawn = stage_folder('draw-prune', cfg, tmp_path, d['search'], epoch=3)
        got.update({f'ns-prune-{init}': ns.name, f'ns-finetune-{init}': stage_folder('ns-finetune', cfg, tmp_path, ns).name,
                    f'oneshot-{init}': one.name, f'finetune-{init}': stage_folder('finetune', cfg, tmp_path, one).name,
                    f'snip-{init}': stage_folder('snip', cfg, tmp_path).name, f'thinet-prune-{init}': thi.name,
                    f'thinet-finetune-{init}': stage_folder('thinet-finetune', cfg, tmp_path, thi).name,
                    f'random-prune-{init}': rnd.name, f'random-retrain-{init}': stage_folder('retrain', cfg, tmp_path, rnd).name,
                    f'draw-prune-{init}': drawn.name, f'draw-retrain-{init}': stage_folder('draw-retrain', cfg, tmp_path, drawn).name,
                    f'cell-{init}': stage_folder('cell', cfg, tmp_path, method='eb', protocol='paper').name})
    assert got == PINNED
