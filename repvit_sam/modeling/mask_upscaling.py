"""SAM's ``output_upscaling`` and mask drawing on token-ordered pixel tiles.

Both transposed convolutions of the upscaling have kernel 2 and stride 2, so each is a matmul
that turns a pixel into a 2x2 block, and the LayerNorm2d is a layer norm over channels: a tile
of P image tokens becomes P x 16 sub-pixels without leaving token order. Mask logits are the
sub-pixels' features times each mask token's hypernetwork output; a gather then writes them in
row-major image order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class UpscalingMatmuls:
    """``output_upscaling`` (ConvT 2x2/2, LayerNorm2d, GELU, ConvT 2x2/2, GELU) as matmuls.

    The weights are rearranged once per instance; build one per decoding call so that weights
    loaded into the module afterwards are never stale.
    """

    def __init__(self, upscaling: nn.Sequential) -> None:
        conv1, self.norm, self.act1, conv2, self.act2 = upscaling
        self.w1 = conv1.weight.permute(0, 2, 3, 1).reshape(conv1.in_channels, -1)  # C x 4*C1
        self.b1 = conv1.bias.repeat(4)
        self.w2 = conv2.weight.permute(0, 2, 3, 1).reshape(conv2.in_channels, -1)  # C1 x 4*C2
        self.b2 = conv2.bias.repeat(4)
        self.hidden, self.out_channels = conv1.out_channels, conv2.out_channels

    def __call__(self, tokens: Tensor) -> Tensor:
        """BxPxC image tokens -> BxPx16xC2 features, sub-pixel (a1, b1, a2, b2) of each token
        lying at row 2*a1 + a2, column 2*b1 + b2 of its 4x4 block."""
        b, p, c = tokens.shape
        x = torch.addmm(self.b1, tokens.reshape(b * p, c), self.w1)
        norm = self.norm
        x = F.layer_norm(x.reshape(b, p, 4, -1), (self.hidden,), norm.weight, norm.bias, norm.eps)
        x = torch.addmm(self.b2, self.act1(x).reshape(b * p * 4, -1), self.w2)
        return self.act2(x.reshape(b, p, 16, self.out_channels))


def image_order(rows: int, width: int, device: torch.device) -> Tensor:
    """Indices that put ``rows`` grid rows of token-ordered sub-pixels into row-major image
    order: (16*rows*width,).

    A gather with them is several times faster than the equivalent 8-dimensional permute.
    """
    order = torch.arange(16 * rows * width, device=device)
    blocks = order.reshape(rows, width, 2, 2, 2, 2)  # i, j, a1, b1, a2, b2
    return blocks.permute(0, 2, 4, 1, 3, 5).reshape(-1)


def draw_masks(
    upscaling: UpscalingMatmuls,
    tiles: list[tuple[slice, Tensor]],
    hyper_in: Tensor,
    chosen: Tensor,
    size: tuple[int, int],
) -> Tensor:
    """Low-res logits of the chosen (prompt, mask token) pairs, drawn tile by tile.

    Args:
        upscaling: The decoder's upscaling.
        tiles: (token range of whole grid rows, BxPxC image tokens) pairs covering the grid.
        hyper_in: BxC2xK hypernetwork outputs of the K mask tokens.
        chosen: BxK bool.
        size: (h, w) of the token grid.

    Returns:
        Mx4hx4w logits, M = ``chosen.sum()``, in row-major order of ``chosen``.
    """
    prompt_index, token_index = chosen.nonzero(as_tuple=True)
    h, w = size
    masks = hyper_in.new_empty(len(prompt_index), 4 * h, 4 * w)
    orders: dict[int, Tensor] = {}
    for tile, tokens in tiles:
        features = upscaling(tokens)  # B x P x 16 x C2
        b, p = features.shape[:2]
        logits = features.reshape(b, p * 16, -1) @ hyper_in  # B x 16P x K
        selected = logits.transpose(1, 2)[prompt_index, token_index]  # M x 16P, token order
        if p not in orders:
            orders[p] = image_order(p // w, w, hyper_in.device)
        image_rows = masks[:, tile.start // w * 4 : tile.stop // w * 4]
        image_rows.copy_(selected.index_select(1, orders[p]).reshape(image_rows.shape))
    return masks
