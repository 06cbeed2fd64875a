"""``Prediction``: what ``RepViTSAM.predict`` returns, locally or over HTTP (numpy only)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Prediction"]


@dataclass(frozen=True)
class Prediction:
    """Masks for one call of ``RepViTSAM.predict``.

    With one prompt (points, one box as 4 numbers, or both) the arrays are CxHxW, C and
    Cx256x256; with boxes given as a Bx4 array each gains a leading B dimension.
    C is 3 with ``multimask=True``, else 1.

    Attributes:
        masks: Boolean masks at the original image size.
        scores: The decoder's predicted IoU of each mask.
        low_res_logits: 256x256 logits, to pass back as ``mask_input`` for refinement.
    """

    masks: np.ndarray
    scores: np.ndarray
    low_res_logits: np.ndarray

    @property
    def best(self) -> np.ndarray:
        """Index of the highest-scoring mask (per prompt when batched)."""
        return np.argmax(self.scores, axis=-1)

    @property
    def best_mask(self) -> np.ndarray:
        """The highest-scoring mask: HxW, or BxHxW with several boxes."""
        index = self.best
        if self.masks.ndim == 3:
            return self.masks[index]
        return self.masks[np.arange(self.masks.shape[0]), index]
