from __future__ import annotations

import copy
import threading

import numpy as np
import onnxruntime
import pytest
import torch

from repvit_sam import (
    InvalidInputError,
    PrecisionOverflowError,
    Predictor,
    backends,
    build_repvit_sam,
    runtimes,
)
from repvit_sam.backends import (
    BACKENDS,
    between_layers,
    check_finite,
    is_available,
    make_encoder,
    resolve_backend,
)
from repvit_sam.float32 import _tf32_switches, full_float32
from repvit_sam.onnx_export import export_decoder, export_encoder

CPU_BACKENDS = [b for b in ("torch", "onnxruntime", "openvino") if is_available(b)]


@pytest.fixture(scope="module")
def model(small_model):
    return copy.deepcopy(small_model)


@pytest.fixture(scope="module")
def images():
    return torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_backend_matches_the_unfused_model(model, images, backend):
    with torch.inference_mode():
        expected = model.image_encoder(images)
    encoder = make_encoder(copy.deepcopy(model), backend)
    actual = encoder(images)
    assert actual.shape == expected.shape and actual.dtype == torch.float32
    assert (actual - expected).abs().max() <= 5e-3


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_predictor_with_backend(model, backend, rgb_image):
    reference = Predictor(model)
    fast = Predictor(copy.deepcopy(model), encoder=make_encoder(copy.deepcopy(model), backend))
    a, b = reference.embed(rgb_image), fast.embed(rgb_image)
    assert (a.features - b.features).abs().max() <= 5e-3
    prompt = {"point_coords": np.array([[80, 50]]), "point_labels": np.array([1])}
    masks_a, scores_a, _ = reference.predict(**prompt, embedding=a)
    masks_b, scores_b, _ = fast.predict(**prompt, embedding=b)
    assert np.abs(scores_a - scores_b).max() <= 1e-2 and (masks_a == masks_b).mean() >= 0.999


def test_auto_rule():
    cpu = torch.device("cpu")
    order = runtimes.cpu_backend_order(runtimes.cpu_flags())
    assert resolve_backend("auto", cpu) == next(b for b in order if is_available(b))
    assert resolve_backend("auto", torch.device("cuda")) == "torch"


@pytest.mark.parametrize(
    ("flags", "installed", "expected"),
    [
        ({"avx2", "avx512f", "amx_tile"}, {"openvino", "onnxruntime"}, "openvino"),
        ({"avx2"}, {"openvino", "onnxruntime"}, "openvino"),
        ({"avx2", "avx512f"}, {"onnxruntime"}, "onnxruntime"),
        ({"avx2"}, {"onnxruntime"}, "torch"),  # AVX2 only: PyTorch measured ahead of ORT
        (set(), set(), "torch"),
    ],
)
def test_auto_follows_the_cpu(monkeypatch, flags, installed, expected):
    monkeypatch.setattr(backends, "cpu_flags", lambda: frozenset(flags))
    monkeypatch.setattr(backends, "is_available", lambda b: b == "torch" or b in installed)
    assert resolve_backend("auto", torch.device("cpu")) == expected


@pytest.mark.parametrize(
    ("backend", "precision", "message"),
    [
        ("tensorrt", "fp32", "backend must be one of"),
        ("torch", "fp16", "needs a CUDA device"),
        ("torch", "fp64", "precision must be one of"),
    ],
)
def test_bad_backend_options(model, backend, precision, message):
    with pytest.raises(InvalidInputError, match=message):
        make_encoder(copy.deepcopy(model), backend, precision=precision)


def test_backends_are_listed():
    assert set(BACKENDS) == {"auto", "torch", "onnxruntime", "openvino"}


def test_encoder_export_with_preprocessing(model, rgb_image, tmp_path):
    predictor = Predictor(model)
    expected = predictor.embed(rgb_image).features.numpy()
    path = export_encoder(model, tmp_path / "encoder.onnx", preprocess=True)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    resized = predictor.transform.apply_image(rgb_image).astype(np.float32)
    (actual,) = session.run(None, {"input_image": resized})
    assert actual.shape == expected.shape and np.abs(actual - expected).max() <= 5e-3


