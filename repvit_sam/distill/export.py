"""Exporting a distilled student as a complete RepViT-SAM checkpoint.

The checkpoint is a plain state dict: the student encoder under ``image_encoder.*`` and the
teacher's ``prompt_encoder.*`` and ``mask_decoder.*``. It is checked by loading it strictly into
``build_repvit_sam`` before it is written, so the service, ONNX export and everything mode,
which all load through ``build_repvit_sam``, accept it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from ..assembly import identify_variant
from ..build import build_repvit_sam
from ..checkpoint import CheckpointSource, StateDict, describe_checkpoint, read_state_dict
from ..errors import CheckpointError, InvalidInputError
from .checkpointing import list_checkpoints
from .data import ensure_writable

logger = logging.getLogger(__name__)

_DECODER_PREFIXES = ("prompt_encoder.", "mask_decoder.")


def read_student(student: str | os.PathLike[str]) -> tuple[StateDict, dict]:
    """The student encoder's state dict and its run settings (``{}`` for a bare file).

    Args:
        student: A ``distill train`` run folder (its ``encoder.pt``, else its newest
            checkpoint), an ``encoder.pt``, or a training checkpoint.

    Raises:
        CheckpointError: Nothing to export in the folder, or an unreadable file.
    """
    path = Path(student)
    run: dict = {}
    if path.is_dir():
        if (path / "run.json").is_file():
            run = json.loads((path / "run.json").read_text())
        if (path / "encoder.pt").is_file():
            path = path / "encoder.pt"
        elif found := list_checkpoints(path / "checkpoints"):
            path = found[-1][1]
            logger.warning("%s has no encoder.pt (unfinished run); exporting %s", student, path)
        else:
            raise CheckpointError(f"{student} holds neither encoder.pt nor checkpoints/step_*.pt")
    state_dict = read_state_dict(path)
    return state_dict, run


def merge_student_and_teacher(
    encoder: StateDict, teacher: StateDict, teacher_source: str = "the teacher checkpoint"
) -> StateDict:
    """``image_encoder.*`` from the student plus the teacher's prompt encoder and mask decoder.

    Raises:
        CheckpointError: The teacher checkpoint has no prompt encoder/mask decoder.
    """
    decoder = {k: v for k, v in teacher.items() if k.startswith(_DECODER_PREFIXES)}
    if not any(k.startswith("mask_decoder.") for k in decoder):
        raise CheckpointError(
            f"{teacher_source} is {describe_checkpoint(teacher)}, not a SAM checkpoint with "
            "prompt_encoder.* and mask_decoder.* weights (pass the teacher's SAM checkpoint)"
        )
    prefix = "image_encoder."
    merged = {k if k.startswith(prefix) else prefix + k: v for k, v in encoder.items()}
    merged.update(decoder)
    return merged


def export_student(
    student: str | os.PathLike[str],
    teacher_checkpoint: CheckpointSource,
    output: str | os.PathLike[str],
    *,
    variant: str | None = None,
) -> Path:
    """Writes the RepViT-SAM checkpoint of a distilled student.

    Args:
        student: Run folder, ``encoder.pt`` or training checkpoint (see ``read_student``).
        teacher_checkpoint: The SAM checkpoint whose prompt encoder and mask decoder to take.
        output: File to write (its folder is created).
        variant: The student's variant; recognised from the weights when None.

    Returns:
        ``output``.

    Raises:
        CheckpointError: Unreadable inputs, or weights that do not form a registered variant.
        InvalidInputError: The output folder is not writable.
    """
    output = Path(output)
    ensure_writable(output.parent, "folder of the exported checkpoint")
    encoder, run = read_student(student)
    teacher_source = (
        str(teacher_checkpoint) if not isinstance(teacher_checkpoint, dict) else "the teacher"
    )
    merged = merge_student_and_teacher(encoder, read_state_dict(teacher_checkpoint), teacher_source)
    variant = variant or run.get("variant")
    if variant is None:
        found = identify_variant(merged)
        if found is None:
            raise CheckpointError(
                f"the student weights of {student} are {describe_checkpoint(merged)}; "
                "pass --variant"
            )
        variant = found[0]
    try:
        build_repvit_sam(merged, variant=variant, image_size=run.get("image_size"))
    except ValueError as err:
        raise InvalidInputError(f"--variant: {err}") from err
    tmp = output.with_name(f".{output.name}.tmp")
    torch.save(merged, tmp)
    os.replace(tmp, output)
    logger.info("exported RepViT-SAM %s (%d tensors) to %s", variant, len(merged), output)
    return output
