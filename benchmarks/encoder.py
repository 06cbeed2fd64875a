"""The 1024x1024 image encoder on this machine: unfused (the official computation) vs fused,
fused + channels-last and the other backends, with MobileSAM's encoder as the peer::

    python benchmarks/encoder.py [--threads 2]

The same measurement as ``benchmarks/speed.py --only encoder``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import speed

if __name__ == "__main__":
    if "--row" not in sys.argv and "--only" not in sys.argv:
        sys.argv += ["--only", "encoder"]
    speed.main()
