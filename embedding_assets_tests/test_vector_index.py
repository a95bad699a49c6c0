"""The vector_index asset and its ann_recall check, on the test corpus with a threshold it passes."""

import dataclasses

import dagster as dg

from embedding_assets.core.embedders import Embedder
from embedding_assets.core.settings import Settings
from embedding_assets.core.store import VectorStore
from embedding_assets.vector_index import ANN_RECALL
from embedding_assets_tests.pipeline_helpers import asset_key, check_evaluations, materialize, metadata


def test_the_index_is_built_once_the_table_is_big_enough(settings: Settings, minilm: Embedder) -> None:
    with dg.instance_for_test() as instance:
        result = materialize(dataclasses.replace(settings, ann_min_rows=10), instance)
        rows = VectorStore(settings.lancedb_uri).info(minilm.model_version).rows  # type: ignore[union-attr]
        built = metadata(instance, asset_key(settings, "vector_index"), None)
        assert (built["action"], built["index_type"], built["rows_indexed"], built["unindexed_rows"]) == (
            "built",
            "IVF_HNSW_SQ",
            rows,
            0,
        )
        assert built["partitions"] == round(rows**0.5) and built["build_seconds"] > 0
        assert built["indexed_p50_ms"] > 0 and built["exact_p95_ms"] > 0
        assert (ANN_RECALL, None, True) in check_evaluations(result)
        again = materialize(dataclasses.replace(settings, ann_min_rows=10), instance)
        assert metadata(instance, asset_key(settings, "vector_index"), None)["action"] == "none"
        assert (ANN_RECALL, None, True) in check_evaluations(again)
