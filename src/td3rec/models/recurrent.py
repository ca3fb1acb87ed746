"""A GRU written as an explicit time loop, for GRU4Rec and NARM.

``nn.GRU`` runs a fused kernel on CUDA (cuDNN) that supports neither double backward nor
``torch.func.functional_call`` reliably (it caches flattened weights); the distillation inner loop needs both.
On CPU the module calls PyTorch's GRU kernel with its own parameters (fast, and differentiable to any order);
on CUDA it runs the explicit loop. Both compute exactly the ``nn.GRU`` equations (gate order r, z, n) with ordinary tensor operations and
uses the same parameter names and shapes (``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ...), so state
dicts move between the two. Batch-first, unidirectional, zero initial state.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class GRU(nn.Module):
    """Multi-layer GRU over ``[B, L, input_size]`` returning the last layer's hidden states ``[B, L, hidden_size]``."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        for layer in range(num_layers):
            in_size = input_size if layer == 0 else hidden_size
            self.register_parameter(f"weight_ih_l{layer}", nn.Parameter(torch.empty(3 * hidden_size, in_size)))
            self.register_parameter(f"weight_hh_l{layer}", nn.Parameter(torch.empty(3 * hidden_size, hidden_size)))
            if bias:
                self.register_parameter(f"bias_ih_l{layer}", nn.Parameter(torch.empty(3 * hidden_size)))
                self.register_parameter(f"bias_hh_l{layer}", nn.Parameter(torch.empty(3 * hidden_size)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.GRU``'s default: every parameter ~ U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def layer_weights(self, layer: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``(weight_ih, weight_hh, bias_ih, bias_hh)`` of one layer (biases ``None`` without ``bias``)."""
        w_ih, w_hh = getattr(self, f"weight_ih_l{layer}"), getattr(self, f"weight_hh_l{layer}")
        if not self.bias:
            return w_ih, w_hh, None, None
        return w_ih, w_hh, getattr(self, f"bias_ih_l{layer}"), getattr(self, f"bias_hh_l{layer}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_cuda:
            # CPU: PyTorch's own GRU kernel is built from differentiable ops (any order) and ~20x faster
            weights = [w for layer in range(self.num_layers) for w in self.layer_weights(layer) if w is not None]
            h0 = x.new_zeros(self.num_layers, x.shape[0], self.hidden_size)
            out, _ = torch._VF.gru(x, h0, weights, self.bias, self.num_layers, 0.0, self.training, False, True)
            return out
        return self.loop_forward(x)

    def loop_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The explicit time loop (used on CUDA, where the fused kernel has no double backward)."""
        for layer in range(self.num_layers):
            x = self._run_layer(x, *self.layer_weights(layer))
        return x

    def _run_layer(self, x: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor,
                   b_ih: torch.Tensor | None, b_hh: torch.Tensor | None) -> torch.Tensor:
        # input projections of all steps at once; only the recurrent part is sequential
        gates_x = nn.functional.linear(x, w_ih, b_ih)
        h = x.new_zeros(x.shape[0], self.hidden_size)
        outputs = []
        for t in range(x.shape[1]):
            x_r, x_z, x_n = gates_x[:, t].chunk(3, dim=-1)
            h_r, h_z, h_n = nn.functional.linear(h, w_hh, b_hh).chunk(3, dim=-1)
            r = torch.sigmoid(x_r + h_r)
            z = torch.sigmoid(x_z + h_z)
            n = torch.tanh(x_n + r * h_n)
            h = n + z * (h - n)  # = (1 - z) * n + z * h
            outputs.append(h)
        return torch.stack(outputs, dim=1)
