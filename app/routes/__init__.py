"""The service's routers, one per concern."""

from . import demo, embed, embeddings, everything, health, segment

__all__ = ["demo", "embed", "embeddings", "everything", "health", "segment"]
