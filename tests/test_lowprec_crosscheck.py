"""Cross-checks of `eb_study.lowprec.quantize`: against a plain-Python reference written from the formats' definition
(element by element with `math.frexp`, independent of the vectorised torch code), against QPyTorch — the library the
paper's code used — and CPU against GPU. Only the tests that take the `qtorch_quant` fixture need QPyTorch; they skip
when it cannot be imported."""
import math

import numpy as np
import pytest
import torch

from eb_study.lowprec import quantize


def reference_bfp(block: np.ndarray, wl: int, saturate: bool = True) -> np.ndarray:
    """Nearest-rounding BFP of one block: step 2**(floor(log2 max|x|) - (wl-2)); a value rounded past the largest code
    2**(wl-1) - 1 is clamped to it (saturate) or the step is doubled (not saturate); ties round up, as QPyTorch."""
    m, top = float(np.abs(block).max()), 2 ** (wl - 1) - 1
    if m == 0: return np.zeros_like(block)
    e = math.frexp(m)[1] - 1                      # m = f * 2**(e+1), f in [0.5, 1)  =>  floor(log2 m) = e
    step = 2.0 ** (e - (wl - 2))
    up = lambda v: math.floor(v + 0.5)                       # exact here: v is a multiple of a power of two
    if not saturate and up(m / step) > top: step *= 2
    return np.array([min(max(up(v / step), -top), top) * step for v in block.ravel()]).reshape(block.shape)


def reference_fixed(x: np.ndarray, wl: int, fl: int) -> np.ndarray:
    """Nearest-rounding fixed point: step 2**-fl, two's complement range, ties to even (Python's round)."""
    lo, hi = -2 ** (wl - 1), 2 ** (wl - 1) - 1
    return np.array([min(max(round(v * 2 ** fl), lo), hi) / 2 ** fl for v in x.ravel()]).reshape(x.shape)


