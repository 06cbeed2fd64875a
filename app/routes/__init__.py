"""The service's routers, one per concern."""

from . import embed, embeddings, everything, health, segment

__all__ = ["embed", "embeddings", "everything", "health", "segment"]
