"""A calibrated stand-in for the official weights, for measuring reduced precision.

The reference's deterministic fill (``../shared/reference/fill_weights.py``) proves that two
implementations compute the same function, but its BatchNorm statistics are random: nothing
normalises the activations, which grow through the 54 residual blocks to about 1e15. No
precision but fp32 says anything about such a network. The stand-in keeps every weight of the
fill and re-estimates every BatchNorm's running mean and variance on natural images
(scikit-image's sample photos, ``repvit_sam.quantize.SAMPLE_PHOTOS``), as BatchNorm
recalibration does: the layers normalise what they actually see, so the activations sit at a
trained network's scale. It is still not a trained network (its masks mean nothing); it is a
network whose numbers are the right size. The checkpoint has the official key layout::

    python benchmarks/standin.py weights/standin.pt [--images 18] [--batch 2] [--seed 0]

It prints the largest activation of each stage before and after, so the claim is checked in the
same run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from segment_anything.modeling import Sam

from repvit_sam import build_repvit_sam
from repvit_sam.quantize import encoder_input, sample_photos

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


def filled_model(seed: int) -> Sam:
    """The unfused m2_3 model with the reference's deterministic weights."""
    if not (REFERENCE / "fill_weights.py").is_file():
        raise SystemExit(f"the reference fill is missing: {REFERENCE / 'fill_weights.py'}")
    sys.path.insert(0, str(REFERENCE))
    from fill_weights import fill_

    model = build_repvit_sam(fuse=False)
    state = model.state_dict()
    fill_(state, seed=seed)
    model.load_state_dict(state)
    return model.eval()


@torch.no_grad()
def stage_maxima(model: Sam, images: torch.Tensor) -> list[float]:
    """max |activation| after the stem, each stage transition's input and the neck."""
    encoder = model.image_encoder
    maxima, x = [], images
    for index, block in enumerate(encoder.features):
        x = block(x)
        if index == 0 or index == len(encoder.features) - 1 or x.shape[1] != block_input(block):
            maxima.append(float(x.abs().max()))
    maxima.append(float(encoder.neck(x).abs().max()))
    return maxima


def block_input(block: torch.nn.Module) -> int:
    first = next(m for m in block.modules() if isinstance(m, torch.nn.Conv2d))
    return first.in_channels


@torch.no_grad()
def recalibrate_batch_norms(model: Sam, batches: list[torch.Tensor]) -> int:
    """Replaces every BatchNorm's running statistics by their average over ``batches``.

    Train mode normalises each batch by its own statistics, so every layer sees inputs already
    normalised by the layers before it; ``momentum=None`` makes the running statistics the
    plain average over the batches. Returns the number of BatchNorms.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
        norm.train()
    for batch in batches:
        model.image_encoder(batch)
    for norm in norms:
        norm.momentum = 0.1
        norm.eval()
    return len(norms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="where to write the checkpoint (.pt)")
    parser.add_argument("--images", type=int, default=None, help="photos to use (default all)")
    parser.add_argument("--batch", type=int, default=2, help="photos per BatchNorm batch")
    parser.add_argument("--seed", type=int, default=0, help="the reference fill's seed")
    args = parser.parse_args()
    if args.batch < 1 or (args.images is not None and args.images < 1):
        parser.error("--images and --batch must be at least 1")

    started = time.perf_counter()
    model = filled_model(args.seed)
    photos = sample_photos()[: args.images]
    inputs = torch.cat([encoder_input(model, photo) for photo in photos])
    batches = list(inputs.split(args.batch))
    probe = inputs[:1]
    before = stage_maxima(model, probe)
    count = recalibrate_batch_norms(model, batches)
    after = stage_maxima(model, probe)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.output)
    print(
        f"{count} BatchNorms re-estimated on {len(photos)} sample photos in batches of "
        f"{args.batch} ({time.perf_counter() - started:.0f} s); wrote {args.output}"
    )
    print("max |activation| on the first photo (stem, stages, last block, neck):")
    print("  reference fill: " + " ".join(f"{v:.2e}" for v in before))
    print("  stand-in:       " + " ".join(f"{v:.2e}" for v in after))


if __name__ == "__main__":
    main()
