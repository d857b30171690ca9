"""tinylm's Muon against torch.optim.Muon, and the Newton-Schulz iteration it is built on."""

import pytest
import torch

from tinylm.train.optim import Muon, newton_schulz


def _params(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(12, 20, generator=g)), torch.nn.Parameter(torch.randn(30, 8, generator=g))]


def _run(opt_cls, params, steps=4, **kw):
    opt = opt_cls(params, lr=0.02, weight_decay=0.1, momentum=0.95, nesterov=True, **kw)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g)
        opt.step()
    return [p.detach().clone() for p in params], opt


def test_muon_with_bf16_iteration_equals_torch_muon():
    ours, opt = _run(Muon, _params(), ns_dtype=torch.bfloat16)
    theirs, ref = _run(torch.optim.Muon, _params())
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # the same state layout: a torch Muon checkpoint loads into ours
    assert set(opt.state_dict()["state"][0]) == set(ref.state_dict()["state"][0]) == {"momentum_buffer"}


def test_muon_fp32_iteration_is_close_to_bf16():
    fp32, _ = _run(Muon, _params(), ns_dtype=torch.float32)
    bf16, _ = _run(Muon, _params(), ns_dtype=torch.bfloat16)
    start = _params()
    for a, b, w0 in zip(fp32, bf16, start):
        step = (a - w0).norm()
        assert (a - b).norm() < 0.05 * step  # differs only by the iteration's rounding


@pytest.mark.parametrize("shape", [(16, 40), (40, 16)])
def test_newton_schulz_orthogonalises(shape):
    G = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    X = newton_schulz(G, dtype=torch.float32)
    s = torch.linalg.svdvals(X)
    assert X.shape == G.shape and s.min() > 0.5 and s.max() < 1.3  # S' ~ Uniform(0.5, 1.5) band
    # the same singular vectors as G: X^T G (or G X^T) is symmetric positive definite
    M = X.T @ G if shape[0] >= shape[1] else G @ X.T
    torch.testing.assert_close(M, M.T, atol=1e-3, rtol=1e-3)
    assert torch.linalg.eigvalsh(0.5 * (M + M.T)).min() > 0


def test_muon_refuses_vectors():
    with pytest.raises(ValueError, match="2-D matrices"):
        Muon([torch.nn.Parameter(torch.zeros(5))])
