"""One table: RepViT-SAM's encoder per backend and decoder vs segment-anything's, and MobileSAM.

Every figure comes from this one run on this machine. Each row runs in its own process (so its
peak memory is its own) with the same thread count; latencies are medians. The rows take turns
over ``--rounds`` rounds, so that a slow spell of a shared machine falls on all of them rather
than on whichever row ran then. Random weights: the work does not depend on their values. ::

    python benchmarks/speed.py                  # everything, 2 threads
    python benchmarks/speed.py --only encoder   # the encoder rows alone

Rows:
  encoder/*   1x3x1024x1024 preprocessed image -> 1x256x64x64 embedding; ratio to the unfused
              PyTorch computation (what the official code runs).
  encoder/* int8, bf16   the same through reduced precision (not exact: benchmarks/precision.py
              measures agreement); bf16 only where the CPU has it natively.
  batch/*     the fp32 encoder on B = 1, 4, 8 images per call; images/s, ratio per call to B=1
              (the dataset jobs' "encoder batch size effect").
  amg/*       automatic masks of skimage's coffee photo from its embedding (16x16 points, every
              mask drawn: filters off), ours against segment-anything's generator on the same
              model (benchmarks/amg.py compares their records).
  decoder/*   prompt encoder + mask decoder for 1 or 64 single-point prompts (multimask, low-res
              logits) against one embedding; ratio to segment-anything's decoder. "ours" reuses
              the per-image context, as a predictor does between clicks on one image.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import print_table, run_row_here, run_row_in_subprocess, summarize

IMAGE = 1024
BATCH_SIZES = (1, 4, 8)
AMG_POINTS = 16


def _repvit(fused: bool = False):
    from repvit_sam import build_repvit_sam

    # The same weights in every row's process: the ONNX export and the int8 model are made
    # once and found in the cache folder by the later rounds.
    torch.manual_seed(0)
    return build_repvit_sam(fuse=fused)


def _images() -> torch.Tensor:
    return torch.randn(1, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(0))


def _mobile_sam():
    import warnings

    warnings.filterwarnings("ignore")
    from mobile_sam import sam_model_registry

    return sam_model_registry["vit_t"]().eval()


def _encoder_row(kind: str, precision: str = "fp32", parts: int = 1):
    images = _images()
    if kind == "mobilesam":
        encoder = _mobile_sam().image_encoder
    elif kind in ("unfused", "fused"):
        encoder = _repvit(fused=kind == "fused").image_encoder
    else:
        from repvit_sam.backends import make_encoder

        encoder = make_encoder(_repvit(), kind, precision=precision, parts=parts)

    def run():
        with torch.inference_mode():
            return encoder(images)

    return run


def _prompts(prompt_encoder, count: int):
    generator = torch.Generator().manual_seed(1)
    points = torch.rand(count, 1, 2, generator=generator) * IMAGE
    labels = torch.ones(count, 1, dtype=torch.int)
    return (points, labels)


def _decoder_row(kind: str, count: int):
    embedding = torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(2))
    model = _mobile_sam() if kind == "mobilesam" else _repvit()
    prompt_encoder, mask_decoder = model.prompt_encoder, model.mask_decoder
    points = _prompts(prompt_encoder, count)
    if kind == "ours":
        from repvit_sam.modeling.batched_decoder import BatchedMaskDecoder

        decoder = BatchedMaskDecoder(prompt_encoder, mask_decoder)
        with torch.inference_mode():
            context = decoder.image_context(embedding)

        def run():
            with torch.inference_mode():
                sparse, _ = prompt_encoder(points=points, boxes=None, masks=None)
                return decoder(context, sparse, None, True)

        return run

    def run():
        with torch.inference_mode():
            sparse, dense = prompt_encoder(points=points, boxes=None, masks=None)
            return mask_decoder(embedding, prompt_encoder.get_dense_pe(), sparse, dense, True)

    return run


def _batch_row(kind: str, size: int):
    """The fp32 encoder on ``size`` images per call: PyTorch's channels-last encoder, or the
    encoder exported for a batch of ``size`` and compiled by OpenVINO (the library's export,
    which the dataset jobs run, takes one image per call)."""
    images = torch.randn(size, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(0))
    from repvit_sam.backends import make_encoder

    if kind == "torch":
        encoder = make_encoder(_repvit(), "torch")

        def run():
            return encoder(images)

        return run
    import tempfile

    import openvino

    from repvit_sam.onnx_export import export_encoder

    with tempfile.TemporaryDirectory() as folder:
        path = export_encoder(_repvit(), Path(folder) / "encoder.onnx", batch=size)
        config = {
            "INFERENCE_NUM_THREADS": torch.get_num_threads(),
            "INFERENCE_PRECISION_HINT": "f32",
        }
        compiled = openvino.Core().compile_model(str(path), "CPU", config)
    array = images.numpy()
    return lambda: compiled(array)[0]


def _amg_row(kind: str):
    """Automatic masks of one photo from its embedding (computed once), every mask drawn."""
    import skimage.data
    from amg import build_model, sam_generator

    from repvit_sam import MaskGenerator, Predictor

    model = build_model("m2_3")
    image = skimage.data.coffee()
    embedding = Predictor(model).embed(image)
    params = {"points_per_side": AMG_POINTS, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
    if kind == "ours":
        generator = MaskGenerator(model, **params)
        return lambda: generator.generate(image, embedding=embedding)
    theirs = sam_generator(model, embedding, params)
    return lambda: theirs.generate(image)


ENCODER_ROWS = {
    "encoder/repvit unfused (official computation)": lambda: _encoder_row("unfused"),
    "encoder/repvit fused": lambda: _encoder_row("fused"),
    "encoder/repvit torch (fused, channels-last)": lambda: _encoder_row("torch"),
    "encoder/repvit onnxruntime": lambda: _encoder_row("onnxruntime"),
    "encoder/repvit openvino": lambda: _encoder_row("openvino"),
    # The service's default (REPVIT_SAM_ENCODER_PARTS): clicks run between the parts.
    "encoder/repvit openvino, 8 parts": lambda: _encoder_row("openvino", parts=8),
    "encoder/repvit openvino int8 (NNCF; not exact)": lambda: _encoder_row("openvino", "int8"),
    "encoder/repvit openvino bf16 (native; not exact)": lambda: _encoder_row("openvino", "bf16"),
    "encoder/mobilesam tinyvit": lambda: _encoder_row("mobilesam"),
}
DECODER_ROWS = {
    f"decoder/{kind} x{count}": (lambda kind=kind, count=count: _decoder_row(kind, count))
    for count in (1, 64)
    for kind in ("segment-anything", "ours", "mobilesam")
}
BATCH_ROWS = {
    f"batch/{kind} B={size}": (lambda kind=kind, size=size: _batch_row(kind, size))
    for kind in ("torch", "openvino")
    for size in BATCH_SIZES
}
AMG_ROWS = {
    f"amg/{kind} {AMG_POINTS}x{AMG_POINTS} no filters": (lambda kind=kind: _amg_row(kind))
    for kind in ("segment-anything", "ours")
}
ROWS = {**ENCODER_ROWS, **DECODER_ROWS, **BATCH_ROWS, **AMG_ROWS}


def _repeats(row: str) -> int:
    """Timed calls per round: fewer for the rows that take seconds per call."""
    if row.startswith(("amg/", "batch/")):
        return 2
    return 3 if row.startswith("encoder/") or row.endswith("x64") else 7


def _available(row: str) -> bool:
    import importlib.util

    from repvit_sam import runtimes

    for package in ("onnxruntime", "openvino"):
        if package in row and importlib.util.find_spec(package) is None:
            return False
    if "int8" in row and runtimes.missing_modules("int8"):
        return False
    if "bf16" in row and not runtimes.native_bf16(runtimes.cpu_flags()):
        return False
    return "mobilesam" not in row or importlib.util.find_spec("mobile_sam") is not None


def _baseline(row: str) -> str:
    if row.startswith("encoder/"):
        return "encoder/repvit unfused (official computation)"
    if row.startswith("batch/"):
        return row.rsplit(" ", 1)[0] + " B=1"
    if row.startswith("amg/"):
        return f"amg/segment-anything {AMG_POINTS}x{AMG_POINTS} no filters"
    return f"decoder/segment-anything x{row.rsplit('x', 1)[1]}"


def _images_per_call(row: str) -> int:
    """Images an encoder row encodes per call (0 for the other rows)."""
    if row.startswith("batch/"):
        return int(row.rsplit("=", 1)[1])
    return 1 if row.startswith("encoder/") else 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", choices=("encoder", "decoder", "batch", "amg"), help="one part of the table"
    )
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--repeats", type=_positive, help="timed calls per row and round")
    parser.add_argument(
        "--rounds", type=_positive, default=3, help="turns each row takes (default 3)"
    )
    parser.add_argument("--row", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.row:
        import json

        print(json.dumps(run_row_here(ROWS[args.row], args.repeats)))
        return

    rows = [r for r in ROWS if args.only is None or r.startswith(args.only)]
    for row in [r for r in rows if not _available(r)]:
        print(f"skipping {row}: not installed", file=sys.stderr)
        rows.remove(row)
    rounds: dict[str, list[dict[str, object]]] = {row: [] for row in rows}
    for turn in range(1, args.rounds + 1):
        for row in rows:
            repeats = args.repeats or _repeats(row)
            result = run_row_in_subprocess(Path(__file__), row, repeats, args.threads)
            rounds[row].append(result)
            median_ms = statistics.median(result["times_s"]) * 1000
            print(f"round {turn}/{args.rounds} {row}: {median_ms:.1f} ms", file=sys.stderr)
    results = {row: summarize(results) for row, results in rounds.items()}

    table = []
    for row, result in results.items():
        baseline = results.get(_baseline(row))
        ratio = f"{result['median_s'] / baseline['median_s']:.2f}x" if baseline else "-"
        rate = f"{_images_per_call(row) / result['median_s']:.2f}" if _images_per_call(row) else "-"
        median_ms = f"{result['median_s'] * 1000:.1f}"
        table.append([row, median_ms, ratio, rate, f"{result['peak_mib']:.0f}"])
    print(
        f"{platform.processor() or platform.machine()}, {args.threads} threads, torch "
        f"{torch.__version__}, fp32 unless a row says otherwise, 1024x1024"
    )
    print_table(["row", "median ms", "ratio to baseline", "images/s", "peak RSS MiB"], table)


if __name__ == "__main__":
    main()
