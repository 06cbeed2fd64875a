"""The image's HEALTHCHECK: exit 0 when ``/healthz`` answers 200 (the slim image has no curl)."""

from __future__ import annotations

import os
import sys
import urllib.request


def main() -> int:
    port = os.environ.get("REPVIT_SAM_PORT", "8000")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as answer:
            return 0 if answer.status == 200 else 1
    except OSError as err:
        print(f"healthz: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
