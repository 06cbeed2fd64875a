"""The ``repvit-sam`` command line.

The library's commands are registered here; other wings of the project add their groups through
the ``repvit_sam.cli`` entry-point group (``serve`` from the service, ``distill`` from the
distillation package), so the core never imports them. Each module's ``register(subparsers)``
adds its commands with a ``run`` function and imports nothing heavy: ``--help`` stays fast, and
the work's imports (torch, the model) happen when a command runs.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import sys
from collections.abc import Sequence

from ..errors import RepViTSAMError
from . import model, tasks

__all__ = ["ENTRY_POINT_GROUP", "build_parser", "main"]

ENTRY_POINT_GROUP = "repvit_sam.cli"

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="repvit-sam", description="RepViT-SAM: fast Segment Anything."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", required=True)
    model.register(sub)
    tasks.register(sub)
    for entry_point in sorted(
        importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name
    ):
        entry_point.load()(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.run(args)
    except (RepViTSAMError, OSError) as err:  # OSError: files missing, existing, unwritable
        print(f"repvit-sam {args.command}: error: {err}", file=sys.stderr)
        return 2
