"""SAM's mask decoder, reorganised so that many prompts share the work that does not depend on them.

segment-anything's ``MaskDecoder`` copies the 256x64x64 image embedding and its positional
encoding once per prompt and recomputes the first layer's key/value/query projections of the
image for every prompt. Here they are computed once per image (``ImageContext``) and broadcast;
only work that truly depends on the prompt runs per prompt, in chunks of prompts, and the
image-side work of each layer runs tile by tile over rows of pixels so that it stays in cache.
The weights are segment-anything's own modules, so this computes the same function (up to
float summation order).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from segment_anything.modeling import MaskDecoder, PromptEncoder
from segment_anything.modeling.transformer import TwoWayAttentionBlock
from torch import Tensor, nn

from .decoder_attention import (
    ImageToTokens,
    heads,
    map_queries,
    project_pooled,
    tokens_to_image,
    tokens_to_shared_image,
)
from .mask_upscaling import UpscalingMatmuls, draw_masks

# (token range of whole grid rows, BxPxC image tokens of those rows) pairs covering the grid.
Tiles = list[tuple[slice, Tensor]]


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


def _row_tiles(size: tuple[int, int], batch: int, channels: int, elements: int) -> list[slice]:
    """Token ranges of whole grid rows holding about ``elements`` floats of BxPxC each."""
    h, w = size
    rows = max(1, min(h, elements // (batch * channels * w)))
    return [slice(r * w, min(r + rows, h) * w) for r in range(0, h, rows)]


def _split(keys: Tensor, ranges: list[slice]) -> Tiles:
    return [(tile, keys[:, tile]) for tile in ranges]


def _pool(weights: Tensor, tiles: Tiles) -> Tensor:
    """``weights @ keys`` for Bx(H*T)xN weights and tiled BxNxC keys: Bx(H*T)xC."""
    (first, tokens), *rest = tiles
    pooled = weights[:, :, first] @ tokens
    for tile, tokens in rest:
        pooled.baddbmm_(weights[:, :, tile], tokens)
    return pooled


class BatchedMaskDecoder(nn.Module):
    """Decodes many prompts against one image embedding, sharing prompt-independent work.

    Args:
        prompt_encoder: segment-anything's ``PromptEncoder`` (its weights are used, not copied).
        mask_decoder: segment-anything's ``MaskDecoder``.
        chunk_size: Prompts decoded together (their token-side work is batched).
        tile_elements: Floats per BxPxC tile of image tokens in the image-side passes on the
            CPU. About a MiB keeps a pass's tensors in a core's L2 cache, where those passes
            run several times faster than over whole BxNxC tensors streamed through memory.
            Other devices take the whole grid at once.
    """

    def __init__(
        self,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        chunk_size: int = 4,
        tile_elements: int = 1 << 18,
    ) -> None:
        super().__init__()
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        if tile_elements < 1:
            raise ValueError(f"tile_elements must be >= 1, got {tile_elements}")
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.chunk_size = chunk_size
        self.tile_elements = tile_elements

    def image_context(self, image_embeddings: Tensor) -> ImageContext:
        """Precomputes the prompt-independent tensors of a 1xCxhxw image embedding."""
        pe = self.prompt_encoder.get_dense_pe()
        no_mask = self.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        keys = (image_embeddings + no_mask).flatten(2).transpose(1, 2)
        key_pe = pe.flatten(2).transpose(1, 2)[0]
        first = self.mask_decoder.transformer.layers[0]
        to_image, to_token = first.cross_attn_token_to_image, first.cross_attn_image_to_token
        h = to_image.num_heads
        keyed = keys + key_pe
        return ImageContext(
            keys=keys,
            key_pe=key_pe,
            size=tuple(image_embeddings.shape[-2:]),
            k0=heads(to_image.k_proj(keyed), h)[0],
            v0=heads(to_image.v_proj(keys), h)[0],
            q0=heads(to_token.q_proj(keyed), to_token.num_heads)[0],
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
        upscaling = UpscalingMatmuls(self.mask_decoder.output_upscaling)
        masks, ious = [], []
        chunks = self._run_chunks(context, sparse_prompt_embeddings, dense_prompt_embeddings)
        for iou, mask_tokens, tiles in chunks:
            chosen = torch.zeros_like(iou, dtype=torch.bool)
            chosen[:, selected] = True
            logits = self._draw(context, upscaling, tiles, mask_tokens, chosen)
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
            (iou, mask_tokens, torch.cat([t for _, t in tiles], dim=1))
            for iou, mask_tokens, tiles in self._run_chunks(context, sparse, dense)
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
        upscaling = UpscalingMatmuls(self.mask_decoder.output_upscaling)
        masks = []
        for start in range(0, len(prompts), self.chunk_size):
            chunk = slice(start, start + self.chunk_size)
            chunk_keys = keys[chunk]
            tiles = _split(chunk_keys, self._tile_ranges(context, len(chunk_keys)))
            masks.append(self._draw(context, upscaling, tiles, mask_tokens[chunk], chosen[chunk]))
        return torch.cat(masks)

    def _tile_ranges(self, context: ImageContext, batch: int) -> list[slice]:
        h, w = context.size
        if context.keys.device.type != "cpu":
            return [slice(0, h * w)]  # GPU kernels want whole tensors, not cache-sized tiles
        channels = context.keys.shape[-1]
        return _row_tiles(context.size, batch, channels, self.tile_elements)

    def _run_chunks(
        self, context: ImageContext, sparse: Tensor, dense: Tensor | None
    ) -> Iterator[tuple[Tensor, Tensor, Tiles]]:
        """``_run_transformer`` over the prompts, ``chunk_size`` at a time."""
        for start in range(0, sparse.shape[0], self.chunk_size):
            chunk = slice(start, start + self.chunk_size)
            yield self._run_transformer(
                context, sparse[chunk], None if dense is None else dense[chunk]
            )

    def _run_transformer(
        self, context: ImageContext, sparse: Tensor, dense: Tensor | None
    ) -> tuple[Tensor, Tensor, Tiles]:
        decoder = self.mask_decoder
        b = sparse.shape[0]
        output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight])
        tokens = torch.cat([output_tokens[None].expand(b, -1, -1), sparse], dim=1)
        queries, tiles = self._transformer(context, tokens, dense)
        iou = decoder.iou_prediction_head(queries[:, 0])
        return iou, queries[:, 1 : 1 + decoder.num_mask_tokens], tiles

    def _draw(
        self,
        context: ImageContext,
        upscaling: UpscalingMatmuls,
        tiles: Tiles,
        mask_tokens: Tensor,
        chosen: Tensor,
    ) -> Tensor:
        mlps = self.mask_decoder.output_hypernetworks_mlps
        hyper_in = torch.stack([mlp(mask_tokens[:, i]) for i, mlp in enumerate(mlps)], dim=2)
        return draw_masks(upscaling, tiles, hyper_in, chosen, context.size)

    def _transformer(
        self, context: ImageContext, tokens: Tensor, dense: Tensor | None
    ) -> tuple[Tensor, Tiles]:
        """segment-anything's ``TwoWayTransformer`` for BxTxC tokens: queries BxTxC, tiled keys.

        Token-side work runs on whole tensors; each layer's image-side update (attention to the
        tokens, residual, norm) runs tile by tile, and the same pass computes the next
        token-to-image attention's scores over the fresh tile while it is in cache.
        """
        transformer = self.mask_decoder.transformer
        layers = transformer.layers
        first = layers[0]
        t = tokens.shape[1]
        ranges = self._tile_ranges(context, tokens.shape[0])
        queries = first.norm1(first.self_attn(tokens, tokens, tokens))
        if dense is None:
            keys = context.keys
            attn_out = tokens_to_shared_image(
                first.cross_attn_token_to_image, queries + tokens, context.k0, context.v0
            )
        else:
            keys = context.keys - self._no_mask_tokens() + dense.flatten(2).transpose(1, 2)
            attn_out = tokens_to_image(
                first.cross_attn_token_to_image, queries + tokens, keys + context.key_pe, keys
            )
        tiles = _split(keys, ranges)

        for i, layer in enumerate(layers):
            queries = layer.norm2(queries + attn_out)
            queries = layer.norm3(queries + layer.mlp(queries))
            # The next token-to-image attention's queries depend on tokens only, so they are
            # known before this layer's image side runs.
            if i + 1 < len(layers):
                following = layers[i + 1]
                q = queries + tokens
                next_queries = following.norm1(queries + following.self_attn(q, q, queries))
                next_attn = following.cross_attn_token_to_image
            else:
                next_queries, next_attn = queries, transformer.final_attn_token_to_image
            image_to_tokens = ImageToTokens(
                layer.cross_attn_image_to_token, queries + tokens, queries
            )
            tiles, scores = self._update_image(
                context,
                layer,
                image_to_tokens,
                tiles,
                map_queries(next_attn, next_queries + tokens),
                shared=i == 0 and dense is None,
            )
            queries = next_queries
            pooled = _pool(torch.softmax(scores, dim=-1), tiles)
            attn_out = project_pooled(next_attn, pooled, t)
        return transformer.norm_final_attn(queries + attn_out), tiles

    def _update_image(
        self,
        context: ImageContext,
        layer: TwoWayAttentionBlock,
        image_to_tokens: ImageToTokens,
        tiles: Tiles,
        next_queries: Tensor,
        shared: bool,
    ) -> tuple[Tiles, Tensor]:
        """One layer's image side, tile by tile.

        Args:
            tiles: BxPxC image tokens per tile (1xPxC when ``shared``).
            next_queries: Bx(H*T)xC token queries of the next token-to-image attention, mapped
                by ``map_queries``.
            shared: ``tiles`` are the context's own keys, whose projected queries ``q0`` are
                reused.

        Returns:
            The updated tiles and the next attention's Bx(H*T)xN scores over them plus their
            positional encoding.
        """
        b, n = next_queries.shape[0], context.key_pe.shape[0]
        scores = next_queries.new_empty(b, next_queries.shape[1], n)
        updated = []
        for tile, keys in tiles:
            key_pe = context.key_pe[tile]
            if shared:
                tile_scores = image_to_tokens.shared_scores(context.q0[:, tile])
            else:
                tile_scores = image_to_tokens.scores(keys + key_pe)
            fresh = layer.norm4(image_to_tokens(tile_scores, keys))
            updated.append((tile, fresh))
            scores[:, :, tile] = next_queries @ (fresh + key_pe).transpose(1, 2)
        return updated, scores

    def _no_mask_tokens(self) -> Tensor:
        return self.prompt_encoder.no_mask_embed.weight.reshape(1, 1, -1)
