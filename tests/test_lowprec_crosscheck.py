"""Cross-checks of `eb_study.lowprec.quantize`: against a plain-Python reference written from the formats' definition
(element by element with `math.frexp`, independent of the vectorised torch code), against QPyTorch — the library the
paper's code used — and CPU against GPU."""
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


# QPyTorch compiles its CPU kernels with g++ (and ninja) on first import; it is a development dependency.
qtorch_quant = pytest.importorskip('qtorch.quant', reason='QPyTorch (qtorch) is not installed')


@pytest.mark.parametrize('wl', [3, 4, 6, 8, 11])
def test_nearest_matches_qtorch_element_for_element(wl):
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


@pytest.mark.parametrize('wl', [4, 8])
def test_stochastic_matches_qtorch_in_the_mean(wl):
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
