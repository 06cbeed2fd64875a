"""``python -m repvit_sam.cli`` (and ``torchrun -m repvit_sam.cli distill ...``)."""

import sys

from . import main

sys.exit(main())
