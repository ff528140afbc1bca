r"""Property predictor :math:`\mathcal{F}_\omega(\mu)`: latent mean -> normalised targets
(the 9 stiffness components, or the 13-point compression curve)."""
from __future__ import annotations

import torch
from torch import nn

from .encoder import mlp

__all__ = ["PropertyPredictor"]


class PropertyPredictor(nn.Module):
    """``mu [B, d] -> y [B, num_targets]``.

    Args:
        d_in: latent size.
        num_targets: 9 (stiffness) or 13 (curve).
        hidden: hidden widths (default ``(256, 256, 256)``).
    """

    def __init__(self, d_in: int, num_targets: int, hidden=(256, 256, 256)):
        super().__init__()
        self.net = mlp([d_in, *hidden, num_targets])

    def forward(self, mu: torch.Tensor) -> torch.Tensor:
        return self.net(mu)
