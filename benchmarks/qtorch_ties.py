"""How often `eb_study.lowprec.quantize` (nearest rounding) differs from QPyTorch's `qtorch.quant` on random inputs,
and whether every difference is the known one. Writes nbs/results/lowprec/qtorch_ties.json (the numbers that
nbs/07a_lowprec.ipynb and nbs/index.ipynb quote) and prints a summary.

    OMP_NUM_THREADS=1 python benchmarks/qtorch_ties.py [--seeds 10] [--out nbs/results/lowprec/qtorch_ties.json]

Block floating point: QPyTorch adds 6 * 2**E (E = floor(log2 M), M the block's largest magnitude) to x in float32
before rounding, which moves a value at most 2**(E-22) below the midpoint between two codes onto it, and then rounds
the midpoint up. So the two should differ exactly at elements with 0 < midpoint - x <= 2**(E-22), QPyTorch one step
(2**(E-(wl-2))) higher. A "violation" is a differing element that is not at such a tie or not one step up; the
script counts them (expected 0) and also counts the tie elements that do not differ (expected: only those whose
midpoint is above the top code, where both saturate). Fixed point: the number of differing elements, expected only
at the one value x * 2**fl = 0.5 + 2**-24 (see fixed_compare), and the violations (differences elsewhere; expected 0).

Inputs: fresh float32 tensors per seed (one generator per seed and distribution, the same tensors for every word
length), in six shapes and block layouts. Gaussian: torch.randn, and for odd seeds each index along dimension 0 is
scaled by exp(3 N(0,1)) (rows of very different scale). Uniform: U[-1, 1), unscaled. Runs on one CPU thread.
"""
import argparse, json, os, platform, subprocess, time
from importlib.metadata import version
from pathlib import Path

import torch

from eb_study.lowprec import quantize

ROOT = Path(__file__).resolve().parents[1]
LAYOUTS = [((4096, 256), 0), ((4096, 256), None), ((64, 128, 3, 3), 0), ((64, 128, 3, 3), 1), ((1 << 20,), None),
           ((512, 2048), 1)]                                    # (shape, dim); dim None: the whole tensor is one block
BFP_WLS = (4, 8)
FIXED = [(4, 2), (4, 1), (4, 0), (8, 6), (8, 4), (8, 0), (12, 10), (12, 6), (12, 0)]     # (wl, fl)
FIXED_ODD = 0.5 + 2.0 ** -24                                   # see fixed_compare
DIST_SEED_BASE = {'gaussian': 0, 'uniform': 100}              # generator seed = base + seed


def draw(dist: str, seed: int):
    """The tensors of one seed: one per layout, drawn in order from one generator."""
    g = torch.Generator().manual_seed(DIST_SEED_BASE[dist] + seed)
    for shape, dim in LAYOUTS:
        if dist == 'gaussian':
            x = torch.randn(shape, generator=g)
            if seed % 2: x *= torch.exp(3 * torch.randn(shape[0], *[1] * (len(shape) - 1), generator=g))
        else:
            x = torch.rand(shape, generator=g) * 2 - 1
        yield shape, dim, x


def bfp_compare(x: torch.Tensor, wl: int, dim, qquant) -> dict:
    ours = quantize(x, wl, 'bfp', 'nearest', dim=dim)
    theirs = qquant.block_quantize(x, wl, dim=-1 if dim is None else dim, rounding='nearest')
    others = [d for d in range(x.ndim) if dim is None or d != dim % x.ndim]
    m = x.double().abs().amax(dim=others, keepdim=True)
    scale = torch.ldexp(torch.ones_like(m), torch.frexp(m).exponent - 1).expand_as(x)    # 2**E per element's block
    step = scale * 2.0 ** -(wl - 2)
    xd = x.double()
    gap = (torch.floor(xd / step) + 0.5) * step - xd           # midpoint above x minus x: exact where it matters
    tie = (gap > 0) & (gap <= scale * 2.0 ** -22)
    diff = ours != theirs
    one_up = (theirs.double() - ours.double()) == step
    return dict(elements=x.numel(), differing=int(diff.sum()), violations=int((diff & ~(tie & one_up)).sum()),
                ties=int(tie.sum()), ties_equal=int((tie & ~diff).sum()),
                ties_equal_saturated=int((tie & ~diff & (ours.double().abs() == (2 ** (wl - 1) - 1) * step)).sum()))


def fixed_compare(y: torch.Tensor, wl: int, fl: int, qquant) -> dict:
    """QPyTorch's nearest fixed point computes nearbyint((y * 2**fl + 0.5f) - 0.5) with the first add in float32: at
    y * 2**fl = 0.5 + 2**-24 (one float32 value) the sum rounds (half to even) to 1.0, so the result is nearbyint(0.5)
    = 0 where the nearest code is 1. Elsewhere that add is exact or cannot move a value across a half-integer. A
    violation is a differing element not at that value or not 0 against 2**-fl."""
    ours, theirs = quantize(y, wl, 'fixed', fl=fl), qquant.fixed_point_quantize(y, wl, fl, rounding='nearest')
    odd = torch.ldexp(y.double(), torch.tensor(fl)) == FIXED_ODD
    diff = ours != theirs
    ok = odd & (theirs == 0) & (ours.double() == 2.0 ** -fl)
    return dict(elements=y.numel(), differing=int(diff.sum()), violations=int((diff & ~ok).sum()),
                at_odd_value=int(odd.sum()), at_odd_value_equal=int((odd & ~diff).sum()))


