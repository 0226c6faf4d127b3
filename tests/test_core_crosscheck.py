"""Cross-checks of the EB core against independent implementations (numpy brute force, scipy)."""
import numpy as np
import pytest
import torch
from scipy.spatial.distance import hamming, pdist, squareform
from torch import nn

from eb_study.detector import EarlyBird, EBQueue
from eb_study.distance import distance_matrix, mask_distance
from eb_study.masking import bn_layers, channel_mask, flatten_mask


def random_bn_net(widths, seed):
    gen = torch.Generator().manual_seed(seed)
    layers, c = [], 3
    for w in widths:
        layers += [nn.Conv2d(c, w, 3, padding=1), nn.BatchNorm2d(w)]
        c = w
    net = nn.Sequential(*layers, nn.Flatten(), nn.LazyLinear(2))
    for bn in bn_layers(net).values():
        # a coarse grid of values: many ties across and within layers
        bn.weight.data = (torch.randint(-4, 5, bn.weight.shape, generator=gen) / 4).float()
    return net


def brute_force_mask(scales, ratio):
    """Independent statement of the rule: rank by (|γ|, position); protect each layer's largest (first on ties)."""
    flat = np.concatenate(scales)
    protected, start = set(), 0
    for s in scales:
        protected.add(start + int(np.argmax(s)))  # np.argmax: first maximum, as torch.argmax on CPU
        start += len(s)
    ranked = sorted(range(len(flat)), key=lambda i: (i in protected, flat[i], i))
    n_prune = min(round(ratio * len(flat)), len(flat) - len(scales))
    keep = np.ones(len(flat), bool)
    keep[ranked[:n_prune]] = False
    return keep


@pytest.mark.parametrize("seed", range(20))
def test_channel_mask_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    widths = rng.integers(1, 9, size=rng.integers(1, 5)).tolist()
    net = random_bn_net(widths, seed)
    scales = [bn.weight.detach().abs().numpy() for bn in bn_layers(net).values()]
    for ratio in (0.0, 0.1, 0.25, 0.5, 0.7, 0.9, 0.99):
        got = flatten_mask(channel_mask(net, ratio)).numpy()
        np.testing.assert_array_equal(got, brute_force_mask(scales, ratio), err_msg=f"ratio {ratio}")
        per_layer = channel_mask(net, ratio)
        assert all(m.any() for m in per_layer.values()), "a layer lost all its channels"


def test_channel_mask_pruned_fraction_is_exact():
    net = random_bn_net([16, 32, 64, 64], seed=0)
    n = 16 + 32 + 64 + 64
    for ratio in np.linspace(0, 0.95, 39):
        assert int((~flatten_mask(channel_mask(net, float(ratio)))).sum()) == round(ratio * n)


def test_distance_matches_scipy():
    rng = np.random.default_rng(0)
    masks = rng.random((30, 257)) < rng.random((30, 1))
    np.testing.assert_allclose(distance_matrix(list(masks)).numpy(), squareform(pdist(masks, 'hamming')), atol=1e-6)
    for a, b in zip(masks[:-1], masks[1:]):
        assert mask_distance(a, b) == pytest.approx(hamming(a, b))


def test_ebqueue_matches_direct_rule():
    """Emergence step equals the first t where the newest of the last l masks is within ε of all others."""
    rng = np.random.default_rng(1)
    for trial in range(30):
        n, T, l, eps = 50, 25, int(rng.integers(2, 7)), float(rng.choice([0.05, 0.1, 0.2]))
        masks, m = [], rng.random(n) < 0.5
        for t in range(T):
            flip = rng.random(n) < 0.4 * 0.75 ** t
            m = m ^ flip
            masks.append(m.copy())
        for mode in ('newest', 'consecutive'):
            q = EBQueue(length=l, threshold=eps, mode=mode)
            for mk in masks: q.push(mk)
            expected = None
            for t in range(l - 1, T):
                win = masks[t - l + 1:t + 1]
                pairs = [(win[-1], w) for w in win[:-1]] if mode == 'newest' else list(zip(win[:-1], win[1:]))
                if max(hamming(a, b) for a, b in pairs) < eps:
                    expected = t + 1
                    break
            assert q.emerged_at == expected, (trial, mode, l, eps)


def test_earlybird_state_is_weights_only_loadable(tmp_path):
    net = random_bn_net([8, 8], seed=3)
    eb = EarlyBird(ratios=(0.3, 0.5), keep_masks=True)
    for _ in range(3): eb.step(net)
    torch.save(eb.state_dict(), tmp_path / 'eb.pt')
    back = EarlyBird(ratios=(0.3, 0.5), keep_masks=True).load_state_dict(torch.load(tmp_path / 'eb.pt', weights_only=True))
    assert back.queues[0.5].steps == 3 and len(back.masks[0.3]) == 3
    assert back.queues[0.3].distances == eb.queues[0.3].distances
