"""Every option of every sub-command, given an invalid value, and a set of malformed dataset files: each is refused with
exit code 2 and one line naming the option or the file, no traceback, and nothing written under --out. The options
are generated from the parsers (themselves generated from the settings), so a new option is covered, or fails this
test until it is, without editing it."""
import argparse
import warnings

import numpy as np
import pytest

from eb_study import cli
from eb_study.data import NPZ_KEYS, load_data

# Options that have no invalid value: flags, and free-form names whose meaning is checked where they are used.
FREE = {'help', 'out', 'runs', 'ray_address', 'partition', 'quiet', 'download', 'tiny', 'list', 'channels_last',
        'deterministic', 'sync_bn', 'full_search', 'ns', 'dense'}
# So that a case wrongly accepted trains for seconds, not minutes (the option under test comes last and wins).
FAST = ['--arch', 'vgg11', '--width', '0.0625', '--epochs', '1']


def options(name):
    """(dest, option string, invalid value) for every option of sub-command `name`."""
    for a in cli.arg_parser(name)._actions:
        if a.dest in FREE or not a.option_strings: continue
        assert not isinstance(a, (argparse.BooleanOptionalAction, argparse._StoreTrueAction)), f"{a.dest}: a flag not in FREE"
        bad = 'bogus-value' if a.choices or a.type in (None, str) or getattr(a.type, '__name__', '') == 'str or none' else '-7'
        yield a.dest, a.option_strings[0], bad


def refused(capsys, tmp_path, argv, *names):
    """`eb-study argv` exits with 2 and one error line that holds one of `names`, no traceback, nothing under --out."""
    out = tmp_path / 'out'
    with pytest.raises(SystemExit) as e:
        cli.main([*argv, '--out', str(out)])
        raise AssertionError(f'accepted: {argv}')
    err = capsys.readouterr().err
    assert e.value.code == 2, (argv, err)
    lines = [l for l in err.splitlines() if 'error:' in l]
    assert len(lines) == 1 and any(n in lines[0] for n in names), (argv, err)
    assert 'Traceback' not in err and not out.exists(), (argv, err)


CASES = [(cmd, dest, opt, bad) for cmd in ('train', 'compare', 'rethink', 'study') for dest, opt, bad in options(cmd)]


@pytest.mark.parametrize('cmd, dest, opt, bad', CASES, ids=[f'{c[0]}{c[2]}' for c in CASES])
def test_every_option_refuses_an_invalid_value(capsys, tmp_path, cmd, dest, opt, bad):
    prefix = [cmd] if cmd != 'train' else []
    pairs = ([['--study', 'lowprec']] if opt != '--study' else []) if cmd == 'study' else \
            [FAST[i:i + 2] for i in range(0, len(FAST), 2) if FAST[i] != opt]
    fast = [a for pair in pairs for a in pair]
    refused(capsys, tmp_path, [*prefix, *fast, opt, bad], dest, opt)


def test_every_option_is_covered():
    covered = {(c, d) for c, d, _, _ in CASES}
    for cmd in ('train', 'compare', 'rethink', 'study'):
        dests = {a.dest for a in cli.arg_parser(cmd)._actions if a.option_strings}
        assert dests - FREE == {d for c, d in covered if c == cmd}
    assert ('train', 'seed') in covered and ('compare', 'methods') in covered and ('study', 'executor') in covered


