"""The service's routers, one per concern."""

from . import embed, embeddings, health, segment

__all__ = ["embed", "embeddings", "health", "segment"]
