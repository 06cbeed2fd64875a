from __future__ import annotations

import copy

import pytest
import torch

from repvit_sam import build_repvit_sam, fuse
from repvit_sam.modeling import (
    VARIANTS,
    RepViTBlock,
    RepViTDownsample,
    RepViTImageEncoder,
    SqueezeExcite,
    block_specs,
    get_variant,
    is_fused,
)
from repvit_sam.modeling.repvit_block import RepVGGDW, grouped_mean
from tests.conftest import randomize_batch_norms


def test_m2_3_has_the_official_block_layout():
    encoder = RepViTImageEncoder(get_variant("m2_3"))
    blocks = list(encoder.features)[1:]
    assert len(blocks) == 54
    downsamples = [i + 1 for i, b in enumerate(blocks) if isinstance(b, RepViTDownsample)]
    assert downsamples == [8, 16, 52]
    widths = [b.channel_mixer.m[2].c.out_channels for b in blocks]
    assert widths[:7] == [80] * 7 and widths[7:15] == [160] * 8
    assert widths[15:51] == [320] * 36 and widths[51:] == [640] * 3
    # Squeeze-excite on alternate blocks, never in the block before a downsample.
    with_se = [isinstance(b.token_mixer[1], SqueezeExcite) for b in blocks]
    assert with_se[:8] == [True, False, True, False, True, False, False, False]
    assert with_se[51:] == [False, True, False]


def test_m2_3_state_dict_matches_the_official_checkpoint_layout(official_keys):
    model = build_repvit_sam()
    ours = [
        (k, list(v.shape), str(v.dtype).removeprefix("torch."))
        for k, v in model.state_dict().items()
    ]
    assert ours == [(k, list(s), d) for k, s, d in official_keys]
    params = sum(p.numel() for p in model.parameters())
    assert params == 27_223_480
    assert sum(p.numel() for p in model.image_encoder.parameters()) == 23_158_920


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_has_output_stride_16(name):
    encoder = RepViTImageEncoder(get_variant(name)).eval()
    with torch.no_grad():
        out = encoder(torch.randn(1, 3, 128, 128))
    assert out.shape == (1, 256, 8, 8)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_fused_equals_unfused_on_every_variant(name):
    torch.manual_seed(0)
    model = randomize_batch_norms(build_repvit_sam(variant=name, image_size=128), seed=1)
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        expected = model.image_encoder(x)
        fuse(model)
        actual = model.image_encoder(x)
    assert is_fused(model.image_encoder)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.image_encoder.modules())
    assert torch.allclose(actual, expected, atol=1e-4, rtol=1e-4)


def test_fusing_twice_is_harmless_and_blocks_lose_their_branches():
    model = randomize_batch_norms(build_repvit_sam(variant="m0_9", image_size=64))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        once = fuse(model).image_encoder(x)
        twice = fuse(model).image_encoder(x)
    assert torch.equal(once, twice)
    block = model.image_encoder.features[1]
    assert isinstance(block, RepViTBlock)
    assert isinstance(block.token_mixer[0], torch.nn.Conv2d)
    assert block.token_mixer[0].kernel_size == (3, 3) and block.token_mixer[0].bias is not None


def test_build_with_fuse_flag_gives_the_same_function():
    torch.manual_seed(3)
    reference = randomize_batch_norms(build_repvit_sam(variant="m0_9", image_size=64))
    fused = build_repvit_sam(reference.state_dict(), variant="m0_9", image_size=64, fuse=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(fused.image_encoder(x), reference.image_encoder(x), atol=1e-4)


def test_block_specs_counts():
    for name, config in VARIANTS.items():
        specs = block_specs(config)
        assert len(specs) == sum(config.depths) + 3 + 3, name
        assert sum(s.use_se for s in specs) == sum((d + 1) // 2 for d in config.depths)


@pytest.mark.parametrize("bad", ["m9_9", "vit_h", ""])
def test_unknown_variant_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="unknown RepViT variant"):
        get_variant(bad)


def test_variant_aliases():
    assert get_variant("repvit_m2_3") is get_variant("m2.3") is VARIANTS["m2_3"]


def test_bad_image_size_and_device():
    with pytest.raises(ValueError, match="image_size"):
        build_repvit_sam(variant="m0_9", image_size=100)
    with pytest.raises(ValueError, match="device"):
        build_repvit_sam(variant="m0_9", image_size=64, device="tpu:7")


@pytest.mark.parametrize("size", [(256, 256), (128, 128), (64, 64), (16, 16), (7, 5), (1, 3)])
def test_grouped_mean_is_the_mean_with_short_sums(size):
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = x.mean((2, 3), keepdim=True)
    torch.testing.assert_close(grouped_mean(x), expected, rtol=1e-12, atol=1e-12)
    se = SqueezeExcite(3).double()
    plain = se(x)
    se.portable = True
    torch.testing.assert_close(se(x), plain, rtol=1e-12, atol=1e-12)


def test_fused_parameters_are_rounded_once_from_float64():
    # Folding in float32 rounds at every step; the fused weights must be the float64 result
    # rounded once, the closest float32 convolution to the unfused block.
    block = randomize_batch_norms(RepVGGDW(8).eval(), seed=3)
    with torch.no_grad():
        for conv in (block.conv.c, block.conv1):
            conv.weight.normal_(0, 1)
        block.conv1.bias.normal_(0, 1)
    double = copy.deepcopy(block).double()
    fused, exact = block.fuse(), double.fuse()  # exact: every step in float64
    assert fused.weight.dtype == torch.float32
    assert torch.equal(fused.weight, exact.weight.float())
    assert torch.equal(fused.bias, exact.bias.float())
    x = torch.randn(2, 8, 9, 9, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(exact(x), double(x), rtol=1e-12, atol=1e-12)
