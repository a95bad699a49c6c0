"""The ``defs`` Dagster loads (``workspace.yaml``, ``dagster ... -m embedding_assets.definitions``),
from the ``EMBEDDING_ASSETS_*`` environment. Everything else builds its own with ``assembly``."""

from embedding_assets.assembly import build_definitions
from embedding_assets.core.settings import Settings

defs = build_definitions(Settings.from_env())