def write(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.fixture(scope='module')
def digits():
    d = load_data('digits')
    return {k: getattr(d, k).numpy()[:64] for k in NPZ_KEYS}


def malformed(d, tmp):
    """(file, what the message must say) for each malformed dataset."""
    yield write(tmp / 'no_test.npz', x_train=d['x_train'], y_train=d['y_train']), "lacks the arrays ['x_test', 'y_test']"
    yield write(tmp / 'float.npz', **{**d, 'x_train': d['x_train'].astype('float32')}), 'x_train must be uint8'
    yield write(tmp / 'flat.npz', **{**d, 'x_train': d['x_train'].reshape(len(d['x_train']), -1)}), 'x_train must be uint8 N×C×H×W'
    yield write(tmp / 'count.npz', **{**d, 'y_train': d['y_train'][:-1]}), 'y_train must be int64 of shape'
    yield write(tmp / 'shifted.npz', **{**d, 'y_train': d['y_train'] + 100, 'y_test': d['y_test'] + 100}), 'found 100..109'
    yield write(tmp / 'negative.npz', **{**d, 'y_train': d['y_train'] - 20, 'y_test': d['y_test'] - 20}), 'found -20..-11'
    yield write(tmp / 'float_labels.npz', **{**d, 'y_train': d['y_train'].astype('float32')}), 'y_train must be int64'
    yield write(tmp / 'sizes.npz', **{**d, 'x_test': d['x_test'][:, :, :16, :16]}), 'train images are (3, 32, 32), test images (3, 16, 16)'
    yield write(tmp / 'declared.npz', **{**d, 'num_classes': 5}), 'labels outside [0, 5)'
    yield write(tmp / 'num_classes.npz', **{**d, 'num_classes': np.array([10, 10])}), 'num_classes must be one integer >= 1'
    yield write(tmp / 'empty.npz', **{**d, 'x_train': d['x_train'][:0], 'y_train': d['y_train'][:0]}), 'x_train holds no images'
    yield write(tmp / 'objects.npz', **{**d, 'y_test': np.array([None] * len(d['y_test']))}), 'object arrays'
    (tmp / 'noise.npz').write_bytes(bytes(range(256)) * 16)
    yield tmp / 'noise.npz', 'is not a valid .npz file'
    yield tmp / 'missing.npz', 'no .npz file at'


def test_malformed_datasets_are_refused_before_anything_is_written(capsys, tmp_path, digits):
    for path, message in malformed(digits, tmp_path):
        for cmd in ([], ['compare'], ['rethink']):
            refused(capsys, tmp_path, [*cmd, *FAST, '--dataset', str(path)], message)


def test_nhwc_images_are_transposed_and_said_once(tmp_path, digits):
    path = write(tmp_path / 'nhwc.npz', **{**digits, 'x_train': digits['x_train'].transpose(0, 2, 3, 1),
                                            'x_test': digits['x_test'].transpose(0, 2, 3, 1)})
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        d = load_data(str(path))
    assert d.x_train.shape[1:] == (3, 32, 32) and np.array_equal(d.x_train.numpy(), digits['x_train'])
    assert len(w) == 1 and 'N×H×W×C' in str(w[0].message)


def test_cifar_without_files_asks_for_download(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv('EB_STUDY_DATA', str(tmp_path / 'empty'))
    refused(capsys, tmp_path, [*FAST, '--dataset', 'cifar10'], '--download')


def test_python_api_raises_before_writing(tmp_path):
    from eb_study.compare import CompareGrid, compare
    from eb_study.ebtrain import EBConfig, eb_train
    (tmp_path / 'noise.npz').write_bytes(b'not numpy')
    cfg = EBConfig(dataset=str(tmp_path / 'noise.npz'), arch='vgg11', width=0.0625, epochs=1)
    for run in (lambda: eb_train(cfg, tmp_path / 'a'), lambda: compare(cfg, CompareGrid(('eb',), (0.5,), (0,)), tmp_path / 'b')):
        with pytest.raises(ValueError, match='is not a valid .npz file'): run()
    with pytest.raises(ValueError, match="device must be"): eb_train(EBConfig(), tmp_path / 'c', device='gpu0')
    assert not any((tmp_path / p).exists() for p in 'abc')


@pytest.mark.parametrize('argv, message', [
    (['--seed', '-1'], 'seed must be an integer >= 0, got -1'),           # refused before any folder exists, in its own words
    (['--threshold', '2'], 'threshold must be in (0, 1], got 2.0'),
    (['--length', '1'], 'length must be an integer >= 2, got 1'),
    (['--batch-size', '0'], 'batch_size must be an integer >= 1, got 0'),
    (['--device', 'gpu0'], "device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'gpu0'"),
    (['compare', '--ratios', '1.0'], 'pruning ratio must be in [0, 1), got 1.0 in ratios'),
    (['--width', 'inf'], 'width must be a finite number > 0 and <= 64, got inf'),
    (['--lr', 'inf'], 'lr must be a finite number > 0, got inf'),
    (['rethink', '--width', '1e300'], 'width must be a finite number > 0 and <= 64'),
    (['compare', '--sparsity', 'nan'], 'sparsity must be a finite number >= 0, got nan'),
])
def test_the_reported_defects(capsys, tmp_path, argv, message):
    cmd = argv[:1] if argv[0] in ('compare', 'rethink') else []
    refused(capsys, tmp_path, [*cmd, *FAST, *argv[len(cmd):]], message)


LAYOUTS = [(c, size, layout) for c in (1, 3, 4) for size in (28, 32) for layout in ('NCHW', 'NHWC')] + [(1, 28, 'NHW')]


@pytest.mark.parametrize('channels, size, layout', LAYOUTS, ids=[f'{c}x{s}-{l}' for c, s, l in LAYOUTS])
def test_every_image_layout_either_trains_or_is_refused_before_anything_is_written(capsys, tmp_path, channels, size, layout):
    """The data layouts a user may bring: grey or RGB images of 28×28 (fitted: channel repeated, padded to 32×32) and
    32×32 train end to end; 4-channel images are refused in one line naming the file and its shape, nothing written."""
    rng = np.random.default_rng(0)
    shape = {'NCHW': (channels, size, size), 'NHWC': (size, size, channels), 'NHW': (size, size)}[layout]
    arrays = {'x_train': rng.integers(0, 256, (40, *shape), dtype=np.uint8), 'y_train': np.arange(40) % 4,
              'x_test': rng.integers(0, 256, (12, *shape), dtype=np.uint8), 'y_test': np.arange(12) % 4}
    f = tmp_path / 'images.npz'
    np.savez(f, **arrays)
    argv = [*FAST, '--dataset', str(f), '--retrain-epochs', '1', '--batch-size', '13', '--no-ns', '--no-dense', '--quiet']
    if channels == 4: return refused(capsys, tmp_path, argv, 'images.npz has 4×32×32 images, which vgg cannot train on')
    with warnings.catch_warnings(): warnings.simplefilter('ignore'); cli.main([*argv, '--out', str(tmp_path / 'out')])
    assert list((tmp_path / 'out').glob('eb-*/results.json'))


def test_an_out_that_cannot_hold_a_run_is_refused_in_one_line(capsys, tmp_path):
    import os
    f = tmp_path / 'a-file'; f.write_text('not a folder')
    for argv in ([*FAST, '--out', str(f)], ['compare', *FAST, '--out', str(f)], ['study', 'main', '--tiny', '--out', str(f)]):
        with pytest.raises(SystemExit) as e: cli.main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and f'--out {f} is a file, not a folder' in err and 'Traceback' not in err, err
    assert f.read_text() == 'not a folder'
    if os.geteuid() != 0:  # (root may write anywhere)
        locked = tmp_path / 'locked'; locked.mkdir(mode=0o500)
        with pytest.raises(SystemExit): cli.main([*FAST, '--out', str(locked / 'run')])
        assert 'is not writable by this user' in capsys.readouterr().err
