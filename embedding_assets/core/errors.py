"""Errors the project raises on purpose, each with one clear message for the user."""


class ConfigError(ValueError):
    """The configuration cannot work (unknown model, missing key, bad shard count...)."""


class EmbeddingError(RuntimeError):
    """The embedding provider failed for good (retries exhausted, or a response that cannot be right)."""


class ChangeIndexError(RuntimeError):
    """The change index's database failed (unreachable, or a statement it refused)."""
