"""Convolution followed by BatchNorm, the re-parameterisable unit of RepViT."""

from __future__ import annotations

import torch
from torch import nn


def fold_batch_norm(
    weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm2d
) -> tuple[torch.Tensor, torch.Tensor]:
    """Folds an inference-mode BatchNorm into the convolution that precedes it.

    The arithmetic runs in float64 on the CPU and the result stays there: callers round to
    the model's dtype once, when they build the fused convolution, so a fused model differs
    from the unfused one by that single rounding of its parameters rather than by a chain
    of float32 steps.

    Args:
        weight: Convolution weight, OxIxKxK.
        bias: Convolution bias, O, or None for a bias-free convolution.
        bn: The BatchNorm applied to the convolution's output (running statistics are used).

    Returns:
        The float64 weight (OxIxKxK) and bias (O) of a single convolution computing
        ``bn(conv(x))``.
    """
    gamma, beta, mean, var = (
        float64_on_cpu(t) for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var)
    )
    scale = gamma / torch.sqrt(var + bn.eps)
    fused_weight = float64_on_cpu(weight) * scale[:, None, None, None]
    conv_bias = float64_on_cpu(bias) if bias is not None else torch.zeros_like(mean)
    fused_bias = beta + (conv_bias - mean) * scale
    return fused_weight, fused_bias


def float64_on_cpu(t: torch.Tensor) -> torch.Tensor:
    """``t`` as float64 on the CPU (meta tensors, which hold no values, stay on meta)."""
    # Some accelerators (MPS) have no float64, so the folding arithmetic runs on the CPU.
    return t.detach().to("meta" if t.is_meta else "cpu", torch.float64)


def conv_from_weights(template: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor) -> nn.Conv2d:
    """A biased ``nn.Conv2d`` with the geometry, device and dtype of ``template`` and the given
    parameters (rounded to that dtype)."""
    conv = nn.Conv2d(
        template.in_channels,
        template.out_channels,
        template.kernel_size,
        stride=template.stride,
        padding=template.padding,
        dilation=template.dilation,
        groups=template.groups,
        bias=True,
        device=template.weight.device,
        dtype=template.weight.dtype,
    )
    conv.weight.copy_(weight)
    conv.bias.copy_(bias)
    return conv


class Conv2dBN(nn.Sequential):
    """A bias-free convolution ``c`` followed by BatchNorm ``bn`` (keys ``c.*``, ``bn.*``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
        bn_weight_init: float = 1.0,
    ) -> None:
        super().__init__()
        self.add_module(
            "c",
            nn.Conv2d(
                in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False
            ),
        )
        self.add_module("bn", nn.BatchNorm2d(out_channels))
        nn.init.constant_(self.bn.weight, bn_weight_init)
        nn.init.constant_(self.bn.bias, 0.0)

    @torch.no_grad()
    def fused_parameters(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The float64 weight and bias of the one convolution this module computes."""
        return fold_batch_norm(self.c.weight, None, self.bn)

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        """Returns one convolution computing this module in inference mode."""
        return conv_from_weights(self.c, *self.fused_parameters())
