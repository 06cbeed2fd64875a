"""Reading checkpoints safely, recognising what a wrong one is, and loading them strictly."""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from .assembly import identify_variant
from .errors import CheckpointError

logger = logging.getLogger(__name__)

StateDict = dict[str, torch.Tensor]
CheckpointSource = str | os.PathLike[str] | Mapping[str, torch.Tensor]

_NESTING_KEYS = ("model", "state_dict", "model_state_dict")
_OPTIONAL_SUFFIX = "num_batches_tracked"
_GET_WEIGHTS_HINT = (
    "The official RepViT-SAM weights are `repvit_sam.pt` from release v1.0 of THU-MIG/RepViT; "
    "`repvit-sam download` fetches and verifies them."
)


def read_state_dict(source: CheckpointSource) -> StateDict:
    """Reads a checkpoint without executing code (``weights_only=True``), on the CPU.

    Accepts a raw state dict or one nested under ``"model"``/``"state_dict"``; a ``module.``
    prefix left by DistributedDataParallel is removed.

    Raises:
        CheckpointError: The file is missing, truncated, not a PyTorch checkpoint, or holds
            something other than a mapping of names to tensors.
    """
    if isinstance(source, Mapping):
        obj: object = dict(source)
        where = "the given state dict"
    else:
        path = Path(source)
        where = str(path)
        if not path.is_file():
            raise CheckpointError(f"checkpoint not found: {path}. {_GET_WEIGHTS_HINT}")
        if not _looks_like_torch_file(path):
            raise CheckpointError(
                f"{path} is truncated or not a PyTorch checkpoint (neither a torch.save zip "
                f"archive nor a legacy pickle). {_GET_WEIGHTS_HINT}"
            )
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            raise CheckpointError(
                f"{path} is not a plain state dict: it pickles Python objects that a safe "
                f"(weights_only) load refuses ({_pickle_reason(err)}). Save "
                "`model.state_dict()` instead of the model."
            ) from err
        except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
            raise CheckpointError(
                f"{path} is truncated or not a PyTorch checkpoint ({type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else 'no detail'}). {_GET_WEIGHTS_HINT}"
            ) from err
    state_dict = _unnest(obj, where)
    return _strip_prefix(state_dict, "module.")


def _looks_like_torch_file(path: Path) -> bool:
    """torch.save writes a zip archive; before torch 1.6 it wrote a pickle (protocol >= 2)."""
    if zipfile.is_zipfile(path):
        return True
    with path.open("rb") as stream:
        return stream.read(1) == b"\x80"


def _pickle_reason(err: pickle.UnpicklingError) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    specific = [line for line in lines if "Unsupported global" in line or "GLOBAL" in line]
    return (specific or lines or ["no detail"])[0]


def _unnest(obj: object, where: str) -> StateDict:
    if isinstance(obj, Mapping):
        for key in _NESTING_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{where} holds {type(obj).__name__}, not a state dict")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(
            f"{where} is not a state dict: entries {bad[:5]} are not name -> tensor pairs"
        )
    return dict(obj)


def _strip_prefix(state_dict: StateDict, prefix: str) -> StateDict:
    if all(k.startswith(prefix) for k in state_dict):
        return {k[len(prefix) :]: v for k, v in state_dict.items()}
    return state_dict


def describe_checkpoint(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Names the model family a state dict belongs to, for error messages."""
    keys = set(state_dict)
    patch = state_dict.get("image_encoder.patch_embed.proj.weight")
    if patch is not None and patch.dim() == 4:
        vit = {1280: "SAM ViT-H", 1024: "SAM ViT-L", 768: "SAM ViT-B"}.get(
            patch.shape[0], "SAM ViT"
        )
        return f"a segment-anything {vit} checkpoint (embed dim {patch.shape[0]})"
    if any(k.startswith("image_encoder.layers.") for k in keys):
        return "a MobileSAM (TinyViT) checkpoint"
    if any(k.startswith(("sam_mask_decoder.", "memory_attention.")) for k in keys):
        return "a SAM 2 checkpoint"
    if any(k.startswith("image_encoder.features.") for k in keys):
        found = identify_variant(state_dict)
        if found is None:
            return "a RepViT-SAM checkpoint of an unregistered architecture"
        variant, fused = found
        return f"a {'fused ' if fused else ''}RepViT-SAM {variant} checkpoint"
    if any(k.startswith("features.") for k in keys):
        return "a RepViT backbone without SAM's prompt encoder and mask decoder"
    return "not a SAM-family checkpoint"


def key_differences(
    state_dict: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Size]
) -> tuple[list[str], list[str], list[str]]:
    """Missing keys, unexpected keys and shape mismatches ("key: got X, expected Y")."""
    missing = [k for k in expected if k not in state_dict and not k.endswith(_OPTIONAL_SUFFIX)]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k}: got {tuple(v.shape)}, expected {tuple(expected[k])}"
        for k, v in state_dict.items()
        if k in expected and tuple(v.shape) != tuple(expected[k])
    ]
    return missing, unexpected, mismatched


def mismatch_message(
    state_dict: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Size],
    wanted: str,
    source: str,
    limit: int = 5,
) -> str | None:
    """An error message when ``state_dict`` does not fit ``expected``, else None."""
    missing, unexpected, mismatched = key_differences(state_dict, expected)
    if not (missing or unexpected or mismatched):
        return None
    lines = [f"{source} is {describe_checkpoint(state_dict)}, expected {wanted}."]
    for label, items in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("shape mismatches", mismatched),
    ):
        if items:
            more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
            lines.append(f"  {len(items)} {label}: {', '.join(items[:limit])}{more}")
    lines.append(_GET_WEIGHTS_HINT)
    return "\n".join(lines)


def load_state_dict_strict(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], wanted: str, source: str
) -> None:
    """Loads strictly, tolerating only absent ``num_batches_tracked`` buffers.

    Raises:
        CheckpointError: With what the checkpoint is and its first missing/unexpected keys.
    """
    own = model.state_dict()
    expected = {k: v.shape for k, v in own.items()}
    message = mismatch_message(state_dict, expected, wanted, source)
    if message is not None:
        raise CheckpointError(message)
    completed = {k: v for k, v in own.items() if k.endswith(_OPTIONAL_SUFFIX)}
    completed.update(state_dict)
    model.load_state_dict(completed, strict=True)
    logger.debug("loaded %d tensors from %s", len(state_dict), source)