def hard_cases(wl: int, seed: int = 0) -> torch.Tensor:
    """Rows of very different scale, exact powers of two, and maxima that round past the top code."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(12, 40, generator=g, dtype=torch.float64) * torch.logspace(-6, 6, 12, dtype=torch.float64)[:, None]
    x[3, :4] = torch.tensor([1.0, 0.5, -2.0, 0.25], dtype=torch.float64)
    x[5] = torch.full((40,), 1.0 - 2.0 ** -(wl + 1), dtype=torch.float64)   # a max that rounds up to the next power of 2
    x[7, 0] = -(1.0 - 2.0 ** -(wl + 1))                                      # the same, negative
    x[9, :6] = torch.tensor([4.0, 0.5, -0.5, 1.5, -1.5, 2.5], dtype=torch.float64) * 2.0 ** (4 - wl)  # exact ties
    return x


@pytest.mark.parametrize('wl', [3, 4, 8, 11])
@pytest.mark.parametrize('saturate', [True, False])
def test_bfp_matches_reference(wl, saturate):
    x = hard_cases(wl, wl)
    q = quantize(x, wl, 'bfp', 'nearest', dim=0, saturate=saturate).numpy()
    np.testing.assert_array_equal(q, np.stack([reference_bfp(row, wl, saturate) for row in x.numpy()]))
    whole = quantize(x, wl, 'bfp', 'nearest', saturate=saturate).numpy()          # one block for the whole tensor
    np.testing.assert_array_equal(whole, reference_bfp(x.numpy(), wl, saturate))


@pytest.mark.parametrize('wl, fl', [(4, 1), (8, 4), (8, 0), (12, 9), (8, -2)])
def test_fixed_matches_reference(wl, fl):
    x = torch.randn(500, generator=torch.Generator().manual_seed(fl + 10), dtype=torch.float64) * 2.0 ** (wl - fl - 1)
    np.testing.assert_array_equal(quantize(x, wl, 'fixed', fl=fl).numpy(), reference_fixed(x.numpy(), wl, fl))


@pytest.fixture(scope='module')
def qtorch_quant():
    """QPyTorch's `qtorch.quant`, imported only by the tests that compare with it, or a skip saying why it is missing:
    it is a development dependency whose C++ kernels compile (g++ and ninja) on first import, which can fail."""
    try:
        import qtorch.quant
    except Exception as e:                                         # ImportError, or the compiler's RuntimeError/OSError
        pytest.skip(f'QPyTorch (qtorch) cannot be imported: {type(e).__name__}: {str(e)[:300]}')
    return qtorch.quant


# QPyTorch's nearest BFP rounding adds 6 * 2**E (E = floor(log2 M), M the block's largest magnitude) to x in float32,
# then adds half a step to the bits and truncates. The float32 add already rounds x to a multiple of 2**(E-21), so a
# value at most 2**(E-22) below the midpoint between two codes lands on the midpoint and is rounded up, where
# `quantize` rounds the exact x down. An element is "at a tie" when it lies within TIE_TOL * 2**E of such a midpoint
# (either side; 2**E <= M < 2**(E+1)), i.e. within 2**(wl-24) steps of it.
TIE_TOL = 2.0 ** -22


def block_scale(x: torch.Tensor, dim: int | None) -> torch.Tensor:
    """2**floor(log2 M) for each element's block (M: the block's largest magnitude), in float64, broadcastable to `x`."""
    others = [d for d in range(x.ndim) if dim is None or d != dim % x.ndim]
    m = x.double().abs().amax(dim=others, keepdim=True)
    return torch.ldexp(torch.ones_like(m), torch.frexp(m).exponent - 1)


def assert_equal_but_ties(x: torch.Tensor, wl: int, dim: int | None, ours: torch.Tensor, theirs: torch.Tensor) -> int:
    """Every element of `ours` and `theirs` (nearest BFP of `x`) is equal, except elements of `x` at a rounding tie
    (within TIE_TOL * 2**E of the midpoint between two codes), where QPyTorch's is one step (2**(E-(wl-2))) higher.
    Returns the number of such elements."""
    scale = block_scale(x, dim).expand_as(x)
    step = scale * 2.0 ** -(wl - 2)
    y = x.double() / step                                          # exact: a float32 over a power of two
    tie = (y - torch.floor(y) - 0.5).abs() * step <= TIE_TOL * scale
    diff = ours != theirs
    off = diff & ~tie
    assert not off.any(), f'{int(off.sum())} elements not at a tie differ: x={x[off][:5].tolist()}, ours={ours[off][:5].tolist()}, theirs={theirs[off][:5].tolist()}'
    assert torch.equal(theirs[diff].double() - ours[diff].double(), step[diff]), 'a tie element differs by other than one step up'
    return int(diff.sum())


def test_tie_check_can_fail():
    """The check above rejects a difference off a tie, and a tie that differs by other than one step."""
    x = torch.tensor([[1.0, 0.3, 0.625 - 2.0 ** -23]])            # wl=4, E=0: step 0.25; x[0, 2] is 2**-23 below a midpoint
    ours = quantize(x, 4, dim=0)
    assert ours[0, 2] == 0.5
    assert_equal_but_ties(x, 4, 0, ours, ours)
    tie_up = ours.clone(); tie_up[0, 2] += 0.25                   # what QPyTorch returns there
    assert assert_equal_but_ties(x, 4, 0, ours, tie_up) == 1
    for bad in ((0, 1, 0.25), (0, 2, 0.5), (0, 2, -0.25)):         # off a tie; two steps; one step down
        theirs = ours.clone(); theirs[bad[:2]] += bad[2]
        with pytest.raises(AssertionError): assert_equal_but_ties(x, 4, 0, ours, theirs)


@pytest.mark.parametrize('wl', [3, 4, 6, 8, 11])
def test_nearest_matches_qtorch_on_hard_cases(wl, qtorch_quant):
    """The hand-built cases (exact ties, saturation, very different scales) agree element for element."""
    x = hard_cases(wl, 100 + wl).float()
    for dim, qdim in ((0, 0), (None, -1)):                        # per row; one block (QPyTorch spells it dim=-1)
        ours = quantize(x, wl, 'bfp', 'nearest', dim=dim)
        theirs = qtorch_quant.block_quantize(x, wl, dim=qdim, rounding='nearest')
        assert torch.equal(ours, theirs), (wl, dim, (ours != theirs).sum().item())
    if wl < 11:                                                   # the non-saturating rule differs exactly there
        assert not torch.equal(quantize(x, wl, 'bfp', dim=0, saturate=False),
                               qtorch_quant.block_quantize(x, wl, dim=0, rounding='nearest'))
    for fl in (wl - 2, 2, 0):
        y = x / x.abs().amax(1, keepdim=True) * 2.0 ** (wl - fl)   # spans the range and beyond: saturation too
        assert torch.equal(quantize(y, wl, 'fixed', fl=fl), qtorch_quant.fixed_point_quantize(y, wl, fl, rounding='nearest'))


@pytest.mark.parametrize('seed', [0, 1, 2, 3])
@pytest.mark.parametrize('wl', [4, 8])
def test_nearest_matches_qtorch_on_random_inputs(wl, seed, qtorch_quant):
    """Fresh random tensors, several shapes and block layouts: BFP equal except at rounding ties (there QPyTorch is one
    step up), and those are rare; fixed point equal element for element."""
    g = torch.Generator().manual_seed(1000 * wl + seed)
    n = ties = 0
    for shape, dim in (((512, 256), 0), ((512, 256), None), ((64, 32, 3, 3), 0), ((64, 32, 3, 3), 1), ((1 << 17,), None)):
        x = torch.randn(shape, generator=g)
        if seed % 2: x *= torch.exp(3 * torch.randn(shape[0], *[1] * (len(shape) - 1), generator=g))  # rows of very different scale
        ours = quantize(x, wl, 'bfp', 'nearest', dim=dim)
        theirs = qtorch_quant.block_quantize(x, wl, dim=-1 if dim is None else dim, rounding='nearest')
        n, ties = n + x.numel(), ties + assert_equal_but_ties(x, wl, dim, ours, theirs)
        for fl in (wl - 2, 0):
            y = x / x.abs().max() * 2.0 ** (wl - fl - 1) * 1.2      # the whole range, and saturation
            assert torch.equal(quantize(y, wl, 'fixed', fl=fl), qtorch_quant.fixed_point_quantize(y, wl, fl, rounding='nearest'))
    assert ties / n < 1e-3, (ties, n)


@pytest.mark.parametrize('wl', [4, 8])
def test_stochastic_matches_qtorch_in_the_mean(wl, qtorch_quant):
    """Stochastic rounding draws different random numbers, so compare the mean of many roundings per element."""
    g = torch.Generator().manual_seed(wl)
    row = torch.randn(16, generator=g)
    row[0] = 1.0 - 2.0 ** -(wl + 2)                                # a block maximum near the top code
    reps = row.repeat(20000, 1)                                   # 20000 blocks (rows), each the same values
    torch.manual_seed(1)                                           # QPyTorch draws from torch's global generator
    for ours, theirs in (
            (quantize(reps, wl, 'bfp', 'stochastic', dim=0, generator=torch.Generator().manual_seed(2)),
             qtorch_quant.block_quantize(reps, wl, dim=0, rounding='stochastic')),
            (quantize(reps, wl, 'fixed', 'stochastic', fl=wl - 2, generator=torch.Generator().manual_seed(3)),
             qtorch_quant.fixed_point_quantize(reps, wl, wl - 2, rounding='stochastic'))):
        se = torch.sqrt((ours.var(0) + theirs.var(0)) / len(reps))
        assert ((ours.mean(0) - theirs.mean(0)).abs() <= 5 * se + 1e-7).all(), (ours.mean(0), theirs.mean(0))
        assert set(ours.unique().tolist()) <= set(theirs.unique().tolist()) | set(quantize(reps[:1], wl, 'bfp', dim=0).flatten().tolist())


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
def test_gpu_matches_cpu():
    x = torch.randn(64, 32, 3, 3, generator=torch.Generator().manual_seed(0)) * 3
    for kw in (dict(dim=0), dict(), dict(kind='fixed', fl=4), dict(dim=0, saturate=False)):
        assert torch.equal(quantize(x.cuda(), 8, **kw).cpu(), quantize(x, 8, **kw))
    # stochastic rounding on the GPU: on the grid of nearest-rounding neighbours and unbiased
    reps = x[:1].flatten().repeat(4000, 1).cuda()
    qs = quantize(reps, 8, rounding='stochastic', dim=0, generator=torch.Generator('cuda').manual_seed(1), saturate=False)
    step = (quantize(reps[:1], 8, dim=0) - reps[:1]).abs().max() * 2 + 1e-12
    assert ((qs - reps).abs() <= 2 * step).all()
    assert torch.allclose(qs.mean(0), reps[0], atol=float(step) / 10)
