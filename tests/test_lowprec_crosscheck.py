"""Cross-checks of `eb_study.lowprec.quantize` against a plain-Python reference written from the format's definition,
element by element with `math.frexp` — independent of the vectorised torch code — and CPU/GPU agreement."""
import math

import numpy as np
import pytest
import torch

from eb_study.lowprec import quantize


def reference_bfp(block: np.ndarray, wl: int) -> np.ndarray:
    """Nearest-rounding BFP of one block: step 2**(floor(log2 max|x|) - (wl-2)), doubled if the max would round past
    the largest code 2**(wl-1) - 1; round half to even."""
    m = float(np.abs(block).max())
    if m == 0: return np.zeros_like(block)
    e = math.frexp(m)[1] - 1                      # m = f * 2**(e+1), f in [0.5, 1)  =>  floor(log2 m) = e
    step = 2.0 ** (e - (wl - 2))
    if round(m / step) > 2 ** (wl - 1) - 1: step *= 2   # Python's round() is half-to-even, like torch.round
    return np.array([round(v / step) * step for v in block.ravel()], dtype=np.float64).reshape(block.shape)


def reference_fixed(x: np.ndarray, wl: int, fl: int) -> np.ndarray:
    lo, hi = -2 ** (wl - 1), 2 ** (wl - 1) - 1
    return np.array([min(max(round(v * 2 ** fl), lo), hi) / 2 ** fl for v in x.ravel()]).reshape(x.shape)


@pytest.mark.parametrize('wl', [3, 4, 8, 11])
def test_bfp_matches_reference(wl):
    g = torch.Generator().manual_seed(wl)
    # rows of very different scale, including exact powers of two and values at rounding ties
    x = torch.randn(12, 40, generator=g, dtype=torch.float64) * torch.logspace(-6, 6, 12, dtype=torch.float64)[:, None]
    x[3, :4] = torch.tensor([1.0, 0.5, -2.0, 0.25], dtype=torch.float64)
    x[5] = torch.full((40,), 1.0 - 2.0 ** -(wl + 1), dtype=torch.float64)   # a max that rounds up to the next power of 2
    q = quantize(x, wl, 'bfp', 'nearest', dim=0).numpy()
    ref = np.stack([reference_bfp(row, wl) for row in x.numpy()])
    np.testing.assert_array_equal(q, ref)
    whole = quantize(x, wl, 'bfp', 'nearest').numpy()             # one block for the whole tensor
    np.testing.assert_array_equal(whole, reference_bfp(x.numpy(), wl))


@pytest.mark.parametrize('wl, fl', [(4, 1), (8, 4), (8, 0), (12, 9), (8, -2)])
def test_fixed_matches_reference(wl, fl):
    x = torch.randn(500, generator=torch.Generator().manual_seed(fl + 10), dtype=torch.float64) * 2.0 ** (wl - fl - 1)
    np.testing.assert_array_equal(quantize(x, wl, 'fixed', fl=fl).numpy(), reference_fixed(x.numpy(), wl, fl))


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
def test_gpu_matches_cpu():
    x = torch.randn(64, 32, 3, 3, generator=torch.Generator().manual_seed(0)) * 3
    for kw in (dict(dim=0), dict(), dict(kind='fixed', fl=4)):
        assert torch.equal(quantize(x.cuda(), 8, **kw).cpu(), quantize(x, 8, **kw))
    # stochastic rounding on the GPU: on the grid of nearest-rounding neighbours and unbiased
    reps = x[:1].flatten().repeat(4000, 1).cuda()
    qs = quantize(reps, 8, rounding='stochastic', dim=0, generator=torch.Generator('cuda').manual_seed(1))
    step = (quantize(reps[:1], 8, dim=0) - reps[:1]).abs().max() * 2 + 1e-12
    assert ((qs - reps).abs() <= 2 * step).all()
    assert torch.allclose(qs.mean(0), reps[0], atol=float(step) / 10)
