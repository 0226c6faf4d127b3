"""End-to-end runs of `eb-study study` in fresh processes: the list of studies, a tiny study writing the results files
its notebook reads, and bad input."""
import json

import pandas as pd

from conftest import clean_error, run_script
from eb_study.studies import STUDIES


def study(*args, check=True): return run_script('eb-study', 'study', *args, check=check)


def test_list_names_every_study_and_its_notebook():
    out = study('--list').stdout
    for s in STUDIES.values(): assert s.name in out and s.notebook in out, s.name


def test_table2_tiny_writes_the_results_its_notebook_reads(tmp_path):
    out, runs = tmp_path / 'results', tmp_path / 'runs'
    r = study('table2', '--tiny', '--out', out, '--runs', runs, '--quiet')
    for f in ('results.csv', 'draws.csv', 'config.json', 'searches/0-100-seed0/log.csv', 'dense/seed0/log.csv',
              'retrain/eb-reinit-p0.5-seed0/ticket.json'): assert (out / f).stat().st_size > 0, f
    odd = [p for p in (*out.rglob('*'), *runs.rglob('*')) if set(p.name) & set(' []')]
    assert not odd, f"folder or file names with spaces or brackets: {odd}"   # paths a shell user can type
    assert 'not meant to learn' in r.stdout                                   # a tiny study's accuracies are not results
    df = pd.read_csv(out / 'results.csv')
    assert set(df.method) == {'eb', 'eb-reinit', 'eb-random', 'ns', 'lt', 'snip', 'thinet', 'eb-lf', 'eb-ll'} and set(df.ratio) == {0.3, 0.5}
    assert set(df[df.method == 'eb-ll'].ratio) == {0.5}
    draws = pd.read_csv(out / 'draws.csv')
    assert set(draws.variant) == {'[0, 100]', '[80, 120]', 'lr 0.5'} and set(draws.drawn_at) >= {1, 4}
    cfg = json.loads((out / 'config.json').read_text())
    assert cfg['study'] == 'table2' and cfg['tiny'] and cfg['package']['version'] and 'steps_per_epoch' in cfg
    assert cfg['protocol'] == 'paper'
    assert str(out) in r.stdout and 'results.csv' in r.stdout
    assert any(runs.glob('dense-*')) and not any(out.glob('dense-*'))   # stage folders under --runs, results under --out
    last = (out / 'progress.txt').read_text()                             # where the study stands, for a second terminal
    import re
    assert re.match(r'\[(\d+)/\1\] ', last) and '| 0 failed |' in last, last           # every unit done, none failed


def test_bad_input_stops_with_a_clear_message(tmp_path):
    clean_error(study('table3', '--out', tmp_path / 'o', check=False), "unknown study 'table3'", 'eb-study study: error:')
    clean_error(study('--out', tmp_path / 'o', check=False), 'name a study')
    assert not (tmp_path / 'o').exists()


def test_a_study_resumes_from_its_committed_rows_in_a_fresh_checkout(tmp_path):
    """Stage folders are not committed: a study rerun where they are gone reads its finished rows and trains nothing."""
    out, runs = tmp_path / 'results', tmp_path / 'runs'
    study('rethinking', '--tiny', '--out', out, '--runs', runs, '--workers', '2', '--quiet')
    first = pd.read_csv(out / 'results.csv')
    assert set(first.init) == {'rewind', 'random'} and set(first.grid) == {'unstructured', 'filter-a', 'filter-a, Scratch-B'}
    assert first.study.nunique() == 1 and first.commit.notna().all()
    import shutil
    shutil.rmtree(runs)
    r = study('rethinking', '--tiny', '--out', out, '--runs', runs, '--quiet')
    assert f'{len(first) // 2} cells in' in r.stdout and '0 to run' in r.stdout
    assert not any(runs.glob('retrain-*')) and not any(runs.glob('dense-*/log.csv'))   # nothing trained again
    pd.testing.assert_frame_equal(pd.read_csv(out / 'results.csv'), first)


def test_a_seed_resumed_on_another_machine_reruns_the_rows_that_start_from_a_changed_stage(tmp_path):
    """Fault injection: the committed log of seed 0's dense network is changed, as another machine would have trained it.
    Resumed in a fresh checkout with one cell left, the study retrains the seed's shared stages, finds the dense network
    unlike its committed log, and reruns every finished cell (each row's dense reference); the draws, which start from
    the searches only, are kept. On this machine the reruns give the committed accuracies bit for bit."""
    import io, shutil
    out, runs = tmp_path / 'results', tmp_path / 'runs'
    study('table2', '--tiny', '--out', out, '--runs', runs, '--quiet')
    first, draws = pd.read_csv(out / 'results.csv'), pd.read_csv(out / 'draws.csv', dtype={'draw': str})
    shutil.rmtree(runs)
    log = out / 'dense' / 'seed0' / 'log.csv'
    real = log.read_text()
    changed = pd.read_csv(log)
    changed.loc[0, 'test_acc'] += 0.01
    changed.to_csv(log, index=False)
    first[first.method != 'snip'].to_csv(out / 'results.csv', index=False)   # one cell per ratio left to run
    r = study('table2', '--tiny', '--out', out, '--runs', runs, '--quiet')
    n_cells = len(first) - (first.method == 'snip').sum()
    assert f'{n_cells} finished rows start from a shared stage that reran unlike its committed record' in r.stdout
    again = pd.read_csv(out / 'results.csv')
    key = ['method', 'ratio', 'seed']
    pd.testing.assert_frame_equal(again.sort_values(key)[key + ['acc', 'train_flops']].reset_index(drop=True),
                                  first.sort_values(key)[key + ['acc', 'train_flops']].reset_index(drop=True))
    assert not any(runs.glob('draw-retrain-*/log.csv'))                      # the draws were kept, not retrained
    kept = pd.read_csv(out / 'draws.csv', dtype={'draw': str})
    assert len(kept) == len(draws)
    assert pd.read_csv(log).drop(columns='time_s').equals(pd.read_csv(io.StringIO(real)).drop(columns='time_s'))
