"""The one partitions definition every asset shares: stable shards of the document-id space."""

import warnings

import dagster as dg

from embedding_assets.core.shards import shard_keys

# Used on purpose (see the README): single-run backfill policies (Beta) and partitioned asset
# checks (Preview). Their warnings would otherwise repeat on every load of the code location.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)


def shard_partitions(shard_count: int) -> dg.StaticPartitionsDefinition:
    return dg.StaticPartitionsDefinition(list(shard_keys(shard_count)))
