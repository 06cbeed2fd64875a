from __future__ import annotations

import pickle

import pytest
import torch

from repvit_sam import CheckpointError, build_repvit_sam, fuse
from repvit_sam.checkpoint import describe_checkpoint, read_state_dict


def test_official_layout_loads_strictly(official_layout_checkpoint):
    model = build_repvit_sam(official_layout_checkpoint)
    saved = torch.load(official_layout_checkpoint, map_location="cpu", weights_only=True)
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved[key]), key
    # segment-anything's own strict loader accepts the same file on our model.
    fresh = build_repvit_sam()
    fresh.load_state_dict(saved, strict=True)


@pytest.mark.parametrize("nesting", ["model", "state_dict"])
def test_nested_checkpoints_load(tmp_path, small_model, nesting):
    path = tmp_path / "nested.pt"
    torch.save({nesting: small_model.state_dict(), "epoch": torch.tensor(3)}, path)
    model = build_repvit_sam(path, variant="m0_9", image_size=256)
    assert torch.equal(model.image_encoder.neck[0].weight, small_model.image_encoder.neck[0].weight)


def test_checkpoint_without_num_batches_tracked_loads(tmp_path, small_model):
    state = {k: v for k, v in small_model.state_dict().items() if "num_batches_tracked" not in k}
    path = tmp_path / "no_nbt.pt"
    torch.save(state, path)
    model = build_repvit_sam(path, variant="m0_9")
    assert torch.equal(
        model.mask_decoder.iou_token.weight, small_model.mask_decoder.iou_token.weight
    )


def test_ddp_prefix_is_removed(small_model):
    state = {f"module.{k}": v for k, v in small_model.state_dict().items()}
    build_repvit_sam(state, variant="m0_9")


def test_fused_checkpoint_is_recognised(tmp_path, small_model):
    fused = fuse(build_repvit_sam(small_model.state_dict(), variant="m0_9", image_size=256))
    path = tmp_path / "fused.pt"
    torch.save(fused.state_dict(), path)
    loaded = build_repvit_sam(path, variant="m0_9", image_size=256)
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        assert torch.allclose(loaded.image_encoder(x), small_model.image_encoder(x), atol=1e-4)


def _sam_vit_like(embed_dim: int) -> dict[str, torch.Tensor]:
    return {
        "image_encoder.patch_embed.proj.weight": torch.zeros(embed_dim, 3, 16, 16),
        "image_encoder.blocks.0.attn.qkv.weight": torch.zeros(3 * embed_dim, embed_dim),
        "mask_decoder.iou_token.weight": torch.zeros(1, 256),
    }


@pytest.mark.parametrize(
    ("embed_dim", "name"), [(1280, "SAM ViT-H"), (1024, "SAM ViT-L"), (768, "SAM ViT-B")]
)
def test_sam_vit_checkpoint_is_named(tmp_path, embed_dim, name):
    path = tmp_path / "sam.pt"
    torch.save(_sam_vit_like(embed_dim), path)
    with pytest.raises(CheckpointError) as info:
        build_repvit_sam(path)
    message = str(info.value)
    assert name in message and "RepViT-SAM m2_3" in message
    assert "missing keys" in message and "image_encoder.features.0.0.c.weight" in message
    assert "unexpected keys" in message and "image_encoder.patch_embed.proj.weight" in message


def test_mobile_sam_checkpoint_is_named(tmp_path):
    path = tmp_path / "mobile_sam.pt"
    torch.save({"image_encoder.layers.0.blocks.0.conv1.c.weight": torch.zeros(4, 4, 1, 1)}, path)
    with pytest.raises(CheckpointError, match="MobileSAM"):
        build_repvit_sam(path)


def test_other_variant_is_named_with_the_fix(small_checkpoint):
    with pytest.raises(CheckpointError, match=r"m0_9 checkpoint.*pass variant='m0_9'"):
        build_repvit_sam(small_checkpoint)


def test_truncated_checkpoint(tmp_path, small_checkpoint):
    data = small_checkpoint.read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or not a PyTorch checkpoint"):
        build_repvit_sam(path, variant="m0_9")


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "photo.pt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(CheckpointError, match="truncated or not a PyTorch checkpoint"):
        build_repvit_sam(path)


def test_pickled_object_is_refused_without_running_it(tmp_path):
    path = tmp_path / "model.pt"
    with path.open("wb") as stream:
        pickle.dump({"model": _Evil()}, stream)
    with pytest.raises(CheckpointError):
        build_repvit_sam(path)


class _Evil:
    def __reduce__(self):
        return (exec, ("raise SystemExit('code ran')",))


def test_missing_file_says_where_to_get_weights(tmp_path):
    with pytest.raises(CheckpointError, match="repvit-sam download"):
        build_repvit_sam(tmp_path / "nope.pt")


def test_non_tensor_entries(tmp_path):
    path = tmp_path / "odd.pt"
    torch.save({"a": 1, "b": "text"}, path)
    with pytest.raises(CheckpointError, match="not a state dict"):
        read_state_dict(path)


def test_partial_checkpoint_lists_missing_keys(small_model):
    state = dict(small_model.state_dict())
    del state["mask_decoder.iou_token.weight"]
    with pytest.raises(CheckpointError, match=r"1 missing keys: mask_decoder\.iou_token\.weight"):
        build_repvit_sam(state, variant="m0_9")


def test_describe_unrelated():
    assert describe_checkpoint({"fc.weight": torch.zeros(2, 2)}) == "not a SAM-family checkpoint"
