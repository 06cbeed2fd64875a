"""SAM's mask decoder, reorganised so that many prompts share the work that does not depend on them.

segment-anything's ``MaskDecoder`` copies the 256x64x64 image embedding and its positional
encoding once per prompt and recomputes the first layer's key/value/query projections of the
image for every prompt. Here they are computed once per image (``ImageContext``) and broadcast;
only work that truly depends on the prompt runs per prompt, in chunks that bound memory. The
weights are segment-anything's own modules, so this computes the same function (up to float
summation order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from segment_anything.modeling import MaskDecoder, PromptEncoder
from segment_anything.modeling.transformer import Attention
from torch import Tensor, nn


@dataclass(frozen=True)
class ImageContext:
    """Prompt-independent decoder inputs for one image (no mask prompt).

    Attributes:
        keys: 1xNxC image tokens plus the no-mask dense embedding (N = h*w, C = 256).
        key_pe: NxC dense positional encoding.
        size: (h, w) of the embedding grid.
        k0, v0: HxNxD keys and values of the first token-to-image attention (H heads).
        q0: HxNxD queries of the first image-to-token attention.
    """

    keys: Tensor
    key_pe: Tensor
    size: tuple[int, int]
    k0: Tensor
    v0: Tensor
    q0: Tensor


def _heads(x: Tensor, num_heads: int) -> Tensor:
    """BxNx(H*D) -> BxHxNxD."""
    b, n, c = x.shape
    return x.reshape(b, n, num_heads, c // num_heads).transpose(1, 2)


def _per_head(weight: Tensor, num_heads: int) -> Tensor:
    """A projection weight (H*D)xC -> HxDxC."""
    return weight.reshape(num_heads, -1, weight.shape[-1])


def _tokens_to_image(attn: Attention, q: Tensor, keyed: Tensor, keys: Tensor) -> Tensor:
    """``attn(q=q, k=keyed, v=keys)`` for BxTxC tokens and BxNxC image tokens (keyed = keys + pe).

    Instead of projecting the N image tokens to keys and values, each head's query is mapped back
    into the C-dim input space (``q W_k``) and the attention-weighted image tokens are projected
    afterwards (``(P keys) W_v``): the same function, with work in T rather than N. The key bias
    adds a per-query constant to the scores, which softmax ignores.
    """
    b, t, _ = q.shape
    h, c = attn.num_heads, keys.shape[-1]
    d = attn.internal_dim // h
    # The 1/sqrt(D) scale goes on the T queries rather than on the BxHTxN scores.
    queries = _heads(attn.q_proj(q), h) / math.sqrt(d)  # B x H x T x D
    mapped = (queries @ _per_head(attn.k_proj.weight, h)).reshape(b, h * t, c)
    weights = torch.softmax(mapped @ keyed.transpose(1, 2), dim=-1)  # B x HT x N
    pooled = (weights @ keys).reshape(b, h, t, c)
    values = pooled @ _per_head(attn.v_proj.weight, h).transpose(1, 2)  # B x H x T x D
    out = values.transpose(1, 2).reshape(b, t, h * d) + attn.v_proj.bias
    return attn.out_proj(out)


def _image_scores_to_tokens(attn: Attention, scores: Tensor, values_in: Tensor) -> Tensor:
    """Softmax over each head's T tokens, then the weighted values already through ``out_proj``.

    Args:
        scores: BxNxHxT attention logits (scaled).
        values_in: BxTxC inputs of the value projection.

    Returns:
        BxNxC, equal to ``out_proj(softmax(scores) @ v_proj(values_in))``.
    """
    b, n, h, t = scores.shape
    weights = torch.softmax(scores, dim=-1).reshape(b, n, h * t)
    values = _heads(attn.v_proj(values_in), h)  # B x H x T x D
    out_weight = attn.out_proj.weight  # C x (H*D)
    projected = values @ out_weight.reshape(out_weight.shape[0], h, -1).permute(1, 2, 0)
    return torch.baddbmm(attn.out_proj.bias, weights, projected.reshape(b, h * t, -1))


def _image_to_tokens(attn: Attention, keyed: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """``attn(q=keyed, k=k, v=v)`` for BxNxC image tokens (plus their encoding) and BxTxC tokens.

    Each head's T keys are mapped into the C-dim input space (``K W_q``), so the N image tokens
    are never projected; the query bias contributes a per-key term that is kept.
    """
    b, t, _ = k.shape
    h = attn.num_heads
    d = attn.internal_dim // h
    token_keys = _heads(attn.k_proj(k), h) / math.sqrt(d)  # B x H x T x D, scaled
    mapped = token_keys @ _per_head(attn.q_proj.weight, h)  # B x H x T x C
    bias = token_keys @ attn.q_proj.bias.reshape(h, d, 1)  # B x H x T x 1
    mapped = mapped.reshape(b, h * t, -1)
    scores = torch.baddbmm(bias.reshape(b, 1, h * t), keyed, mapped.transpose(1, 2))
    return _image_scores_to_tokens(attn, scores.reshape(b, -1, h, t), v)


def _shared_image_to_tokens(attn: Attention, queries: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """One image's projected queries (HxNxD) attending to each prompt's tokens (BxTxC)."""
    b, t, _ = k.shape
    h, n, d = queries.shape
    token_keys = attn.k_proj(k).reshape(b, t, h, d).permute(2, 3, 0, 1).reshape(h, d, b * t)
    scores = (queries @ (token_keys / math.sqrt(d))).reshape(h, n, b, t).permute(2, 1, 0, 3)
    return _image_scores_to_tokens(attn, scores, v)


def _tokens_to_shared_image(attn: Attention, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Tokens (BxTxC) attending to one image's projected keys/values (HxNxD each)."""
    b, t, _ = q.shape
    h, _, d = k.shape
    queries = attn.q_proj(q).reshape(b * t, h, d).transpose(0, 1)  # H x BT x D
    weights = torch.softmax(queries @ k.transpose(1, 2) / math.sqrt(d), dim=-1)
    out = (weights @ v).transpose(0, 1).reshape(b, t, h * d)
    return attn.out_proj(out)


