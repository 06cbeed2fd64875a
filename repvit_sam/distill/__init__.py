"""Distilling a RepViT-SAM encoder from a SAM teacher (decoupled distillation, as in the paper).

The workflow, each step also a ``repvit-sam distill`` subcommand::

    compute_teacher_embeddings(EmbedConfig(...))   teacher-embed: fp16 shards + manifest
    train(TrainConfig(...))                        train: MSE to the teacher embeddings
    export_student(run, teacher_checkpoint, out)   export: a RepViT-SAM checkpoint
    evaluate(images, teacher, ...)                 evaluate: embedding MSE, mask mIoU

Steps 1 and 2 run on several processes or GPUs under ``torchrun``.
"""

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

# Imported on first use: the command line registers `distill` without importing torch.
_EXPORTS = {
    "EmbedConfig": ".embed",
    "compute_teacher_embeddings": ".embed",
    "EvalReport": ".evaluation",
    "evaluate": ".evaluation",
    "export_student": ".export",
    "TEACHERS": ".teacher",
    "TeacherConfig": ".teacher",
    "get_teacher": ".teacher",
    "preprocess": ".teacher",
    "TrainConfig": ".training",
    "TrainResult": ".training",
    "train": ".training",
}

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

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .embed import EmbedConfig, compute_teacher_embeddings
    from .evaluation import EvalReport, evaluate
    from .export import export_student
    from .teacher import TEACHERS, TeacherConfig, get_teacher, preprocess
    from .training import TrainConfig, TrainResult, train
