"""Reduced precision against fp32 on the calibrated stand-in: agreement and speed, one run.

Agreement only means something where activations sit at a trained network's scale, so this runs
on the stand-in of ``benchmarks/standin.py`` (the reference fill with BatchNorm statistics
re-estimated on natural images), never on the raw fill. Write it first::

    python benchmarks/standin.py weights/standin.pt
    python benchmarks/precision.py weights/standin.pt [--threads 2] [--repeats 3]

Images: scikit-image's 18 sample photos (``repvit_sam.quantize.SAMPLE_PHOTOS``, 7 colour and
11 greyscale) and the 7 colour ones mirrored left to right: 25 images. The int8 encoder is
calibrated on its default set, the 18 photos, so 18 of the 25 were seen in calibration (the
mirrored 7 only as their originals); ``--holdout`` calibrates on the even-numbered photos only
and evaluates on the rest and the mirrors.

Per image and precision: the embedding's relative error (Frobenius norm of the difference over
fp32's); for 3 point prompts (at the quarter points of the diagonal and the centre) and 2 box
prompts (the centre half and the whole image less 10% margins), each answering 3 masks, mask
IoU with fp32's and the predicted-IoU difference. fp32 is the exact OpenVINO encoder; masks
come from the same decoder on each embedding. Times: median encoder call on a 1024x1024 input
beside the unfused PyTorch computation, interleaved in one process.

The run also prints how strongly the stand-in amplifies a perturbation (input noise of 1e-4 of
its standard deviation): its weights are random, and a random network 54 residual blocks deep
is chaotic where a trained one is not (measured: 1e-4 of input noise moves its embedding by
about 4%), so these figures bound what a trained model would lose from above rather than
estimate it.
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import print_table

from repvit_sam import Predictor, build_repvit_sam, runtimes
from repvit_sam.backends import make_encoder
from repvit_sam.quantize import COLOUR_PHOTOS, encoder_input, sample_photos


def evaluation_images(holdout: bool) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """(evaluation images, calibration images or None for the default set)."""
    photos = sample_photos()
    mirrored = [photo[:, ::-1].copy() for photo in photos[: len(COLOUR_PHOTOS)]]
    if not holdout:
        return photos + mirrored, None
    return photos[1::2] + mirrored, photos[0::2]


def prompts(height: int, width: int) -> list[dict[str, np.ndarray]]:
    points = [(0.25, 0.25), (0.5, 0.5), (0.75, 0.75)]
    boxes = [(0.25, 0.25, 0.75, 0.75), (0.1, 0.1, 0.9, 0.9)]
    scale = np.array([width, height])
    out = [{"point_coords": np.array([p]) * scale, "point_labels": np.array([1])} for p in points]
    out += [{"box": np.array(b) * np.tile(scale, 2)} for b in boxes]
    return out


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def agreement(model, encoders: dict, images: list[np.ndarray]) -> dict[str, dict[str, list]]:
    """Per reduced precision: embedding errors, and mask IoUs / score differences per kind."""
    decoder = Predictor(model)
    reference = Predictor(model, encoder=encoders["fp32"])
    results = {
        name: {"error": [], "point_iou": [], "box_iou": [], "point_score": [], "box_score": []}
        for name in encoders
        if name != "fp32"
    }
    for image in images:
        expected = reference.embed(image)
        cases = prompts(*image.shape[:2])
        wanted = [decoder.predict(**case, embedding=expected) for case in cases]
        for name, result in results.items():
            actual = Predictor(model, encoder=encoders[name]).embed(image)
            diff = (actual.features - expected.features).norm() / expected.features.norm()
            result["error"].append(float(diff))
            for case, (masks_a, scores_a, _) in zip(cases, wanted, strict=True):
                masks_b, scores_b, _ = decoder.predict(**case, embedding=actual)
                kind = "box" if "box" in case else "point"
                result[f"{kind}_iou"] += [iou(a, b) for a, b in zip(masks_a, masks_b, strict=True)]
                result[f"{kind}_score"] += list(np.abs(scores_a - scores_b))
    return results


def sensitivity(encoder, model, image: np.ndarray, scale: float = 1e-4) -> float:
    """Relative change of the fp32 embedding when the input gets Gaussian noise of ``scale``
    times its standard deviation: how much this network amplifies any perturbation."""
    images = encoder_input(model, image)
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(0))
    clean, noisy = encoder(images), encoder(images + scale * images.std() * noise)
    return float((noisy - clean).norm() / clean.norm())


def timings(model, encoders: dict, repeats: int) -> dict[str, float]:
    """Median seconds per encoder call on one 1024x1024 input, the rows taking turns."""
    unfused = copy.deepcopy(model).image_encoder.eval()
    rows = {"unfused (official computation)": unfused, **encoders}
    images = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(0))
    times: dict[str, list[float]] = {name: [] for name in rows}
    with torch.inference_mode():
        for function in rows.values():
            function(images)
        for _ in range(repeats):
            for name, function in rows.items():
                started = time.perf_counter()
                function(images)
                times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="the stand-in (benchmarks/standin.py)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per encoder")
    parser.add_argument("--holdout", action="store_true", help="calibrate on half the photos")
    parser.add_argument("--cache-dir", type=Path, help="encoder cache folder (default: user's)")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if not args.checkpoint.is_file():
        parser.error(f"{args.checkpoint}: no such file; write it with benchmarks/standin.py")
    torch.set_num_threads(args.threads)
    model = build_repvit_sam(args.checkpoint)
    images, calibration = evaluation_images(args.holdout)
    options = {"threads": args.threads, "cache_dir": args.cache_dir}
    started = time.perf_counter()
    encoders = {"fp32": make_encoder(copy.deepcopy(model), "openvino", **options)}
    encoders["int8"] = make_encoder(
        copy.deepcopy(model),
        "openvino",
        precision="int8",
        calibration_images=calibration,
        **options,
    )
    print(f"int8 encoder ready in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    if runtimes.native_bf16(runtimes.cpu_flags()):
        encoders["bf16"] = make_encoder(
            copy.deepcopy(model), "openvino", precision="bf16", **options
        )
    results = agreement(model, encoders, images)
    amplified = sensitivity(encoders["fp32"], model, images[0])
    seconds = timings(model, encoders, args.repeats)

    base = seconds["unfused (official computation)"]
    print(
        f"{platform.processor() or platform.machine()}, {args.threads} threads, stand-in "
        f"{args.checkpoint.name}, {len(images)} images, 5 prompts x 3 masks each"
        + (" (int8 calibrated on other photos)" if args.holdout else "")
    )
    rows = [
        [name, f"{s * 1000:.0f}", f"{s / base:.2f}x", "", "", "", ""] for name, s in seconds.items()
    ]
    for row in rows:
        result = results.get(row[0])
        if result is not None:
            row[3] = f"{np.mean(result['error']):.4f} / {np.max(result['error']):.4f}"
            row[4] = f"{np.mean(result['point_iou']):.4f} / {np.min(result['point_iou']):.3f}"
            row[5] = f"{np.mean(result['box_iou']):.4f} / {np.min(result['box_iou']):.3f}"
            scores = result["point_score"] + result["box_score"]
            row[6] = f"{np.mean(scores):.4f} / {np.max(scores):.4f}"
    print(
        f"fp32 sensitivity: input noise of 1e-4 of its std changes the embedding by "
        f"{amplified:.2e} (relative)"
    )
    print_table(
        [
            "encoder",
            "median ms",
            "ratio to unfused",
            "embedding rel. error mean / max",
            "point mask IoU mean / min",
            "box mask IoU mean / min",
            "IoU-score diff mean / max",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
