import math

import torch
import torch.nn.functional as F

from tinylm.train.objectives import IGNORE_INDEX, cross_entropy_sum, next_token_loss


def test_chunked_cross_entropy_matches_torch_value_and_gradient():
    logits = torch.randn(300, 50, dtype=torch.float32, requires_grad=True)  # 300 rows: several chunks + a tail
    y = torch.randint(0, 50, (300,))
    y[::7] = IGNORE_INDEX
    ours = cross_entropy_sum(logits, y)
    (g_ours,) = torch.autograd.grad(ours, logits)
    ref = F.cross_entropy(logits, y, ignore_index=IGNORE_INDEX, reduction="sum")
    (g_ref,) = torch.autograd.grad(ref, logits)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-5, atol=1e-6)
    assert torch.all(g_ours[::7] == 0)


def test_chunked_cross_entropy_bf16_gradient_keeps_dtype():
    logits = torch.randn(100, 40).bfloat16().requires_grad_()
    y = torch.randint(0, 40, (100,))
    cross_entropy_sum(logits, y).backward()
    assert logits.grad.dtype == torch.bfloat16
    ref = torch.softmax(logits.detach().float(), -1)
    ref[torch.arange(100), y] -= 1
    torch.testing.assert_close(logits.grad.float(), ref, atol=1e-2, rtol=0)


class FixedLogits(torch.nn.Module):
    """A stub 'model' that ignores its input and returns given logits (B, T, V)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.nn.Parameter(logits)

    def forward(self, x):
        return self.logits


def test_next_token_loss_equals_hand_computation():
    # two positions, vocab 2: p(target) = softmax([0, ln 3])[1] = 3/4 and softmax([0, 0])[0] = 1/2
    logits = torch.tensor([[[0.0, math.log(3.0)], [0.0, 0.0]]])
    loss, n = next_token_loss(FixedLogits(logits), (None, torch.tensor([[1, 0]])))
    assert n.item() == 2
    assert abs(loss.item() - (-math.log(0.75) - math.log(0.5)) / 2) < 1e-6
    # masking the second position leaves only the first term
    loss, n = next_token_loss(FixedLogits(logits), (None, torch.tensor([[1, IGNORE_INDEX]])))
    assert n.item() == 1 and abs(loss.item() + math.log(0.75)) < 1e-6


def test_fully_masked_batch_gives_finite_zero_loss_and_zero_gradient():
    model = FixedLogits(torch.randn(2, 5, 11))
    loss, n = next_token_loss(model, (None, torch.full((2, 5), IGNORE_INDEX)))
    loss.backward()
    assert n.item() == 0 and loss.item() == 0.0 and torch.isfinite(loss)
    assert torch.all(model.logits.grad == 0)
