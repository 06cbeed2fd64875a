"""Distilling a RepViT-SAM encoder from a SAM teacher (decoupled distillation, as in the paper).

The workflow, each step also a ``repvit-sam distill`` subcommand::

    compute_teacher_embeddings(EmbedConfig(...))   teacher-embed: fp16 shards + manifest
    train(TrainConfig(...))                        train: MSE to the teacher embeddings
    export_student(run, teacher_checkpoint, out)   export: a RepViT-SAM checkpoint
    evaluate(images, teacher, ...)                 evaluate: embedding MSE, mask mIoU

Steps 1 and 2 run on several processes or GPUs under ``torchrun``.
"""

from .embed import EmbedConfig, compute_teacher_embeddings
from .evaluate import EvalReport, evaluate
from .export import export_student
from .teacher import TEACHERS, TeacherConfig, get_teacher, preprocess
from .train import TrainConfig, TrainResult, train

__all__ = [
    "TEACHERS",
    "EmbedConfig",
    "EvalReport",
    "TeacherConfig",
    "TrainConfig",
    "TrainResult",
    "compute_teacher_embeddings",
    "evaluate",
    "export_student",
    "get_teacher",
    "preprocess",
    "train",
]