def _upscale(upscaling: nn.Sequential, keys: Tensor) -> Tensor:
    """SAM's ``output_upscaling`` on BxNxC tokens, kept in token order: BxNx16xC/8.

    Both transposed convolutions have kernel 2 and stride 2, so each is a matmul that turns a
    pixel into a 2x2 block; the LayerNorm2d is a layer norm over the last dimension.
    """
    conv1, norm, act1, conv2, act2 = upscaling
    b, n, c = keys.shape
    w1 = conv1.weight.permute(0, 2, 3, 1).reshape(conv1.in_channels, -1)  # C x (4*C1)
    x = torch.addmm(conv1.bias.repeat(4), keys.reshape(b * n, c), w1)
    x = act1(
        F.layer_norm(
            x.reshape(b, n, 4, -1), (conv1.out_channels,), norm.weight, norm.bias, norm.eps
        )
    )
    w2 = conv2.weight.permute(0, 2, 3, 1).reshape(conv2.in_channels, -1)  # C1 x (4*C2)
    x = torch.addmm(conv2.bias.repeat(4), x.reshape(b * n * 4, -1), w2)
    x = x.reshape(b, n, 16, conv2.out_channels)
    return act2(x)


def _blocks_to_image(masks: Tensor, size: tuple[int, int]) -> Tensor:
    """BxNx16xM values (pixel (i, j) -> 4x4 block (2*a1 + a2, 2*b1 + b2)) -> BxMx4hx4w."""
    h, w = size
    b, _, _, m = masks.shape
    blocks = masks.reshape(b, h, w, 2, 2, 2, 2, m)  # i, j, a1, b1, a2, b2
    return blocks.permute(0, 7, 1, 3, 5, 2, 4, 6).reshape(b, m, 4 * h, 4 * w)