def test_decoder_export_has_sams_signature_and_matches(model, rgb_image, tmp_path):
    path = export_decoder(model, tmp_path / "decoder.onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [
        "image_embeddings",
        "point_coords",
        "point_labels",
        "mask_input",
        "has_mask_input",
        "orig_im_size",
    ]
    assert [o.name for o in session.get_outputs()] == ["masks", "iou_predictions", "low_res_masks"]
    predictor = Predictor(model)
    side = predictor.mask_input_size
    # Aspect ratios other than the export example's: the crop must follow orig_im_size.
    for image, points, labels in (
        (rgb_image, np.array([[80.0, 50.0]]), np.array([1])),
        (
            np.ascontiguousarray(rgb_image.transpose(1, 0, 2)),
            np.array([[80.0, 50.0], [10.0, 10.0], [30.0, 20.0]]),
            np.array([1, 0, 1]),
        ),
    ):
        embedding = predictor.embed(image)
        # SAM's ONNX decoder returns all four masks: the single-mask output, then the three.
        single = predictor.predict(points, labels, multimask_output=False, embedding=embedding)
        multi = predictor.predict(points, labels, multimask_output=True, embedding=embedding)
        expected_scores = np.concatenate([single[1], multi[1]])
        expected_logits = np.concatenate([single[2], multi[2]])
        expected_masks = np.concatenate([single[0], multi[0]])
        # SAM's ONNX convention: a padding point labelled -1, coordinates in the encoder frame.
        coords = predictor.transform.apply_coords(points, embedding.original_size)
        feeds = {
            "image_embeddings": embedding.numpy(),
            "point_coords": np.concatenate([coords, [[0.0, 0.0]]])[None].astype(np.float32),
            "point_labels": np.concatenate([labels, [-1]])[None].astype(np.float32),
            "mask_input": np.zeros((1, 1, side, side), np.float32),
            "has_mask_input": np.zeros(1, np.float32),
            "orig_im_size": np.array(embedding.original_size, np.float32),
        }
        masks, scores, logits = session.run(None, feeds)
        np.testing.assert_allclose(scores[0], expected_scores, atol=1e-4)
        np.testing.assert_allclose(logits[0], expected_logits, atol=1e-3)
        assert masks.shape == (1, 4, *image.shape[:2])
        assert ((masks[0] > 0) == expected_masks).mean() >= 0.999


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_cuda_end_to_end(small_checkpoint, rgb_image, precision):
    model = build_repvit_sam(small_checkpoint, variant="m0_9", image_size=256, device="cuda")
    reference = Predictor(build_repvit_sam(small_checkpoint, variant="m0_9", image_size=256))
    predictor = Predictor(model, encoder=make_encoder(model, "torch", precision=precision))
    a, b = reference.embed(rgb_image), predictor.embed(rgb_image)
    # TF32 convolutions (PyTorch's cuDNN default, switched off for fp32) move it by ~3e-3.
    tolerance = 1e-4 if precision == "fp32" else 1e-1
    assert b.features.is_cuda and b.features.dtype == torch.float32
    assert (a.features - b.features.cpu()).abs().max() <= tolerance
    point = (np.array([[80, 50]]), np.array([1]))
    masks, scores, logits = predictor.predict(*point, embedding=b)
    assert masks.shape == (3, 120, 160)
    if precision == "fp32":
        _, expected_scores, expected_logits = reference.predict(*point, embedding=a)
        np.testing.assert_allclose(scores, expected_scores, atol=1e-3)
        np.testing.assert_allclose(logits, expected_logits, atol=1e-2)


def test_unfused_torch_backend_is_the_official_computation_bit_for_bit(model, images):
    encoder = make_encoder(copy.deepcopy(model), "torch", fuse=False)
    with torch.inference_mode():
        assert torch.equal(encoder(images), model.image_encoder(images))


def test_full_float32_turns_tf32_off_on_cuda_only_and_restores_it():
    switches = _tf32_switches()

    def flags():
        return [getattr(owner, name) for owner, name, _ in switches]

    before = flags()
    assert before != [value for _, _, value in switches]  # PyTorch's default allows TF32
    with full_float32(torch.device("cpu")):
        assert flags() == before
    with full_float32(torch.device("cuda", 0)):
        assert flags() == [value for _, _, value in switches]
    assert flags() == before
    assert isinstance(torch.backends.cudnn.allow_tf32, bool)  # the legacy getter still works


