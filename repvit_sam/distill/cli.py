"""``repvit-sam distill ...``: teacher-embed, train, export, evaluate.

Several processes or GPUs through torchrun, e.g.::

    torchrun --nproc_per_node=8 -m repvit_sam.cli distill train --embeddings emb --output run
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

TEACHER_HELP = "teacher: vit_h, vit_l or vit_b (tiny: a 2-block test teacher at 64px)"


def register(sub: argparse._SubParsersAction) -> None:
    """Adds the ``distill`` command group to ``repvit-sam`` (entry point ``repvit_sam.cli``)."""
    distill = sub.add_parser(
        "distill",
        help="distil a RepViT encoder from a SAM teacher (teacher-embed, train, export, evaluate)",
        description="Decoupled distillation: precompute teacher embeddings, train a RepViT "
        "student to match them, export it as a RepViT-SAM checkpoint, evaluate it. "
        "Run under `torchrun -m repvit_sam.cli distill ...` for several processes or GPUs.",
    )
    distill.set_defaults(run=run)
    steps = distill.add_subparsers(dest="distill_command", required=True)

    embed = steps.add_parser("teacher-embed", help="precompute teacher embeddings (resumable)")
    embed.add_argument("--images", type=Path, required=True, help="folder of images (recursive)")
    embed.add_argument("--output", type=Path, required=True, help="folder for shards + manifest")
    embed.add_argument("--teacher", required=True, help=TEACHER_HELP)
    embed.add_argument("--teacher-checkpoint", type=Path, required=True, help="SAM checkpoint")
    embed.add_argument("--batch-size", type=int, default=8)
    embed.add_argument("--shard-size", type=int, default=256, help="embeddings per shard file")
    embed.add_argument("--num-workers", type=int, default=2)
    embed.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    embed.add_argument("--no-check", action="store_true", help="skip the image header check")
    embed.add_argument("--no-progress", action="store_true")

    train = steps.add_parser("train", help="train a student on teacher embeddings (resumable)")
    train.add_argument("--embeddings", type=Path, required=True, help="teacher-embed output")
    train.add_argument("--output", type=Path, required=True, help="run folder")
    train.add_argument("--variant", default="m2_3", help="student: m0_9, m1_0, m1_1, m1_5, m2_3")
    train.add_argument("--steps", type=int, default=1000, help="optimizer steps")
    train.add_argument("--batch-size", type=int, default=8, help="per process and micro-batch")
    train.add_argument("--accumulation", type=int, default=1, help="micro-batches per step")
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--weight-decay", type=float, default=0.05)
    train.add_argument("--warmup-steps", type=int, default=100)
    train.add_argument("--min-lr-ratio", type=float, default=0.01)
    train.add_argument("--augment", choices=("none", "flip"), default="none")
    train.add_argument("--checkpoint-every", type=int, default=500)
    train.add_argument("--keep-checkpoints", type=int, default=2)
    train.add_argument("--log-every", type=int, default=10)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--num-workers", type=int, default=4)
    train.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    train.add_argument("--no-bf16", action="store_true", help="no bf16 autocast on GPU")
    train.add_argument("--drop-path-rate", type=float, default=0.0)
    train.add_argument("--tensorboard", action="store_true", help="also write TensorBoard logs")
    train.add_argument("--no-resume", action="store_true", help="ignore checkpoints in --output")
    train.add_argument("--no-progress", action="store_true")

    export = steps.add_parser("export", help="write the student as a RepViT-SAM checkpoint")
    export.add_argument("--student", type=Path, required=True, help="run folder or encoder.pt")
    export.add_argument("--teacher-checkpoint", type=Path, required=True, help="SAM checkpoint")
    export.add_argument("-o", "--output", type=Path, required=True, help="checkpoint to write")
    export.add_argument("--variant", help="student variant (default: recognised)")

    evaluate = steps.add_parser("evaluate", help="embedding MSE and mask mIoU vs the teacher")
    evaluate.add_argument("--images", type=Path, required=True, help="held-out images")
    evaluate.add_argument("--teacher", required=True, help=TEACHER_HELP)
    evaluate.add_argument("--teacher-checkpoint", type=Path, required=True)
    evaluate.add_argument("--student", type=Path, required=True, help="exported checkpoint")
    evaluate.add_argument("--variant", help="student variant (default: recognised)")
    evaluate.add_argument("--points-per-side", type=int, default=4)
    evaluate.add_argument("--min-score", type=float, default=0.8)
    evaluate.add_argument("--max-images", type=int)
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--json", type=Path, help="also write the scores as JSON")
    evaluate.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    """Runs the ``distill`` subcommand in ``args``; prints its result."""
    return _COMMANDS[args.distill_command](args)


def _result(text: str) -> None:
    """Prints a command's result once: on rank 0 under torchrun."""
    if os.environ.get("RANK", "0") == "0":
        print(text)


def _teacher_embed(args: argparse.Namespace) -> int:
    from .embed import EmbedConfig, compute_teacher_embeddings

    manifest = compute_teacher_embeddings(
        EmbedConfig(
            images=args.images,
            output=args.output,
            teacher=args.teacher,
            teacher_checkpoint=args.teacher_checkpoint,
            batch_size=args.batch_size,
            shard_size=args.shard_size,
            num_workers=args.num_workers,
            device=args.device,
            check_images=not args.no_check,
            progress=not args.no_progress,
        )
    )
    summary = {k: manifest.get(k) for k in ("teacher", "image_size", "num_images")}
    _result(json.dumps({**summary, "output": str(args.output)}))
    return 0


def _train(args: argparse.Namespace) -> int:
    from .training import TrainConfig, train

    result = train(
        TrainConfig(
            embeddings=args.embeddings,
            output=args.output,
            variant=args.variant,
            steps=args.steps,
            batch_size=args.batch_size,
            accumulation=args.accumulation,
            lr=args.lr,
            weight_decay=args.weight_decay,
            warmup_steps=args.warmup_steps,
            min_lr_ratio=args.min_lr_ratio,
            augment=args.augment,
            checkpoint_every=args.checkpoint_every,
            keep_checkpoints=args.keep_checkpoints,
            log_every=args.log_every,
            seed=args.seed,
            num_workers=args.num_workers,
            device=args.device,
            bf16=not args.no_bf16,
            drop_path_rate=args.drop_path_rate,
            tensorboard=args.tensorboard,
            resume=not args.no_resume,
            progress=not args.no_progress,
        )
    )
    _result(json.dumps({"step": result.step, "loss": result.loss, "output": str(result.output)}))
    return 0


def _export(args: argparse.Namespace) -> int:
    from .export import export_student

    path = export_student(args.student, args.teacher_checkpoint, args.output, variant=args.variant)
    _result(str(path))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluation import evaluate

    report = evaluate(
        args.images,
        args.teacher,
        args.teacher_checkpoint,
        args.student,
        variant=args.variant,
        points_per_side=args.points_per_side,
        min_score=args.min_score,
        device=args.device,
        max_images=args.max_images,
        progress=not args.no_progress,
    )
    if args.json is not None:
        args.json.write_text(json.dumps(report.to_dict(), indent=1))
    _result(report.table())
    return 0


_COMMANDS = {
    "teacher-embed": _teacher_embed,
    "train": _train,
    "export": _export,
    "evaluate": _evaluate,
}
