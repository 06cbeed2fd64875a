"""Training a RepViT student to reproduce a SAM teacher's image embeddings (decoupled distillation).

The loss is the MSE between the student's and the teacher's (precomputed) embeddings, as in
MobileSAM and RepViT-SAM. One optimizer step sees ``batch_size * accumulation * world_size``
images. Under ``torchrun`` the student is wrapped in DistributedDataParallel (gloo on CPU, nccl
on CUDA); BatchNorm buffers are broadcast from rank 0, so every rank holds the same weights.

Output folder::

    run.json                 the configuration (read by ``distill export``)
    log.jsonl                {"step", "loss", "lr", "images_per_s", "epoch", "elapsed_s"} lines
    checkpoints/step_N.pt    model, optimizer, scheduler, step, RNG states (newest kept)
    encoder.pt               the final student encoder (plain state dict)
    loss_curve.png           the loss curve, drawn at the end
    tensorboard/             with ``tensorboard=True``
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..assembly import resolve_variant
from ..errors import InvalidInputError
from ..modeling import RepViTImageEncoder
from . import distributed
from .checkpointing import list_checkpoints, load_checkpoint, rng_state, save_checkpoint
from .checkpointing import set_rng_state as restore_rng
from .data import EmbeddingDataset, ensure_writable, read_manifest
from .logs import MetricsLog, plot_loss_curve
from .schedule import StepSampler, warmup_cosine

logger = logging.getLogger(__name__)

AUGMENTATIONS = ("none", "flip")


@dataclass
class TrainConfig:
    """Settings of ``train``; the CLI flags have the same names.

    Attributes:
        embeddings: Folder written by ``compute_teacher_embeddings`` (with ``manifest.json``).
        output: Run folder; a run found there is resumed from its newest checkpoint.
        variant: Student from ``repvit_sam.modeling.VARIANTS`` (m0_9 ... m2_3).
        steps: Optimizer steps in all.
        batch_size: Images per rank per micro-batch.
        accumulation: Micro-batches per optimizer step (gradient accumulation).
        lr: Peak learning rate of AdamW.
        weight_decay: AdamW weight decay (not applied to norms and biases).
        warmup_steps: Linear warm-up steps before the cosine decay.
        min_lr_ratio: Final learning rate as a fraction of ``lr``.
        augment: ``"none"`` or ``"flip"`` (image and target mirrored together).
        checkpoint_every: Save a checkpoint every this many steps (and at the end).
        keep_checkpoints: Newest checkpoints kept on disk.
        log_every: Write a log line every this many steps.
        seed: Seed of the initial weights, the sample order and the augmentation.
        num_workers: DataLoader processes per rank.
        device: ``auto`` (the local GPU under torchrun, else CPU), ``cpu``, ``cuda``...
        bf16: bf16 autocast on CUDA devices (ignored on CPU).
        drop_path_rate: Stochastic depth of the student.
        tensorboard: Also write TensorBoard scalars to ``output/tensorboard``.
        resume: Continue from the newest checkpoint in ``output`` if there is one.
        progress: Show a progress bar on rank 0.
        stop_after: Stop after this step as if interrupted (time-limited jobs, tests).
    """

    embeddings: Path
    output: Path
    variant: str = "m2_3"
    steps: int = 1000
    batch_size: int = 8
    accumulation: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 100
    min_lr_ratio: float = 0.01
    augment: str = "none"
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 10
    seed: int = 0
    num_workers: int = 4
    device: str = "auto"
    bf16: bool = True
    drop_path_rate: float = 0.0
    tensorboard: bool = False
    resume: bool = True
    progress: bool = True
    stop_after: int | None = None

    def to_dict(self) -> dict:
        return {
            k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(self).items()
        }


@dataclass
class TrainResult:
    """What ``train`` leaves: the step reached, the last logged loss and the (unwrapped) student."""

    step: int
    loss: float | None
    encoder: nn.Module
    output: Path


def _validate(config: TrainConfig) -> tuple[EmbeddingDataset, RepViTImageEncoder]:
    try:
        variant = resolve_variant(config.variant)
    except (ValueError, TypeError) as err:
        raise InvalidInputError(f"--variant: {err}") from err
    if config.augment not in AUGMENTATIONS:
        raise InvalidInputError(f"augment must be one of {AUGMENTATIONS}, got {config.augment!r}")
    for name in ("steps", "batch_size", "accumulation", "checkpoint_every", "log_every"):
        if getattr(config, name) < 1:
            raise InvalidInputError(f"{name} must be >= 1, got {getattr(config, name)}")
    if config.lr <= 0 or config.warmup_steps < 0 or not 0 <= config.min_lr_ratio <= 1:
        raise InvalidInputError("need lr > 0, warmup_steps >= 0 and 0 <= min_lr_ratio <= 1")
    if not 0 <= config.drop_path_rate < 1:
        raise InvalidInputError(f"need 0 <= drop_path_rate < 1, got {config.drop_path_rate}")
    if config.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise InvalidInputError(
            "tensorboard=True needs the tensorboard package: pip install 'repvit-sam[distill]'"
        )
    manifest = read_manifest(config.embeddings)
    ensure_writable(config.output)
    image_size = int(manifest["image_size"])
    if image_size % variant.output_stride or image_size < 64:
        raise InvalidInputError(f"teacher image size {image_size} does not suit a RepViT student")
    student = RepViTImageEncoder(
        dataclasses.replace(variant, img_size=image_size), drop_path_rate=config.drop_path_rate
    )
    expected = [variant.out_chans, student.config.embedding_size, student.config.embedding_size]
    if list(manifest["embedding_shape"]) != expected:
        raise InvalidInputError(
            f"the teacher embeddings are {manifest['embedding_shape']}, but the student at "
            f"{image_size}px makes {expected}"
        )
    if not Path(manifest["image_root"]).is_dir():
        raise InvalidInputError(
            f"the images of {config.embeddings} are gone: {manifest['image_root']}"
        )
    previous = config.output / "run.json"
    if config.resume and previous.is_file():
        old = json.loads(previous.read_text())
        if old.get("variant") != variant.name:
            raise InvalidInputError(
                f"{config.output} holds a run of variant {old.get('variant')}, not {variant.name}; "
                "choose another output folder or pass the same variant"
            )
    return EmbeddingDataset(config.embeddings, manifest), student


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def train(config: TrainConfig) -> TrainResult:
    """Distils the teacher's embeddings into a RepViT student; resumable, DDP under torchrun.

    Raises:
        InvalidInputError: Unknown variant, no finished embeddings, unwritable output, a run of
            another variant in ``output``, bad numbers; all before any rank starts working.
    """
    config = dataclasses.replace(
        config, embeddings=Path(config.embeddings), output=Path(config.output)
    )
    torch.manual_seed(config.seed)  # identical initial weights on every rank
    dataset, encoder = _validate(config)
    config = dataclasses.replace(config, variant=encoder.config.name)
    env = distributed.setup(config.device)
    try:
        return _run(config, env, dataset, encoder)
    finally:
        distributed.teardown(env)


def _run(
    config: TrainConfig,
    env: distributed.DistEnv,
    dataset: EmbeddingDataset,
    encoder: RepViTImageEncoder,
) -> TrainResult:
    ckpt_dir = config.output / "checkpoints"
    encoder = encoder.to(env.device).train()
    optimizer = torch.optim.AdamW(_param_groups(encoder, config.weight_decay), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: warmup_cosine(s, config.steps, config.warmup_steps, config.min_lr_ratio),
    )
    step = _resume(config, env, ckpt_dir, encoder, optimizer, scheduler)
    model: nn.Module = encoder
    if env.distributed:
        ids = [env.device.index] if env.device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(encoder, device_ids=ids)
    if env.is_main:
        (config.output / "run.json").write_text(
            json.dumps({**config.to_dict(), "image_size": dataset.img_size}, indent=1)
        )
    log = None
    if env.is_main:
        board = config.output / "tensorboard" if config.tensorboard else None
        log = MetricsLog(config.output / "log.jsonl", tensorboard_dir=board, resume_step=step)
    end = min(config.steps, config.stop_after) if config.stop_after is not None else config.steps
    loader = _loader(config, env, dataset, step, end)
    use_bf16 = config.bf16 and env.device.type == "cuda" and torch.cuda.is_bf16_supported()
    images_per_step = config.batch_size * config.accumulation * env.world_size
    batches = iter(loader)
    last_loss: float | None = None
    interval_loss, interval_steps, started = 0.0, 0, time.perf_counter()
    bar = tqdm(
        total=end,
        initial=step,
        unit="step",
        desc="distill",
        disable=not (config.progress and env.is_main),
    )
    with bar:
        while step < end:
            lr = scheduler.get_last_lr()[0]
            step_loss = _accumulate_gradients(model, batches, config, env, use_bf16)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            bar.update(1)
            interval_loss, interval_steps = interval_loss + step_loss, interval_steps + 1
            if step % config.log_every == 0 or step == end:
                elapsed = time.perf_counter() - started
                last_loss = _mean_over_ranks(interval_loss / interval_steps, env)
                if log is not None:
                    log.write(
                        {
                            "step": step,
                            "loss": last_loss,
                            "lr": lr,
                            "images_per_s": images_per_step * interval_steps / max(elapsed, 1e-9),
                            "epoch": step * images_per_step / len(dataset),
                            "world_size": env.world_size,
                        }
                    )
                    bar.set_postfix(loss=f"{last_loss:.4g}")
                interval_loss, interval_steps, started = 0.0, 0, time.perf_counter()
            if step % config.checkpoint_every == 0 or step == end:
                _save(config, env, ckpt_dir, step, encoder, optimizer, scheduler)
    if env.is_main and step >= config.steps:
        # On the CPU, so that a plain torch.load works on a machine without the GPU.
        torch.save(_on_cpu(encoder.state_dict()), config.output / "encoder.pt")
        plot_loss_curve(config.output / "log.jsonl", config.output / "loss_curve.png")
        logger.info("finished %d steps; student encoder in %s", step, config.output / "encoder.pt")
    if log is not None:
        log.close()
    return TrainResult(step, last_loss, encoder, config.output)


def _resume(
    config: TrainConfig,
    env: distributed.DistEnv,
    ckpt_dir: Path,
    encoder: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> int:
    """Restores the newest checkpoint (with ``config.resume``) and seeds; returns its step."""
    found = list_checkpoints(ckpt_dir) if config.resume else []
    if not found:
        torch.manual_seed(config.seed + 7919 * env.rank)
        return 0
    state = load_checkpoint(found[-1][1])
    encoder.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    step = int(state["step"])
    if len(state["rng"]) == env.world_size:
        restore_rng(state["rng"][env.rank], env.device)
    else:
        logger.warning("world size changed since the checkpoint: random streams reseeded")
        torch.manual_seed(config.seed + 7919 * env.rank + step)
    logger.info("resumed from %s at step %d", found[-1][1], step)
    return step


def _loader(
    config: TrainConfig, env: distributed.DistEnv, dataset: EmbeddingDataset, step: int, end: int
) -> torch.utils.data.DataLoader:
    """Batches for this rank from ``step`` to ``end``, the same sequence whether resumed or not."""
    sampler = StepSampler(
        len(dataset),
        config.batch_size,
        start_step=step,
        total_steps=end,
        accumulation=config.accumulation,
        rank=env.rank,
        world_size=env.world_size,
        seed=config.seed,
        augment=config.augment == "flip",
    )
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=config.num_workers,
        pin_memory=env.device.type == "cuda",
        persistent_workers=False,
    )


def _accumulate_gradients(
    model: nn.Module, batches: Iterator, config: TrainConfig, env: distributed.DistEnv, bf16: bool
) -> float:
    """Backpropagates one step's micro-batches; returns the step's mean loss on this rank."""
    step_loss = 0.0
    for micro in range(config.accumulation):
        images, targets = next(batches)
        images = images.to(env.device, non_blocking=True)
        targets = targets.to(env.device, non_blocking=True).float()
        # Gradients are all-reduced once per step, on its last micro-batch.
        sync = micro == config.accumulation - 1 or not env.distributed
        with (
            contextlib.nullcontext() if sync else model.no_sync(),
            torch.autocast(env.device.type, dtype=torch.bfloat16, enabled=bf16),
        ):
            loss = F.mse_loss(model(images).float(), targets)
            (loss / config.accumulation).backward()
        step_loss += loss.item() / config.accumulation
    return step_loss


def _on_cpu(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.detach().cpu() for key, value in state_dict.items()}


def _average_buffers(encoder: nn.Module, env: distributed.DistEnv) -> None:
    """Averages BatchNorm statistics over the ranks.

    DDP broadcasts rank 0's buffers before every forward pass, so each rank's last forward
    leaves its own statistics; averaging makes every rank (and the checkpoint) hold the same.
    """
    if not env.distributed:
        return
    for buffer in encoder.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer)
            buffer.div_(env.world_size)


def _mean_over_ranks(value: float, env: distributed.DistEnv) -> float:
    if not env.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=env.device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / env.world_size


def _save(
    config: TrainConfig,
    env: distributed.DistEnv,
    folder: Path,
    step: int,
    encoder: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> None:
    _average_buffers(encoder, env)
    states = [rng_state(env.device)]
    if env.distributed:
        states = [None] * env.world_size
        dist.all_gather_object(states, rng_state(env.device))
    if env.is_main:
        state = {
            "model": _on_cpu(encoder.state_dict()),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "step": step,
            "config": config.to_dict(),
            "rng": states,
        }
        save_checkpoint(folder, step, state, keep=config.keep_checkpoints)
    distributed.barrier(env)
