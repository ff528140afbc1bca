r"""Decoders: latent -> adjacency logits and node offsets.

* :class:`AdjacencyDecoder` reads the topology-specific and shared latent dims and outputs the
  351 upper-triangle logits; :meth:`AdjacencyDecoder.dense` mirrors them into a symmetric
  ``[B, 27, 27]`` matrix with no diagonal (symmetric by construction). Trained with binary
  cross-entropy on the logits.
* :class:`OffsetDecoder` reads the shared and geometry-specific dims and outputs the 27 free-dof
  offsets bounded to ``[-0.5, 0.5]`` by ``0.5 tanh``.
"""
from __future__ import annotations

import torch
from torch import nn

from ..design_space import NUM_FREE_DOFS, NUM_NODES, NUM_PAIRS, TRIU_I, TRIU_J
from .encoder import mlp

__all__ = ["AdjacencyDecoder", "OffsetDecoder", "dense_adjacency"]


def dense_adjacency(triu: torch.Tensor, diagonal: float = 0.0) -> torch.Tensor:
    """``[B, 351]`` upper-triangle values -> symmetric ``[B, 27, 27]`` (diagonal filled)."""
    B = triu.shape[0]
    out = triu.new_full((B, NUM_NODES, NUM_NODES), diagonal)
    i = torch.as_tensor(TRIU_I.copy(), device=triu.device)
    j = torch.as_tensor(TRIU_J.copy(), device=triu.device)
    out[:, i, j] = triu
    out[:, j, i] = triu
    return out


class AdjacencyDecoder(nn.Module):
    """``z [B, d_in] -> logits [B, 351]``.

    Args:
        d_in: topology-specific + shared latent dims.
        hidden: hidden widths (default ``(256, 512)``).
    """

    def __init__(self, d_in: int, hidden=(256, 512)):
        super().__init__()
        self.net = mlp([d_in, *hidden, NUM_PAIRS])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)

    @staticmethod
    def dense(logits: torch.Tensor) -> torch.Tensor:
        """Symmetric ``[B, 27, 27]`` logits, ``-inf`` on the diagonal (no self-loops)."""
        return dense_adjacency(logits, diagonal=float("-inf"))


class OffsetDecoder(nn.Module):
    """``z [B, d_in] -> offsets [B, 27]`` in ``[-0.5, 0.5]``.

    Args:
        d_in: shared + geometry-specific latent dims.
        hidden: hidden widths (default ``(256, 256)``).
    """

    def __init__(self, d_in: int, hidden=(256, 256)):
        super().__init__()
        self.net = mlp([d_in, *hidden, NUM_FREE_DOFS])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.tanh(self.net(z))
