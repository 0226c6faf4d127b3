"""End-to-end runs of `eb-study rethink` (and its alias `eb-study-rethinking`) in fresh processes: results.csv, and bad
input."""
import pandas as pd
import pytest

from conftest import clean_error, run_script

# A small, quick configuration: eighth-width VGG-11 on the offline digits data, one epoch.
QUICK = ['--arch', 'vgg11', '--width', '0.125', '--epochs', '1', '--quiet']


def rethink(*args, check=True): return run_script('eb-study', 'rethink', *args, check=check)


def test_writes_results_csv(tmp_path):
    out = tmp_path / 'run'
    grid = ['--ratios', '0.5', '--lrs', '0.1,0.01', '--seeds', '0', '--prunings', 'unstructured,structured']
    r = rethink(*QUICK, *grid, '--out', out)
    df = pd.read_csv(out / 'results.csv')
    assert list(df.columns[:6]) == ['pruning', 'ratio', 'lr', 'init', 'seed', 'acc']
    assert len(df) == 2 * 2 * 2                                   # prunings × lrs × inits (one ratio, one seed)
    assert set(df.pruning) == {'unstructured', 'structured'} and set(df.init) == {'winning', 'random'}
    assert set(df.lr) == {0.1, 0.01} and set(df.ratio) == {0.5} and set(df.seed) == {0}
    assert df.acc.between(0, 1).all()
    assert (out / 'figure.png').stat().st_size > 0 and (out / 'summary.csv').exists()
    assert 'winning' in r.stdout and str(out / 'results.csv') in r.stdout
    again = run_script('eb-study-rethinking', *QUICK, *grid, '--out', out)   # the alias; finished jobs are read, not retrained
    pd.testing.assert_frame_equal(pd.read_csv(out / 'results.csv'), df)
    assert again.stdout == r.stdout


@pytest.mark.parametrize('args, message', [
    (['--prunings', 'magnitude'], 'pruning must be one of'),
    (['--ratios', '1.5'], 'ratio must be in [0, 1)'),
    (['--lrs', '0.1;0.01'], 'comma-separated'),
    (['--arch', 'vgg7'], "unknown model 'vgg7'"),
    (['--budget', 'C'], 'budget must be one of'),
    (['--dataset', '/no/such/file.npz'], '/no/such/file.npz'),
])
def test_bad_input_stops_with_a_clear_message(tmp_path, args, message):
    for r, prog in ((rethink(*QUICK, *args, '--out', tmp_path / 'run', check=False), 'eb-study rethink'),
                    (run_script('eb-study-rethinking', *QUICK, *args, '--out', tmp_path / 'run', check=False), 'eb-study-rethinking')):
        clean_error(r, message, f'{prog}: error:')
    assert not (tmp_path / 'run').exists()


def test_help_lists_the_grid_and_download():
    text = rethink('--help').stdout
    for opt in ('--prunings', '--ratios', '--lrs', '--seeds', '--budget', '--rounds', '--download', '--out'): assert opt in text, opt
