"""Deployment profiles: which Dagster instance configuration
(``embedding_assets/deploy/<profile>/dagster.yaml``, shipped as package data) to run on.

``local`` keeps everything on one machine (SQLite instance, LanceDB on disk); ``production`` puts the
instance on PostgreSQL, runs in separate processes under a queued coordinator, and expects LanceDB on
object storage. The pipeline code is the same in both; only configuration differs.
"""

import os
from collections.abc import Mapping
from pathlib import Path

from embedding_assets.core.errors import ConfigError

PROFILES = ("local", "production")
# Inside the package, so an installed wheel finds the files as well as a source checkout does. A plain
# path (not an importlib.resources traversable): the Makefile copies the file with `cp`.
DEPLOY_DIR = Path(__file__).resolve().parents[1] / "deploy"


def instance_config(profile: str) -> Path:
    """The ``dagster.yaml`` of ``profile``, to be copied into ``DAGSTER_HOME``."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}")
    return DEPLOY_DIR / profile / "dagster.yaml"


# What the production dagster.yaml reads to reach the instance's PostgreSQL (the password last).
INSTANCE_DATABASE = ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_DB")
INSTANCE_PASSWORD = "DAGSTER_PG_PASSWORD"


def instance_database(environ: Mapping[str, str] | None = None) -> tuple[str, str | None]:
    """The production instance's PostgreSQL as a libpq DSN without the password, and the password."""
    environ = os.environ if environ is None else environ
    missing = [name for name in INSTANCE_DATABASE if not environ.get(name)]
    if missing:
        raise ConfigError(
            f"the production profile keeps the change index in the Dagster instance's PostgreSQL: set "
            f"{', '.join(missing)} (or EMBEDDING_ASSETS_CHANGE_INDEX=postgresql://user@host:port/db)"
        )
    host, port, user, db = (environ[name] for name in INSTANCE_DATABASE)
    return f"postgresql://{user}@{host}:{port}/{db}", environ.get(INSTANCE_PASSWORD) or None
