"""The fault-injection tests' victim: runs ``refresh`` and SIGKILLs itself at a chosen point.

``python -m embedding_assets_tests.fault_worker POINT NTH DELAY``: on the NTH call of the function
behind POINT, the process kills itself before the call, ``DELAY`` seconds into it, or right after it.
Settings come from the environment, like the real command's.
"""

import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import dagster as dg
import pyarrow.parquet as pq

from embedding_assets.core.embedders.local_minilm import LocalMiniLM
from embedding_assets.core.index import Index
from embedding_assets.core.registry import Registry
from embedding_assets.core.sources.postgres import PostgresTable
from embedding_assets.core.sources.s3 import S3Prefix
from embedding_assets.core.store import VectorStore
from embedding_assets.refresh import refresh

TARGETS: dict[str, tuple[Any, str]] = {
    "embed": (LocalMiniLM, "embed"),  # while the model embeds a batch
    "stage_write": (pq.ParquetWriter, "write_table"),  # while a staged Parquet file is half written
    "commit": (VectorStore, "_upsert"),  # around the shard's upsert commit (its new and changed rows)
    "delete": (VectorStore, "_delete_chunks"),  # "delete:before" dies between a shard's upsert and its delete
    "fingerprint": (VectorStore, "_record_written"),  # "fingerprint:before": rows committed, state not recorded
    "registry": (Registry, "_append"),  # around the registry's event append
}
POINTS = [f"{target}:{when}" for target in TARGETS for when in ("before", "during", "after")]
# Around a source's change feed: "acknowledge:before" dies with the batch recorded in the change index but
# not acknowledged (it must replay harmlessly), "acknowledge:after" with it acknowledged and recorded but
# none of its shards run yet (the re-run must find them stale). Every source class with a feed is patched
# (ChangeIndex.sync calls the source's own override), sharing one count.
FEED_TARGETS: dict[str, tuple[Any, str]] = {"acknowledge": ((PostgresTable, S3Prefix), "acknowledge")}


def die() -> None:
    """SIGKILL this process and its process group: nothing it started (Dagster's log capture) outlives
    it holding the test's pipes. The tests start the worker in a session of its own."""
    os.killpg(os.getpgrp(), signal.SIGKILL)


def arm(point: str, nth: int, delay: float) -> None:
    target, when = point.split(":")
    owners, name = (TARGETS | FEED_TARGETS)[target]
    calls = [0]

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls[0] += 1
            if calls[0] != nth:
                return original(*args, **kwargs)
            if when == "before":
                die()
            if when == "during":
                threading.Timer(delay, die).start()
            result = original(*args, **kwargs)
            die()  # "after" (or a "during" call that finished before its timer)
            return result

        return wrapper

    for owner in owners if isinstance(owners, tuple) else (owners,):
        setattr(owner, name, wrap(getattr(owner, name)))


def main(point: str, nth: str, delay: str) -> int:
    if point != "none":
        arm(point, int(nth), float(delay))
    with dg.DagsterInstance.get() as instance:
        refresh(Index.from_env(), instance)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
