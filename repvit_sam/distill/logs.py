"""Training logs: JSON lines, an optional TensorBoard writer, and a PNG of the loss curve."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from PIL import Image, ImageDraw

from ..errors import InvalidInputError

logger = logging.getLogger(__name__)


class MetricsLog:
    """Appends one JSON object per line to ``path``; mirrors scalars to TensorBoard if asked.

    Resuming appends to the same file; records past the resumed step (written after the last
    checkpoint of the interrupted run) are dropped first so the log reads as one run.
    """

    def __init__(self, path: Path, *, tensorboard_dir: Path | None = None, resume_step: int = 0):
        self.path = path
        if path.is_file():
            kept = [r for r in read_log(path) if r.get("step", 0) <= resume_step]
            path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        self._writer = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:
                raise InvalidInputError(
                    "--tensorboard needs the tensorboard package: pip install 'repvit-sam[distill]'"
                ) from err
            self._writer = SummaryWriter(str(tensorboard_dir))

    def write(self, record: dict) -> None:
        """Appends ``record`` (which must hold ``step``); numbers also go to TensorBoard."""
        with self.path.open("a") as stream:
            stream.write(json.dumps(record) + "\n")
        if self._writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self._writer.add_scalar(f"train/{key}", value, record["step"])

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def read_log(path: Path) -> list[dict]:
    """The records of a JSON-lines log (a torn last line is skipped)."""
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def plot_loss_curve(
    log_path: Path, out_path: Path, size: tuple[int, int] = (640, 400), margin: int = 48
) -> Path | None:
    """Draws the ``loss`` of the records against ``step`` (log scale) as a PNG, with PIL only.

    Returns:
        ``out_path``, or None when the log holds fewer than two losses.
    """
    points = [(r["step"], r["loss"]) for r in read_log(log_path) if "loss" in r and r["loss"] > 0]
    if len(points) < 2:
        logger.warning("not enough loss records in %s to plot", log_path)
        return None
    width, height = size
    steps = [s for s, _ in points]
    logs = [math.log10(v) for _, v in points]
    s0, s1 = min(steps), max(steps)
    l0, l1 = min(logs), max(logs)
    l1 = l1 if l1 > l0 else l0 + 1.0

    def xy(step: float, log_loss: float) -> tuple[float, float]:
        x = margin + (step - s0) / max(1, s1 - s0) * (width - 2 * margin)
        y = height - margin - (log_loss - l0) / (l1 - l0) * (height - 2 * margin)
        return x, y

    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([margin, margin, width - margin, height - margin], outline="black")
    draw.line([xy(s, v) for s, v in zip(steps, logs, strict=True)], fill=(31, 119, 180), width=2)
    draw.text((margin, 8), "distillation loss (MSE to teacher, log scale)", fill="black")
    draw.text((margin, height - margin + 6), f"step {s0}", fill="black")
    draw.text((width - margin - 60, height - margin + 6), f"step {s1}", fill="black")
    draw.text((4, margin - 14), f"{10**l1:.3g}", fill="black")
    draw.text((4, height - margin + 2), f"{10**l0:.3g}", fill="black")
    image.save(out_path)
    return out_path
