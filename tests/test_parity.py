"""The official parity case: deterministic weights, skimage's coffee, five prompt cases."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from repvit_sam import Predictor, build_repvit_sam, fuse

skimage_data = pytest.importorskip("skimage.data")


def _fill_weights(reference_dir):
    spec = importlib.util.spec_from_file_location("fill_weights", reference_dir / "fill_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.fill_


@pytest.fixture(scope="module")
def reference(reference_dir):
    npz = reference_dir / "parity_coffee.npz"
    if not npz.is_file():
        pytest.skip(f"{npz} not found")
    cases = json.loads((reference_dir / "parity_coffee_cases.json").read_text())
    return np.load(npz), cases


@pytest.fixture(scope="module")
def parity_model(reference_dir):
    model = build_repvit_sam()
    state_dict = model.state_dict()
    _fill_weights(reference_dir)(state_dict, seed=0)
    model.load_state_dict(state_dict)
    return model


def _run_cases(predictor, embedding, cases):
    outputs = {}
    for name, case in cases.items():
        mask_input = None
        if "mask_input_from" in case:
            _, scores, logits = outputs[case["mask_input_from"]]
            mask_input = logits[np.argmax(scores)][None]
        if "boxes" in case:
            masks, scores, logits = predictor.predict(
                box=np.array(case["boxes"]),
                multimask_output=case["multimask"],
                return_logits=True,
                embedding=embedding,
            )
            masks = masks > predictor.model.mask_threshold
        else:
            masks, scores, logits = predictor.predict(
                point_coords=np.array(case["points"]) if "points" in case else None,
                point_labels=np.array(case["labels"]) if "labels" in case else None,
                box=np.array(case["box"]) if "box" in case else None,
                mask_input=mask_input,
                multimask_output=case["multimask"],
                embedding=embedding,
            )
        outputs[name] = (masks, scores, logits)
    return outputs


# The reference was recorded on another CPU: the same float32 computation rounds differently on
# another machine's kernels (AVX-512 vs AVX2: 9.4e-5 on the embedding, measured on an AMD EPYC).
# "exact" is therefore the reference's own float32-vs-float64 bound, 3e-4, not bit equality;
# bit equality with the official computation on one machine is test_backends' unfused check.
CROSS_CPU_EMBEDDING_ATOL = 3e-4


def _check(reference, embedding, outputs, exact):
    npz, cases = reference
    embedding_diff = np.abs(embedding.numpy() - npz["embedding"]).max()
    assert tuple(embedding.input_size) == tuple(npz["input_size"])
    assert tuple(embedding.original_size) == tuple(npz["original_size"])
    assert embedding_diff <= (CROSS_CPU_EMBEDDING_ATOL if exact else 5e-3)
    for name in cases:
        masks, scores, logits = outputs[name]
        shape = tuple(npz[f"{name}.masks_shape"])
        expected_masks = np.unpackbits(
            npz[f"{name}.masks_packbits"], axis=-1, count=shape[-1]
        ).astype(bool)
        assert masks.shape == shape, name
        assert np.abs(scores - npz[f"{name}.iou"]).max() <= (1e-5 if exact else 1e-2), name
        assert np.abs(logits - npz[f"{name}.low_res_logits"]).max() <= (1e-4 if exact else 2e-2)
        assert (masks == expected_masks).mean() >= (0.99999 if exact else 0.999), name


@pytest.mark.slow
def test_unfused_matches_the_official_outputs(reference, parity_model):
    predictor = Predictor(parity_model)
    embedding = predictor.embed(skimage_data.coffee())
    _check(reference, embedding, _run_cases(predictor, embedding, reference[1]), exact=True)


@pytest.mark.slow
def test_fused_matches_the_official_outputs(reference, parity_model):
    model = fuse(build_repvit_sam(parity_model.state_dict()))
    predictor = Predictor(model)
    embedding = predictor.embed(skimage_data.coffee())
    _check(reference, embedding, _run_cases(predictor, embedding, reference[1]), exact=False)


@pytest.mark.slow
def test_stateful_path_matches_too(reference, parity_model):
    npz, cases = reference
    predictor = Predictor(parity_model)
    predictor.set_image(skimage_data.coffee())
    case = cases["point_multimask"]
    _, scores, _ = predictor.predict(
        np.array(case["points"]), np.array(case["labels"]), multimask_output=True
    )
    assert np.abs(scores - npz["point_multimask.iou"]).max() <= 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "onnxruntime", "openvino"])
def test_every_backend_matches_the_official_outputs(reference, parity_model, backend):
    from repvit_sam.backends import is_available, make_encoder

    if not is_available(backend):
        pytest.skip(f"{backend} is not installed")
    model = build_repvit_sam(parity_model.state_dict())
    predictor = Predictor(model, encoder=make_encoder(model, backend))
    embedding = predictor.embed(skimage_data.coffee())
    _check(reference, embedding, _run_cases(predictor, embedding, reference[1]), exact=False)


def _thin_gradient(height: int = 511, width: int = 1, seed: int = 107) -> np.ndarray:
    """A smooth HxWx3 uint8 image; at 511x1 the encoder input is 1024x2 of content, rest padding."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    y, x = y / max(height - 1, 1), x / max(width - 1, 1)
    channels = [
        0.5 + 0.5 * np.sin(rng.uniform(1, 6) * x + rng.uniform(1, 6) * y + rng.uniform(0, 6))
        for _ in range(3)
    ]
    return np.round(255 * np.stack(channels, -1)).astype(np.uint8)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_exported_backends_keep_squeeze_excite_gates_on_a_thin_image(parity_model, backend):
    """On this image some squeeze-excite gates sit near 0.5; a single-pass float32 mean over a
    256x256 map (what OpenVINO made of the export before grouped means) flipped them and moved
    the embedding by 2.0."""
    from repvit_sam.backends import is_available, make_encoder

    if not is_available(backend):
        pytest.skip(f"{backend} is not installed")
    image = _thin_gradient()
    expected = Predictor(parity_model).embed(image).features
    model = build_repvit_sam(parity_model.state_dict())
    actual = Predictor(model, encoder=make_encoder(model, backend)).embed(image).features
    assert (actual - expected).abs().max() <= 5e-3
