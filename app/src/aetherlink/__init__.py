"""AetherLink: a small multi-tenant retrieval-augmented answering (RAG) HTTP API."""

__version__ = "0.1.0"
