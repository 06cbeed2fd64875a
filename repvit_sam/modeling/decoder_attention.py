"""segment-anything's cross attentions, rewritten so the work scales with tokens, not pixels.

SAM's ``Attention`` projects all N image tokens (N = 4096 at 1024 input) to queries, keys or
values for a handful of T prompt tokens. Here the T-side projections are folded into the
C-dimensional input space instead: each head's token query is mapped through ``W_k`` (or each
token key through ``W_q``), and attention-weighted image tokens are projected after pooling.
The results are the same functions up to float summation order.

Shapes: B prompts, T tokens per prompt, N image tokens, C channels, H heads of D dims.
"""

from __future__ import annotations

import math

import torch
from segment_anything.modeling.transformer import Attention
from torch import Tensor


def heads(x: Tensor, num_heads: int) -> Tensor:
    """BxNx(H*D) -> BxHxNxD."""
    b, n, c = x.shape
    return x.reshape(b, n, num_heads, c // num_heads).transpose(1, 2)


def _per_head(weight: Tensor, num_heads: int) -> Tensor:
    """A projection weight (H*D)xC -> HxDxC."""
    return weight.reshape(num_heads, -1, weight.shape[-1])


def _head_dim(attn: Attention) -> int:
    return attn.internal_dim // attn.num_heads


def map_queries(attn: Attention, q: Tensor) -> Tensor:
    """Token queries BxTxC mapped into the image tokens' input space: Bx(H*T)xC.

    ``map_queries(attn, q) @ keyed.T`` equals the scaled scores ``q_proj(q) k_proj(keyed).T /
    sqrt(D)`` of every head, up to the key bias, which adds a per-query constant that softmax
    ignores.
    """
    b, t, _ = q.shape
    h = attn.num_heads
    # The 1/sqrt(D) scale goes on the T queries rather than on the Bx(H*T)xN scores.
    queries = heads(attn.q_proj(q), h) / math.sqrt(_head_dim(attn))  # B x H x T x D
    return (queries @ _per_head(attn.k_proj.weight, h)).reshape(b, h * t, -1)


def project_pooled(attn: Attention, pooled: Tensor, num_tokens: int) -> Tensor:
    """The attention output BxTxC from attention-weighted image tokens Bx(H*T)xC."""
    b, _, c = pooled.shape
    h = attn.num_heads
    values = pooled.reshape(b, h, num_tokens, c) @ _per_head(attn.v_proj.weight, h).transpose(1, 2)
    out = values.transpose(1, 2).reshape(b, num_tokens, -1) + attn.v_proj.bias  # B x T x H*D
    return attn.out_proj(out)


def tokens_to_image(attn: Attention, q: Tensor, keyed: Tensor, keys: Tensor) -> Tensor:
    """``attn(q=q, k=keyed, v=keys)``: BxTxC tokens, BxNxC image tokens (keyed = keys + pe)."""
    weights = torch.softmax(map_queries(attn, q) @ keyed.transpose(1, 2), dim=-1)
    return project_pooled(attn, weights @ keys, q.shape[1])


def tokens_to_shared_image(attn: Attention, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Tokens (BxTxC) attending to one image's projected keys/values (HxNxD each)."""
    b, t, _ = q.shape
    h, _, d = k.shape
    queries = attn.q_proj(q).reshape(b * t, h, d).transpose(0, 1)  # H x BT x D
    weights = torch.softmax(queries @ k.transpose(1, 2) / math.sqrt(d), dim=-1)
    out = (weights @ v).transpose(0, 1).reshape(b, t, h * d)
    return attn.out_proj(out)


class ImageToTokens:
    """``attn(q=keyed, k=k, v=v)``: image tokens attending to BxTxC prompt tokens, per pixel tile.

    The token side (keys mapped into the image's input space, values already through
    ``out_proj``) is computed once; ``__call__`` then costs O(T) per pixel, so a decoder can run
    it tile by tile while the tile is in cache.

    Args:
        attn: SAM's ``cross_attn_image_to_token``.
        k: BxTxC inputs of the key projection (tokens plus their encoding).
        v: BxTxC inputs of the value projection.
    """

    def __init__(self, attn: Attention, k: Tensor, v: Tensor) -> None:
        b, t, _ = k.shape
        h, d = attn.num_heads, _head_dim(attn)
        self.shape = (b, h, t)
        # Scaled token keys, B x H x T x D.
        self.token_keys = heads(attn.k_proj(k), h) / math.sqrt(d)
        # The query bias contributes a per-key term to the scores, kept here.
        self.mapped = (self.token_keys @ _per_head(attn.q_proj.weight, h)).reshape(b, h * t, -1)
        self.bias = (self.token_keys @ attn.q_proj.bias.reshape(h, d, 1)).reshape(b, h * t, 1)
        out_weight = attn.out_proj.weight  # C x (H*D)
        values = heads(attn.v_proj(v), h)  # B x H x T x D
        projected = values @ out_weight.reshape(out_weight.shape[0], h, -1).permute(1, 2, 0)
        # Each head's weights sum to 1 over its T tokens, so 1/H of the output bias on every
        # projected value adds the bias once: the residual add then needs no separate pass.
        projected = projected + attn.out_proj.bias / h
        self.projected = projected.reshape(b, h * t, -1)  # B x HT x C

    def scores(self, keyed: Tensor) -> Tensor:
        """BxHxTxP logits for a tile of P image tokens plus encoding (BxPxC)."""
        scores = torch.baddbmm(self.bias, self.mapped, keyed.transpose(1, 2))
        return scores.reshape(*self.shape, -1)

    def shared_scores(self, queries: Tensor) -> Tensor:
        """BxHxTxP logits for one image's already projected queries HxPxD (no mask prompt)."""
        return self.token_keys @ queries.transpose(1, 2)

    def __call__(self, scores: Tensor, residual: Tensor) -> Tensor:
        """``residual`` plus the attention output, BxPxC, for BxHxTxP logits.

        Args:
            scores: BxHxTxP logits from ``scores`` or ``shared_scores``. The softmax runs over
                T with the P pixels innermost: PyTorch's CPU softmax over a short last
                dimension is about 15x slower.
            residual: BxPxC or 1xPxC image tokens the output is added to.
        """
        b, h, t, p = scores.shape
        weights = torch.softmax(scores, dim=2).reshape(b, h * t, p)
        return torch.baddbmm(residual, weights.transpose(1, 2), self.projected)