class BatchedMaskDecoder(nn.Module):
    """Decodes many prompts against one image embedding, sharing prompt-independent work.

    Args:
        prompt_encoder: segment-anything's ``PromptEncoder`` (its weights are used, not copied).
        mask_decoder: segment-anything's ``MaskDecoder``.
        chunk_size: Prompts decoded together. Small chunks keep the per-prompt tensors (about
            25 MB each at 1024 input) in cache: 2-4 measured fastest on a 2-core x86 CPU.
    """

    def __init__(
        self, prompt_encoder: PromptEncoder, mask_decoder: MaskDecoder, chunk_size: int = 4
    ) -> None:
        super().__init__()
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.chunk_size = chunk_size

    def image_context(self, image_embeddings: Tensor) -> ImageContext:
        """Precomputes the prompt-independent tensors of a 1xCxhxw image embedding."""
        pe = self.prompt_encoder.get_dense_pe()
        no_mask = self.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        keys = (image_embeddings + no_mask).flatten(2).transpose(1, 2)
        key_pe = pe.flatten(2).transpose(1, 2)[0]
        first = self.mask_decoder.transformer.layers[0]
        to_image, to_token = first.cross_attn_token_to_image, first.cross_attn_image_to_token
        h = to_image.num_heads
        return ImageContext(
            keys=keys,
            key_pe=key_pe,
            size=tuple(image_embeddings.shape[-2:]),
            k0=_heads(to_image.k_proj(keys + key_pe), h)[0],
            v0=_heads(to_image.v_proj(keys), h)[0],
            q0=_heads(to_token.q_proj(keys + key_pe), to_token.num_heads)[0],
        )

    def forward(
        self,
        context: ImageContext,
        sparse_prompt_embeddings: Tensor,
        dense_prompt_embeddings: Tensor | None,
        multimask_output: bool,
    ) -> tuple[Tensor, Tensor]:
        """Low-res mask logits and predicted IoUs, as ``MaskDecoder.forward`` returns them.

        Args:
            context: From ``image_context``.
            sparse_prompt_embeddings: BxTxC from the prompt encoder.
            dense_prompt_embeddings: BxCxhxw from a mask prompt, or None for no mask prompt.
            multimask_output: Return the 3 multimask outputs instead of the single one.

        Returns:
            Bx(3 or 1)x4hx4w logits and Bx(3 or 1) IoU predictions.
        """
        selected = slice(1, None) if multimask_output else slice(0, 1)
        masks, ious = [], []
        for start in range(0, sparse_prompt_embeddings.shape[0], self.chunk_size):
            stop = start + self.chunk_size
            dense = None if dense_prompt_embeddings is None else dense_prompt_embeddings[start:stop]
            iou, mask_tokens, keys = self._run_transformer(
                context, sparse_prompt_embeddings[start:stop], dense
            )
            chosen = torch.zeros_like(iou, dtype=torch.bool)
            chosen[:, selected] = True
            logits = self._mask_logits(context, keys, mask_tokens, chosen)
            masks.append(logits.reshape(iou.shape[0], -1, *logits.shape[-2:]))
            ious.append(iou[:, selected])
        return torch.cat(masks), torch.cat(ious)

    def run_transformer(
        self, context: ImageContext, sparse: Tensor, dense: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The two-way transformer and the IoU head for B prompts, without drawing masks.

        Args:
            context: From ``image_context``.
            sparse: BxTxC sparse prompt embeddings.
            dense: BxCxhxw dense embeddings of mask prompts, or None for no mask prompt.

        Returns:
            IoU predictions Bx4 (token 0 is the single-mask output, 1-3 the multimask ones),
            the mask tokens' outputs Bx4xC and the image tokens BxNxC that masks are drawn from.
        """
        outputs = [
            self._run_transformer(
                context,
                sparse[start : start + self.chunk_size],
                None if dense is None else dense[start : start + self.chunk_size],
            )
            for start in range(0, sparse.shape[0], self.chunk_size)
        ]
        return tuple(torch.cat(parts) for parts in zip(*outputs, strict=True))  # type: ignore[return-value]

    def mask_logits(
        self, context: ImageContext, keys: Tensor, mask_tokens: Tensor, chosen: Tensor
    ) -> Tensor:
        """Low-res logits of the chosen (prompt, mask token) pairs only.

        Args:
            context: From ``image_context``.
            keys: BxNxC image tokens from ``run_transformer``.
            mask_tokens: Bx4xC mask tokens from ``run_transformer``.
            chosen: Bx4 bool, the masks to draw; prompts with none chosen cost nothing.

        Returns:
            Mx4hx4w logits, M = ``chosen.sum()``, in row-major order of ``chosen``.
        """
        prompts = chosen.any(dim=1).nonzero()[:, 0]
        keys, mask_tokens, chosen = keys[prompts], mask_tokens[prompts], chosen[prompts]
        h, w = context.size
        if not len(prompts):
            return keys.new_empty((0, 4 * h, 4 * w))
        return torch.cat(
            [
                self._mask_logits(
                    context, keys[i : i + n], mask_tokens[i : i + n], chosen[i : i + n]
                )
                for i, n in ((i, self.chunk_size) for i in range(0, len(prompts), self.chunk_size))
            ]
        )

    def _run_transformer(
        self, context: ImageContext, sparse: Tensor, dense: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        decoder = self.mask_decoder
        b = sparse.shape[0]
        output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight])
        tokens = torch.cat([output_tokens[None].expand(b, -1, -1), sparse], dim=1)
        queries, keys = self._transformer(context, tokens, dense)
        iou = decoder.iou_prediction_head(queries[:, 0])
        return iou, queries[:, 1 : 1 + decoder.num_mask_tokens], keys

    def _mask_logits(
        self, context: ImageContext, keys: Tensor, mask_tokens: Tensor, chosen: Tensor
    ) -> Tensor:
        decoder = self.mask_decoder
        b = keys.shape[0]
        hyper_in = torch.stack(
            [mlp(mask_tokens[:, i]) for i, mlp in enumerate(decoder.output_hypernetworks_mlps)],
            dim=2,
        )  # B x C/8 x 4
        upscaled = _upscale(decoder.output_upscaling, keys)  # B x N x 16 x C/8
        n = upscaled.shape[1]
        logits = upscaled.reshape(b, n * 16, -1) @ hyper_in  # B x 16N x 4
        prompt_index, token_index = chosen.nonzero(as_tuple=True)
        selected = logits[prompt_index, :, token_index]  # M x 16N
        return _blocks_to_image(selected.reshape(-1, n, 16, 1), context.size)[:, 0]

    def _transformer(
        self, context: ImageContext, tokens: Tensor, dense: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """segment-anything's ``TwoWayTransformer`` with a shared first layer: BxTxC, BxNxC."""
        transformer = self.mask_decoder.transformer
        first, *rest = transformer.layers
        key_pe = context.key_pe
        queries = first.norm1(first.self_attn(tokens, tokens, tokens))

        if dense is None:
            keys = context.keys
            attn_out = _tokens_to_shared_image(
                first.cross_attn_token_to_image, queries + tokens, context.k0, context.v0
            )
        else:
            keys = context.keys - self._no_mask_tokens() + dense.flatten(2).transpose(1, 2)
            keyed = keys + key_pe
            attn_out = _tokens_to_image(
                first.cross_attn_token_to_image, queries + tokens, keyed, keys
            )
        queries = first.norm2(queries + attn_out)
        queries = first.norm3(queries + first.mlp(queries))
        to_token = first.cross_attn_image_to_token
        if dense is None:
            attn_out = _shared_image_to_tokens(to_token, context.q0, queries + tokens, queries)
        else:
            attn_out = _image_to_tokens(to_token, keyed, queries + tokens, queries)
        keys = first.norm4(keys + attn_out)

        for layer in rest:
            q = queries + tokens
            queries = layer.norm1(queries + layer.self_attn(q, q, queries))
            # Both cross attentions of a layer read the same keys + positional encoding.
            keyed = keys + key_pe
            attn_out = _tokens_to_image(
                layer.cross_attn_token_to_image, queries + tokens, keyed, keys
            )
            queries = layer.norm2(queries + attn_out)
            queries = layer.norm3(queries + layer.mlp(queries))
            attn_out = _image_to_tokens(
                layer.cross_attn_image_to_token, keyed, queries + tokens, queries
            )
            keys = layer.norm4(keys + attn_out)

        attn_out = _tokens_to_image(
            transformer.final_attn_token_to_image, queries + tokens, keys + key_pe, keys
        )
        return transformer.norm_final_attn(queries + attn_out), keys

    def _no_mask_tokens(self) -> Tensor:
        return self.prompt_encoder.no_mask_embed.weight.reshape(1, 1, -1)
