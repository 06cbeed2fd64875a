"""deploy/nginx.conf passes a request a replica refused (503: draining on SIGTERM, model
queue full, still loading) on to another replica, POSTs included."""

from __future__ import annotations

import re
from pathlib import Path

CONF = Path(__file__).resolve().parents[2] / "deploy" / "nginx.conf"


def _directive(name: str) -> list[str]:
    """The arguments of the one ``name`` directive of the proxied location."""
    found = re.findall(rf"^\s*{name}\s+([^;]*);", CONF.read_text(), flags=re.MULTILINE)
    assert len(found) == 1, f"{CONF.name} should have one {name}, has {len(found)}"
    return found[0].split()


def test_a_503_is_retried_on_another_replica_posts_included():
    conditions = _directive("proxy_next_upstream")
    # nginx retries a POST only with non_idempotent; every route is safe to repeat.
    assert {"error", "http_503", "non_idempotent"} <= set(conditions), conditions
    assert int(_directive("proxy_next_upstream_tries")[0]) >= 2
