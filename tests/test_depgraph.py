"""Dependency-graph pruning (eb_study.depgraph) against the hand-written VGG/PreResNet plans, save/load of pruned
torchvision networks, and `eb-study --arch resnet18` end to end."""
import copy

import pytest
import torch

pytest.importorskip('torch_pruning')
from conftest import run_script, results
from eb_study.depgraph import prune_graph, coupled_groups
from eb_study.masking import bn_layers, channel_mask, apply_mask, masks_equal
from eb_study.models import vgg, preresnet, get_model, build_model, save_model, load_model
from eb_study.prune import prune_channels, count_flops, count_params, effective_mask
from eb_study.retrain import make_ticket


@torch.no_grad()
def randomize_bn(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for bn in bn_layers(model).values():
        c = bn.num_features
        bn.weight.copy_(torch.randn(c, generator=g)); bn.bias.copy_(0.2 * torch.randn(c, generator=g))
        bn.running_mean.copy_(0.2 * torch.randn(c, generator=g)); bn.running_var.copy_(0.5 + torch.rand(c, generator=g))
    return model.eval()


X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_vgg_plan_equals_dependency_graph():
    """In VGG no channels are coupled: the graph prunes the same tensors the plan copies, entry for entry."""
    torch.manual_seed(0)
    v = randomize_bn(vgg(11, width=0.25))
    mask = channel_mask(v, 0.5)
    assert all(len(g) == 1 for g in coupled_groups(v))
    plan, graph = prune_channels(v, mask), prune_graph(v, mask)
    sp, sg = plan.state_dict(), graph.state_dict()
    assert list(sp) == list(sg)
    for k in sp: assert torch.equal(sp[k], sg[k]), k
    with torch.no_grad(): assert torch.equal(plan(X), graph(X))


def test_preresnet_plan_agrees_with_dependency_graph():
    """PreResNet: with the stream's BN layers (bn1, bn) kept whole, the graph prunes bn2/bn3 exactly as the plan does;
    with them pruned only the plan is right (the graph route refuses: a pre-activation stream is not produced by its BN)."""
    torch.manual_seed(0)
    r = randomize_bn(preresnet(20, width=0.5), seed=1)
    mask = channel_mask(r, 0.5)
    inner = {n: (m if n.endswith(('bn2', 'bn3')) else torch.ones_like(m)) for n, m in mask.items()}
    plan, graph = prune_channels(r, inner), prune_graph(r, inner)
    sp, sg = plan.state_dict(), graph.state_dict()
    assert list(sp) == list(sg)
    for k in sp: assert torch.equal(sp[k], sg[k]), k
    assert 'config' not in graph.__dict__  # the graph's copy has no configuration to rebuild it from
    with torch.no_grad():
        torch.testing.assert_close(prune_channels(r, mask)(X), apply_mask(copy.deepcopy(r), mask)(X), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match='pre-activation'): prune_graph(r, mask)  # its stream BN follows a sum


@pytest.mark.parametrize('arch', ['resnet18', 'mobilenet_v2', 'efficientnet_b0', 'regnet_x_400mf', 'regnet_y_400mf'])
def test_torchvision_prune_save_load(arch, tmp_path):
    """Pruned torchvision networks equal their effectively-masked originals, cost what is counted, and save/load;
    `channel_mask` already gives the effective mask (coupled channels ranked once, grouped convs' blocks evened)."""
    width = 0.5 if arch == 'regnet_y_400mf' else 0.25   # RegNetY's groups of 8 channels at 0.25 hold 2: nothing to prune
    net = randomize_bn(get_model(arch, width=width, seed=0), seed=2)
    mask = channel_mask(net, 0.5)
    pruned = prune_channels(net, mask)
    eff = effective_mask(net, mask)
    assert masks_equal(eff, mask)
    with torch.no_grad():
        torch.testing.assert_close(pruned(X), apply_mask(copy.deepcopy(net), eff)(X), atol=1e-4, rtol=1e-4)
    assert count_params(pruned) < count_params(net) and count_flops(pruned) < count_flops(net)
    assert [b.num_features for b in bn_layers(pruned).values()] == [int(m.sum()) for m in eff.values()]
    back = load_model(save_model(pruned, tmp_path / 'p.pt')).eval()
    assert back.config == pruned.config and back.config['channels'] is not None
    with torch.no_grad(): assert torch.equal(back(X), pruned(X))
    fresh = make_ticket(net, mask, 'random', seed=3)        # a fresh initialisation of the pruned shapes
    assert [p.shape for p in fresh.parameters()] == [p.shape for p in pruned.parameters()]
    assert not torch.equal(next(fresh.parameters()), next(pruned.parameters()))
    again = prune_channels(pruned, channel_mask(pruned, 0.3))   # a pruned network prunes again
    assert count_flops(again) < count_flops(pruned) and build_model(again.config).config == again.config


@pytest.mark.parametrize('arch', ['resnet18', 'regnet_x_400mf'])
def test_cli_torchvision_end_to_end(arch, tmp_path):
    """`eb-study --arch resnet18` (and a RegNet, with grouped convolutions) runs search, prune, retrain, network slimming
    and the dense baseline on digits."""
    r = run_script('eb-study', '--arch', arch, '--width', '0.125', '--epochs', 2, '--length', 2, '--quiet',
                   '--out', tmp_path / 'runs')
    res = results(r.stdout)
    assert res['epochs'] == 2 and 0 <= res['ticket_acc'] <= 1 and res['ns_acc'] is not None and res['dense_acc'] is not None
    assert res['params_after'] < res['params_before'] and res['flops_after'] < res['flops_before']
    ticket = load_model(next((tmp_path / 'runs').glob('prune-*')) / 'ticket.pt')
    assert ticket.config['arch'] == arch and count_params(ticket) == res['params_after']
    if arch != 'resnet18': return
    bad = run_script('eb-study', '--arch', 'resnet19', '--epochs', 1, '--out', tmp_path / 'x', check=False)
    assert bad.returncode != 0 and 'resnet18' in bad.stderr
