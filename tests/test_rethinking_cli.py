"""End-to-end runs of `eb-study rethink` (and its alias `eb-study-rethinking`) in fresh processes: rethink.csv, the dense
network shared with `eb-study compare`, and bad input."""
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
    df = pd.read_csv(out / 'rethink.csv')
    assert list(df.columns[:6]) == ['pruning', 'ratio', 'lr', 'init', 'seed', 'acc']
    assert len(df) == 2 * 2 * 2                                   # prunings × lrs × inits (one ratio, one seed)
    assert set(df.pruning) == {'unstructured', 'structured'} and set(df.init) == {'rewind', 'random'}
    assert set(df.lr) == {0.1, 0.01} and set(df.ratio) == {0.5} and set(df.seed) == {0}
    assert df.acc.between(0, 1).all()
    assert (out / 'rethink_figure.png').stat().st_size > 0 and (out / 'rethink_summary.csv').exists()
    assert 'winning ticket' in r.stdout and str(out / 'rethink.csv') in r.stdout
    again = run_script('eb-study-rethinking', *QUICK, *grid, '--out', out)   # the alias; finished jobs are read, not retrained
    pd.testing.assert_frame_equal(pd.read_csv(out / 'rethink.csv'), df)
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


def test_reuses_the_dense_network_and_lottery_ticket_of_compare(tmp_path):
    """Liu et al.'s comparison runs on the pipeline's own stages: in the same --out, the dense network (and the winning
    ticket's pruning and retraining) that `eb-study compare` trained for the lottery ticket are read, not retrained."""
    out = tmp_path / 'runs'
    run_script('eb-study', 'compare', *QUICK, '--methods', 'lt', '--ratios', '0.5', '--seeds', '0', '--out', out)
    lt = pd.read_csv(out / 'results.csv').iloc[0]
    dense = sorted(out.glob('dense-*'))
    assert len(dense) == 1
    trained = {p: p.stat().st_mtime_ns for p in out.glob('*/log.csv')}
    rethink(*QUICK, '--prunings', 'unstructured', '--ratios', '0.5', '--lrs', '0.1', '--seeds', '0', '--out', out)
    assert sorted(out.glob('dense-*')) == dense                                  # no second dense network
    assert all(p.stat().st_mtime_ns == t for p, t in trained.items())            # nothing trained twice
    df = pd.read_csv(out / 'rethink.csv').set_index('init')
    assert df.loc['rewind', 'acc'] == lt.acc and df.loc['rewind', 'dense_acc'] == lt.dense_acc
    assert len(list(out.glob('*/log.csv'))) == len(trained) + 1                  # only the random re-initialisation is new
