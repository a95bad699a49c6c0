"""The one partitions definition every asset shares: stable shards of the document-id space."""

import dagster as dg

from embedding_assets.core.shards import shard_keys


def shard_partitions(shard_count: int) -> dg.StaticPartitionsDefinition:
    return dg.StaticPartitionsDefinition(list(shard_keys(shard_count)))
