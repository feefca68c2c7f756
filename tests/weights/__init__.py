"""Tests of interp.weights: shared small models (the one-thread fixture is ``one_thread`` of tests/conftest.py)."""

from __future__ import annotations

import torch
from torch import nn


class SmallNet(nn.Module):
    """Input shift (a bias-only block) -> Linear -> tanh -> Linear; five parameter blocks."""

    def __init__(self, d_in: int = 8, d_hidden: int = 16, d_out: int = 4) -> None:
        super().__init__()
        self.shift = nn.Parameter(torch.zeros(d_in))
        self.fc1 = nn.Linear(d_in, d_hidden)
        self.fc2 = nn.Linear(d_hidden, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.fc1(x + self.shift)))


def perturbed(model: nn.Module, scale: float, seed: int) -> nn.Module:
    """A 'fine-tuned' copy: every float parameter and buffer moved by Gaussian noise."""
    import copy

    out = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in list(out.parameters()) + [b for b in out.buffers() if b.is_floating_point()]:
            tensor.add_(torch.randn(tensor.shape, generator=generator) * scale)
    return out
