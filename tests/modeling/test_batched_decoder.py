from __future__ import annotations

import copy

import pytest
import torch

from repvit_sam.modeling.batched_decoder import BatchedMaskDecoder


@pytest.fixture(scope="module")
def heads(small_model):
    small_model = copy.deepcopy(small_model)  # the session's model stays untouched
    torch.manual_seed(0)
    # Non-trivial weights everywhere, including biases SAM initialises to zero.
    with torch.no_grad():
        for name, p in small_model.mask_decoder.named_parameters():
            if name.endswith("bias"):
                p.copy_(0.05 * torch.randn_like(p))
    return small_model.prompt_encoder, small_model.mask_decoder


def _prompts(prompt_encoder, kind: str, b: int, side: int):
    generator = torch.Generator().manual_seed(1)
    points = torch.rand(b, 3, 2, generator=generator) * side
    labels = torch.randint(0, 2, (b, 3), generator=generator)
    boxes = torch.rand(b, 4, generator=generator) * side / 2
    boxes[:, 2:] += boxes[:, :2]
    masks = torch.randn(b, 1, *prompt_encoder.mask_input_size, generator=generator)
    return {
        "points": {"points": (points, labels), "boxes": None, "masks": None},
        "boxes": {"points": None, "boxes": boxes, "masks": None},
        "points+boxes": {"points": (points[:, :1], labels[:, :1]), "boxes": boxes, "masks": None},
        "mask": {"points": (points, labels), "boxes": None, "masks": masks},
    }[kind]


@pytest.mark.parametrize("kind", ["points", "boxes", "points+boxes", "mask"])
@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize("chunk_size", [1, 3, 16])
# One tile for the whole 16x16 grid; tiles of 3 rows (the last one short) or of 1 row.
@pytest.mark.parametrize("tile_elements", [1 << 18, 3 * 256 * 16])
def test_same_outputs_as_segment_anything(heads, kind, multimask, chunk_size, tile_elements):
    prompt_encoder, mask_decoder = heads
    decoder = BatchedMaskDecoder(
        prompt_encoder, mask_decoder, chunk_size=chunk_size, tile_elements=tile_elements
    )
    side = prompt_encoder.input_image_size[0]
    embedding = torch.randn(1, 256, *prompt_encoder.image_embedding_size)
    with torch.inference_mode():
        sparse, dense = prompt_encoder(**_prompts(prompt_encoder, kind, 5, side))
        expected = mask_decoder(embedding, prompt_encoder.get_dense_pe(), sparse, dense, multimask)
        context = decoder.image_context(embedding)
        actual = decoder(context, sparse, dense if kind == "mask" else None, multimask)
    for a, e in zip(actual, expected, strict=True):
        assert a.shape == e.shape
        assert torch.allclose(a, e, atol=1e-5, rtol=1e-5), (a - e).abs().max()


def test_full_size_embedding(heads):
    """The 64x64 embedding of a 1024 input, through the same decoder weights."""
    from segment_anything.modeling import PromptEncoder

    _, mask_decoder = heads
    prompt_encoder = PromptEncoder(
        embed_dim=256,
        image_embedding_size=(64, 64),
        input_image_size=(1024, 1024),
        mask_in_chans=16,
    )
    decoder = BatchedMaskDecoder(prompt_encoder, mask_decoder)
    embedding = torch.randn(1, 256, 64, 64)
    with torch.inference_mode():
        sparse, dense = prompt_encoder(**_prompts(prompt_encoder, "points+boxes", 4, 1024))
        expected = mask_decoder(embedding, prompt_encoder.get_dense_pe(), sparse, dense, True)
        actual = decoder(decoder.image_context(embedding), sparse, None, True)
    assert torch.allclose(actual[0], expected[0], atol=1e-4)
    assert torch.allclose(actual[1], expected[1], atol=1e-5)


def test_run_transformer_and_mask_logits_draw_what_forward_draws(heads):
    prompt_encoder, mask_decoder = heads
    decoder = BatchedMaskDecoder(prompt_encoder, mask_decoder, chunk_size=2, tile_elements=1)
    side = prompt_encoder.input_image_size[0]
    embedding = torch.randn(1, 256, *prompt_encoder.image_embedding_size)
    with torch.inference_mode():
        sparse, _ = prompt_encoder(**_prompts(prompt_encoder, "points", 5, side))
        context = decoder.image_context(embedding)
        masks, ious = decoder(context, sparse, None, True)
        iou, mask_tokens, keys = decoder.run_transformer(context, sparse)
        chosen = torch.zeros(5, 4, dtype=torch.bool)
        chosen[[0, 2, 2, 4], [1, 2, 3, 3]] = True
        drawn = decoder.mask_logits(context, keys, mask_tokens, chosen)
        none = decoder.mask_logits(context, keys, mask_tokens, torch.zeros_like(chosen))
    assert torch.equal(iou[:, 1:], ious)
    assert torch.allclose(drawn, masks[[0, 2, 2, 4], [0, 1, 2, 2]], atol=1e-6)
    assert none.shape == (0, *masks.shape[-2:])


@pytest.mark.parametrize("argument", ["chunk_size", "tile_elements"])
def test_bad_sizes(heads, argument):
    with pytest.raises(ValueError, match=argument):
        BatchedMaskDecoder(*heads, **{argument: 0})


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kind", ["points", "mask"])
def test_cuda_same_outputs_as_segment_anything(heads, kind):
    prompt_encoder, mask_decoder = (copy.deepcopy(module).cuda() for module in heads)
    decoder = BatchedMaskDecoder(prompt_encoder, mask_decoder)
    side = prompt_encoder.input_image_size[0]
    embedding = torch.randn(1, 256, *prompt_encoder.image_embedding_size, device="cuda")
    prompts = _prompts(prompt_encoder, kind, 5, side)
    prompts = {k: _to_cuda(v) for k, v in prompts.items()}
    with torch.inference_mode():
        sparse, dense = prompt_encoder(**prompts)
        expected = mask_decoder(embedding, prompt_encoder.get_dense_pe(), sparse, dense, True)
        context = decoder.image_context(embedding)
        actual = decoder(context, sparse, dense if kind == "mask" else None, True)
    for a, e in zip(actual, expected, strict=True):
        assert a.is_cuda and a.shape == e.shape
        # TF32 matmuls may be on; the two orders of summation differ more than on the CPU.
        assert torch.allclose(a, e, atol=1e-2, rtol=1e-2), (a - e).abs().max()


def _to_cuda(value):
    if isinstance(value, tuple):
        return tuple(v.cuda() for v in value)
    return None if value is None else value.cuda()