def test_full_float32_overlapping_in_two_threads_restores_the_flags_once():
    switches = _tf32_switches()

    def flags():
        return [getattr(owner, name) for owner, name, _ in switches]

    before, full = flags(), [value for _, _, value in switches]
    a_inside, a_may_leave, b_inside, b_may_leave = (threading.Event() for _ in range(4))
    seen = {}

    def thread_a():
        with full_float32(torch.device("cuda")):
            a_inside.set()
            a_may_leave.wait(5)

    def thread_b():
        a_inside.wait(5)
        with full_float32(torch.device("cuda")):
            b_inside.set()
            b_may_leave.wait(5)
            seen["after a left"] = flags()

    threads = [threading.Thread(target=thread_a), threading.Thread(target=thread_b)]
    for thread in threads:
        thread.start()
    b_inside.wait(5)
    a_may_leave.set()
    threads[0].join(5)
    b_may_leave.set()
    threads[1].join(5)
    assert seen["after a left"] == full  # B still runs in full float32
    assert flags() == before  # and the last one out restored the original flags


def test_reduced_precision_overflow_is_a_named_error():
    check_finite(torch.ones(1, 4, 2, 2, dtype=torch.float16), "fp16")
    overflowed = torch.tensor([1.0, float("inf"), float("nan")], dtype=torch.float16)
    with pytest.raises(PrecisionOverflowError, match=r"overflowed in fp16.*'bf16'"):
        check_finite(overflowed, "fp16")


def test_torch_backend_fuses_only_when_asked(model):
    from repvit_sam.modeling import is_fused

    unfused = make_encoder(copy.deepcopy(model), "torch", fuse=False)
    assert not is_fused(unfused.encoder)
    assert is_fused(make_encoder(copy.deepcopy(model), "torch").encoder)


@pytest.mark.parametrize("runtime", [r for r in ("onnxruntime", "openvino") if is_available(r)])
def test_exported_squeeze_excite_keeps_small_gates_exact(runtime, tmp_path):
    """A gate of sigmoid(-20) still scales a large activation: ONNX Runtime's Sigmoid gives
    it several times too large, so the export spells the gate out as 1 / (1 + exp(-z))."""
    from repvit_sam.modeling import SqueezeExcite

    se = SqueezeExcite(8).eval()
    with torch.no_grad():
        for conv in (se.fc1, se.fc2):
            conv.weight.zero_()
        se.fc1.bias.zero_()
        se.fc2.bias.copy_(torch.linspace(-30, 5, 8))
    se.portable = True
    x = torch.rand(1, 8, 32, 32, generator=torch.Generator().manual_seed(0)) * 1e8 + 1e8
    path = tmp_path / "se.onnx"
    torch.onnx.export(se, (x,), str(path), dynamo=False, input_names=["x"])
    if runtime == "onnxruntime":
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        actual = session.run(None, {"x": x.numpy()})[0]
    else:
        import openvino

        compiled = openvino.Core().compile_model(
            str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
        )
        actual = np.array(compiled(x.numpy())[0])
    gates = torch.sigmoid(se.fc2.bias.detach().double()).reshape(1, 8, 1, 1)
    expected = (x.double() * gates).numpy()
    np.testing.assert_allclose(actual, expected, rtol=1e-5)


def test_channels_last_torch_encoder_uses_portable_squeeze_excite(model):
    from repvit_sam.modeling import SqueezeExcite

    encoder = make_encoder(copy.deepcopy(model), "torch")
    blocks = [m for m in encoder.encoder.modules() if isinstance(m, SqueezeExcite)]
    assert blocks and all(m.portable for m in blocks)


@pytest.mark.parametrize("backend", [b for b in ("onnxruntime", "openvino") if is_available(b)])
def test_exported_encoder_is_cached_by_weights(model, images, backend, tmp_path, monkeypatch):
    from repvit_sam import onnx_export

    exports = []
    real_export = onnx_export.export_encoder
    monkeypatch.setattr(
        onnx_export, "export_encoder", lambda *a, **k: exports.append(a) or real_export(*a, **k)
    )
    first = make_encoder(copy.deepcopy(model), backend, cache_dir=tmp_path)
    second = make_encoder(copy.deepcopy(model), backend, cache_dir=tmp_path)
    assert len(exports) == 1 and first.path == second.path
    torch.testing.assert_close(first(images), second(images), rtol=0, atol=0)
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.image_encoder.neck[0].weight.mul_(2)
    third = make_encoder(other, backend, cache_dir=tmp_path)
    assert len(exports) == 2 and third.path != first.path
    assert sorted(p.name for p in tmp_path.glob("*.onnx")) == sorted(
        {first.path.name, third.path.name}
    )  # no temporary export left beside them


