"""Single foreground points decoded up to their mask tokens, with masks drawn on demand.

Automatic masks and edge maps prompt a grid of points and keep only some of the 3 or 4
candidate masks per point: deciding on the predicted IoU before drawing any mask saves most of
the decoder's upscaling work.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .modeling.batched_decoder import BatchedMaskDecoder, ImageContext


@dataclass(frozen=True)
class PointDecode:
    """The decoder's state for B point prompts of one image, before any mask is drawn.

    Attributes:
        iou: BxT predicted IoU of each output token (T = 4; token 0 is the single-mask output,
            tokens 1..3 the multimask candidates).
        low_res_size: (h, w) of the logits ``logits`` draws (4x the embedding's grid).
    """

    iou: torch.Tensor
    decoder: BatchedMaskDecoder
    context: ImageContext
    mask_tokens: torch.Tensor
    keys: torch.Tensor

    @property
    def low_res_size(self) -> tuple[int, int]:
        return 4 * self.context.size[0], 4 * self.context.size[1]

    @torch.inference_mode()
    def logits(self, chosen: torch.Tensor, prompts: torch.Tensor | None = None) -> torch.Tensor:
        """Low-res mask logits of the chosen tokens.

        Args:
            chosen: BxT bool (or PxT with ``prompts``): the tokens to draw.
            prompts: P indices of the prompts ``chosen`` refers to (all B by default).

        Returns:
            Nx(4h)x(4w) logits, N = chosen.sum(), in row-major order of ``chosen``.
        """
        keys, tokens = self.keys, self.mask_tokens
        if prompts is not None:
            keys, tokens = keys[prompts], tokens[prompts]
        return self.decoder.mask_logits(self.context, keys, tokens, chosen)
