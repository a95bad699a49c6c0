"""``source_documents``: what the source holds, observed (never materialized), one data version per shard.

The change sensor records an observation for each shard that changed; ``Observe`` in the UI records
one for every shard. Being observable, the UI shows it by its latest observations, not as "missing".
"""

import dagster as dg

from embedding_assets.assets import DOCUMENTS_GROUP, SOURCE_DOCUMENTS
from embedding_assets.resources import PipelineResource

DESCRIPTION = (
    "The documents in the source (a folder, an S3 prefix or a PostgreSQL table), observed rather than "
    "materialized: the change sensor records an observation per shard that changed, with the documents and "
    "skips it found, and its data version is the shard's version in the change index, which is what marks "
    "raw_documents stale. `Observe` here syncs the change index and records every shard's version."
)


def build_source_documents(partitions: dg.PartitionsDefinition) -> dg.SourceAsset:
    """The observable source asset over ``partitions``."""

    @dg.observable_source_asset(
        name=SOURCE_DOCUMENTS, partitions_def=partitions, group_name=DOCUMENTS_GROUP, description=DESCRIPTION
    )
    def source_documents(pipeline: PipelineResource) -> dg.DataVersionsByPartition:
        """Every shard's version as the change index holds it after one sync of the source."""
        index = pipeline.get()
        index.sync()
        return dg.DataVersionsByPartition({s.shard: s.version for s in index.changes.summaries().values()})

    return source_documents