def test_unwritable_encoder_cache_falls_back_to_a_temporary_export(model, tmp_path):
    if not is_available("onnxruntime"):
        pytest.skip("onnxruntime is not installed")
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder should be")
    encoder = make_encoder(copy.deepcopy(model), "onnxruntime", cache_dir=blocked / "encoders")
    assert encoder.path.is_file() and blocked not in encoder.path.parents


def test_a_backend_without_onnx_is_unavailable(monkeypatch):
    from repvit_sam import runtimes

    real_find_spec = runtimes.importlib.util.find_spec
    monkeypatch.setattr(
        runtimes.importlib.util,
        "find_spec",
        lambda name, *args: None if name == "onnx" else real_find_spec(name, *args),
    )
    assert not is_available("openvino") and not is_available("onnxruntime")
    assert resolve_backend("auto", torch.device("cpu")) == "torch"
    with pytest.raises(InvalidInputError, match=r"needs onnx.*repvit-sam\[openvino\]"):
        resolve_backend("openvino", torch.device("cpu"))


def test_between_layers_calls_back_before_every_part_of_a_torch_encoder(model, images):
    """A server runs clicks there (app/scheduler.py): between layers, never in one."""
    encoder = make_encoder(model, "torch", fuse=False)
    layers = [*model.image_encoder.features, model.image_encoder.neck]
    layers = [part for layer in layers for part in layer.children()]  # the parts of each
    entered: list[int] = []
    seen: list[int] = []
    with between_layers(encoder, lambda: seen.append(len(entered))) as yields:
        hooks = [  # after between_layers' own: they run after its callback
            layer.register_forward_pre_hook(lambda *_, i=i: entered.append(i))
            for i, layer in enumerate(layers)
        ]
        expected = encoder(images)
        for hook in hooks:
            hook.remove()
    assert yields
    # Called once per part, each time before that part started.
    assert seen == list(range(len(layers))) and entered == seen
    with between_layers(model.image_encoder, lambda: seen.append(-1)) as yields:
        model.image_encoder(images)
    assert yields and seen.count(-1) == len(layers)
    seen.clear()
    assert torch.equal(encoder(images), expected) and seen == []  # the hooks are gone
    with between_layers(lambda batch: batch, lambda: seen.append(0)) as yields:
        assert not yields  # a compiled graph runs in one piece


@pytest.mark.parametrize("backend", [b for b in ("onnxruntime", "openvino") if is_available(b)])
def test_an_encoder_exported_in_parts_is_the_same_function_with_calls_between_them(
    model, images, backend, tmp_path
):
    """The service exports its ONNX encoder in parts (REPVIT_SAM_ENCODER_PARTS) and runs
    waiting clicks between them."""
    whole = make_encoder(copy.deepcopy(model), backend, cache_dir=tmp_path)
    staged = make_encoder(copy.deepcopy(model), backend, cache_dir=tmp_path, parts=4)
    assert [p.name.rsplit("-", 1)[1] for p in staged.paths] == [
        f"part{index}of4.onnx" for index in range(1, 5)
    ]
    with pytest.raises(ValueError, match="4 parts"):
        _ = staged.path
    order: list[str] = []
    runs = staged.runs
    staged.runs = [
        lambda x, run=run, i=i: order.append(f"part {i}") or run(x) for i, run in enumerate(runs)
    ]
    with between_layers(staged, lambda: order.append("callback")) as yields:
        actual = staged(images)
    assert yields and order == [step for i in range(4) for step in ("callback", f"part {i}")]
    order.clear()
    staged(images)
    assert order == [f"part {i}" for i in range(4)]  # no callback outside the block
    torch.testing.assert_close(actual, whole(images), rtol=1e-5, atol=1e-5)
    with between_layers(whole, lambda: order.append("never")) as yields:
        whole(images)
    assert not yields and "never" not in order
    layers = len(model.image_encoder.features)
    for parts in (0, layers + 1):
        with pytest.raises(InvalidInputError, match=f"parts must be between 1 and {layers}"):
            make_encoder(copy.deepcopy(model), backend, cache_dir=tmp_path, parts=parts)


def test_encoder_parts_compose_to_the_encoder(model, images):
    from repvit_sam.modeling import encoder_parts

    encoder = model.image_encoder
    with torch.inference_mode():
        expected = encoder(images)
        for parts in (1, 3, len(encoder.features)):
            features = images
            modules = encoder_parts(encoder, parts)
            for module in modules:
                features = module(features)
            assert len(modules) == parts and torch.equal(features, expected)
    with pytest.raises(ValueError, match="parts must be between"):
        encoder_parts(encoder, 0)
