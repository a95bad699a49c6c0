"""Deployment profiles: which Dagster instance configuration (``deploy/<profile>/dagster.yaml``) to run on.

``local`` keeps everything on one machine (SQLite instance, LanceDB on disk); ``production`` puts the
instance on PostgreSQL, runs in separate processes under a queued coordinator, and expects LanceDB on
object storage. The pipeline code is the same in both; only configuration differs.
"""

from pathlib import Path

PROFILES = ("local", "production")
DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy"


def instance_config(profile: str) -> Path:
    """The ``dagster.yaml`` of ``profile``, to be copied into ``DAGSTER_HOME``."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}")
    return DEPLOY_DIR / profile / "dagster.yaml"
