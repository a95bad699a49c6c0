"""Deployment profiles: which Dagster instance configuration
(``embedding_assets/deploy/<profile>/dagster.yaml``, shipped as package data) to run on.

``local`` keeps everything on one machine (SQLite instance, LanceDB on disk); ``production`` puts the
instance on PostgreSQL, runs in separate processes under a queued coordinator, and expects LanceDB on
object storage. The pipeline code is the same in both; only configuration differs.
"""

from pathlib import Path

PROFILES = ("local", "production")
# Inside the package, so an installed wheel finds the files as well as a source checkout does. A plain
# path (not an importlib.resources traversable): the Makefile copies the file with `cp`.
DEPLOY_DIR = Path(__file__).resolve().parents[1] / "deploy"


def instance_config(profile: str) -> Path:
    """The ``dagster.yaml`` of ``profile``, to be copied into ``DAGSTER_HOME``."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}")
    return DEPLOY_DIR / profile / "dagster.yaml"
