"""End-to-end runs of the `eb-study-rethinking` console script in fresh processes: results.csv, and bad input."""
import pandas as pd
import pytest

from conftest import run_script

# A small, quick configuration: eighth-width VGG-11 on the offline digits data, one epoch.
QUICK = ['--arch', 'vgg11', '--width', '0.125', '--epochs', '1', '--quiet']


def rethinking(*args, check=True): return run_script('eb-study-rethinking', *args, check=check)


def test_writes_results_csv(tmp_path):
    out = tmp_path / 'run'
    r = rethinking(*QUICK, '--ratios', '0.5', '--lrs', '0.1,0.01', '--seeds', '0', '--pruning', 'unstructured,structured',
                   '--out', out)
    df = pd.read_csv(out / 'results.csv')
    assert list(df.columns[:6]) == ['pruning', 'ratio', 'lr', 'init', 'seed', 'acc']
    assert len(df) == 2 * 2 * 2                                   # prunings × lrs × inits (one ratio, one seed)
    assert set(df.pruning) == {'unstructured', 'structured'} and set(df.init) == {'winning', 'random'}
    assert set(df.lr) == {0.1, 0.01} and set(df.ratio) == {0.5} and set(df.seed) == {0}
    assert df.acc.between(0, 1).all()
    assert (out / 'figure.png').stat().st_size > 0 and (out / 'summary.csv').exists()
    assert 'winning' in r.stdout and str(out / 'results.csv') in r.stdout
    again = rethinking(*QUICK, '--ratios', '0.5', '--lrs', '0.1,0.01', '--seeds', '0', '--pruning',
                       'unstructured,structured', '--out', out)       # finished jobs are read, not retrained
    pd.testing.assert_frame_equal(pd.read_csv(out / 'results.csv'), df)
    assert again.stdout == r.stdout


@pytest.mark.parametrize('args, message', [
    (['--pruning', 'magnitude'], 'pruning must be one of'),
    (['--ratios', '1.5'], 'ratio must be in [0, 1)'),
    (['--lrs', '0.1;0.01'], 'comma-separated'),
    (['--arch', 'vgg7'], "unknown model 'vgg7'"),
    (['--budget', 'C'], 'budget must be one of'),
    (['--dataset', '/no/such/file.npz'], '/no/such/file.npz'),
])
def test_bad_input_stops_with_a_clear_message(tmp_path, args, message):
    r = rethinking(*QUICK, *args, '--out', tmp_path / 'run', check=False)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert message in r.stderr and r.stderr.startswith('eb-study-rethinking: error:'), r.stderr
    assert 'Traceback' not in r.stderr
