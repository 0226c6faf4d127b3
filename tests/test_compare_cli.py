"""End-to-end runs of `eb-study compare` (Table 2) in fresh processes: results.csv, the table, reuse, bad input."""
import pandas as pd
import pytest

from eb_study.cost import energy_counter
from eb_study.train import resolve_device

from conftest import clean_error, run_script

# A small, quick configuration: eighth-width VGG-11 on the offline digits data, 3 epochs.
QUICK = ['--arch', 'vgg11', '--width', '0.125', '--epochs', '3', '--threshold', '0.9', '--length', '2', '--quiet']


def compare(*args, check=True): return run_script('eb-study', 'compare', *args, check=check)


def test_writes_results_and_the_table(tmp_path):
    out = tmp_path / 'runs'
    r = compare(*QUICK, '--methods', 'eb,ns,lt,snip,thinet', '--ratios', '0.5', '--seeds', '0', '--out', out)
    df = pd.read_csv(out / 'results.csv')
    for col in ('method', 'ratio', 'seed', 'acc', 'train_flops', 'train_flops_sparse', 'wall_s', 'energy_j'):
        assert col in df.columns, col
    assert list(df.method) == ['eb', 'ns', 'lt', 'snip', 'thinet'] and set(df.ratio) == {0.5} and set(df.seed) == {0}
    measured = energy_counter(resolve_device('auto')) is not None               # NVIDIA GPUs with an energy counter
    assert df.acc.between(0, 1).all() and df.energy_j.isna().all() != measured  # elsewhere not measured, left empty
    lt, snip = (df.set_index('method').loc[m] for m in ('lt', 'snip'))
    assert lt.train_flops == 2 * snip.train_flops and lt.train_flops_sparse < lt.train_flops
    assert 'improvement' in r.stdout and 'acc % (min–max)' in r.stdout and "the paper's protocol (T = 3)" in r.stdout
    eb = df.set_index('method').loc['eb']
    assert eb.epochs == 3 and 0 < eb.eb_epoch < 3                              # the search to t_EB, then the rest to T
    again = compare(*QUICK, '--methods', 'eb,ns,lt,snip,thinet', '--ratios', '0.5', '--seeds', '0', '--out', out)
    pd.testing.assert_frame_equal(pd.read_csv(out / 'results.csv'), df)     # every stage read, none retrained
    assert again.stdout.splitlines()[-1] == r.stdout.splitlines()[-1]


def test_recipe_protocol_retrains_every_method_as_the_recipe_says(tmp_path):
    out = tmp_path / 'runs'
    r = compare(*QUICK, '--methods', 'eb,ns', '--ratios', '0.5', '--seeds', '0', '--protocol', 'recipe', '--retrain-epochs', '1',
                '--out', out)
    df = pd.read_csv(out / 'results.csv').set_index('method')
    assert df.loc['ns', 'epochs'] == 3 + 1 and df.loc['eb', 'epochs'] == df.loc['eb', 'eb_epoch'] + 1
    assert '1 epochs, a fresh schedule, for every method' in r.stdout


def test_a_ticket_that_never_emerges_is_retrained_as_network_slimming_under_the_paper_protocol(tmp_path):
    """The rest of the schedule is empty when no ticket emerged: the command says so in one line, draws the ticket from
    the final weights and retrains it for a fresh schedule, keeping every finished stage; the main command agrees."""
    never = ['--arch', 'vgg11', '--width', '0.125', '--epochs', '2', '--threshold', '0.0001', '--length', '2', '--quiet']
    out = tmp_path / 'runs'
    r = compare(*never, '--methods', 'eb,ns', '--ratios', '0.5', '--seeds', '0', '--out', out)
    warned = [l for l in r.stderr.splitlines() if 'warning:' in l]
    assert any('never emerged in the 2-epoch search' in l for l in warned) and 'Traceback' not in r.stderr, r.stderr
    assert all(l.startswith('eb-study compare: warning: ') for l in warned), warned          # one readable line each
    df = pd.read_csv(out / 'results.csv').set_index('method')
    assert pd.isna(df.loc['eb', 'eb_epoch']) and df.loc['eb', 'epochs'] == 2 + 2 == df.loc['ns', 'epochs']
    main = run_script('eb-study', *never, '--retrain', 'rest', '--no-ns', '--no-dense', '--out', tmp_path / 'main')
    assert 'never emerged' in main.stderr and 'Traceback' not in main.stderr


@pytest.mark.parametrize('args, message', [
    (['--retrain-epochs', '2'], "the paper's protocol sets each method's retraining length"),
    (['--protocol', 'short'], "protocol must be one of ('paper', 'recipe'), got 'short'"),
    (['--methods', 'eb,slimming'], "unknown method 'slimming'"),
    (['--ratios', '0.5,1.0'], 'ratio must be in [0, 1), got 1.0 in ratios'),
    (['--seeds', '0;1'], 'comma-separated'),
    (['--arch', 'vgg7'], "unknown model 'vgg7'"),
    (['--dataset', '/no/such/file.npz'], '/no/such/file.npz'),
])
def test_bad_input_stops_with_a_clear_message(tmp_path, args, message):
    clean_error(compare(*QUICK, *args, '--out', tmp_path / 'runs', check=False), message)