def git(*args) -> subprocess.CompletedProcess:
    return subprocess.run(['git', '-C', str(ROOT), *args], capture_output=True, text=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--seeds', type=int, default=10, help='seeds per distribution (default 10)')
    ap.add_argument('--out', default=str(ROOT / 'nbs/results/lowprec/qtorch_ties.json'))
    args = ap.parse_args()
    torch.set_num_threads(1)
    import qtorch.quant as qquant                              # compiles its C++ kernels on first import
    t0 = time.perf_counter()
    keys = ['elements', 'differing', 'violations', 'ties', 'ties_equal', 'ties_equal_saturated']
    bfp = {f'{d}_wl{wl}': dict(distribution=d, wl=wl, **{k: 0 for k in keys}, by_layout=[dict(shape=list(s), dim=dm, elements=0, differing=0) for s, dm in LAYOUTS])
           for d in DIST_SEED_BASE for wl in BFP_WLS}
    fkeys = ['elements', 'differing', 'violations', 'at_odd_value', 'at_odd_value_equal']
    fixed = {f'wl{wl}_fl{fl}': dict(wl=wl, fl=fl, **{k: 0 for k in fkeys}) for wl, fl in FIXED}
    for dist in DIST_SEED_BASE:
        for seed in range(args.seeds):
            for i, (shape, dim, x) in enumerate(draw(dist, seed)):
                for wl in BFP_WLS:
                    r, case = bfp_compare(x, wl, dim, qquant), bfp[f'{dist}_wl{wl}']
                    for k in keys: case[k] += r[k]
                    for k in ('elements', 'differing'): case['by_layout'][i][k] += r[k]
                if dist == 'gaussian':                         # fixed point: the whole range and beyond (saturation)
                    for wl, fl in FIXED:
                        y = x / x.abs().max() * 2.0 ** (wl - fl - 1) * 1.2
                        r = fixed_compare(y, wl, fl, qquant)
                        for k in fkeys: fixed[f'wl{wl}_fl{fl}'][k] += r[k]
    for case in bfp.values():
        case['fraction'] = case['differing'] / case['elements']
        case['tie_window_fraction'] = 2.0 ** (case['wl'] - 24)  # 2**(E-22) over a step 2**(E-(wl-2))
    for case in fixed.values(): case['fraction'] = case['differing'] / case['elements']
    run_s = time.perf_counter() - t0

    head = git('rev-parse', 'HEAD').stdout.strip()
    script = Path(__file__).resolve().relative_to(ROOT).as_posix()
    result = dict(
        description='eb_study.lowprec.quantize (nearest rounding) against qtorch.quant.block_quantize / fixed_point_quantize '
                    '(rounding="nearest") on random float32 tensors; written by ' + script,
        config=dict(
            seeds=list(range(args.seeds)), generator_seed={d: f'{b} + seed' for d, b in DIST_SEED_BASE.items()},
            distributions=dict(gaussian='torch.randn; odd seeds: each index along dim 0 scaled by exp(3 * N(0,1))',
                               uniform='torch.rand * 2 - 1, i.e. U[-1, 1)'),
            layouts=[dict(shape=list(s), dim=d) for s, d in LAYOUTS], layout_note='dim null: the whole tensor is one block (QPyTorch dim=-1)',
            elements_per_seed=sum(torch.Size(s).numel() for s, _ in LAYOUTS),
            bfp_wls=list(BFP_WLS), fixed=[dict(wl=wl, fl=fl) for wl, fl in FIXED],
            fixed_inputs='the gaussian tensors, scaled to x / max|x| * 2**(wl-fl-1) * 1.2',
            fixed_rule='QPyTorch is expected to differ only at x * 2**fl == 0.5 + 2**-24 (it returns 0, the nearest code is '
                       '2**-fl: its float32 add of 0.5 rounds the value onto the tie, which then rounds to even); a fixed-point '
                       'violation is a differing element not there',
            tie_rule='an element is at a tie when 0 < midpoint - x <= 2**(E-22), E = floor(log2 M), M the block\'s largest '
                     'magnitude, midpoint = (floor(x/step) + 0.5) * step, step = 2**(E-(wl-2)); a violation is a differing '
                     'element not at a tie or where qtorch - ours != step',
            threads=torch.get_num_threads()),
        bfp=bfp, fixed=fixed,
        versions=dict(torch=torch.__version__, qtorch=version('qtorch'), python=platform.python_version()),
        commit=head,
        lowprec_differs_from_commit=git('diff', '--quiet', 'HEAD', '--', 'eb_study/lowprec.py').returncode != 0,
        script_committed=git('ls-files', '--error-unmatch', script).returncode == 0 and git('diff', '--quiet', 'HEAD', '--', script).returncode == 0,
    )
    out = Path(args.out); out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + '.tmp')
    tmp.write_text(json.dumps(result, indent=1) + '\n')
    os.replace(tmp, out)

    for k, c in bfp.items():
        print(f"BFP {k:13s} {c['differing']:6d} of {c['elements']:,} differ ({c['fraction']:.3g}; 2**(wl-24) = {c['tie_window_fraction']:.3g}); "
              f"violations {c['violations']}; ties equal {c['ties_equal']} (saturated {c['ties_equal_saturated']})")
    print('fixed point differing:', {k: c['differing'] for k, c in fixed.items()}, f"of {next(iter(fixed.values()))['elements']:,} each;",
          'at 0.5 + 2**-24:', {k: c['at_odd_value'] for k, c in fixed.items()}, '; violations', sum(c['violations'] for c in fixed.values()))
    print(f"commit {head[:10]}, lowprec.py differs from it: {result['lowprec_differs_from_commit']}; {run_s:.0f} s; wrote {out}")


if __name__ == '__main__':
    main()
