"""Item 7 of `make bench`: the same work done by the tools users would otherwise pick, on the same chunks
with the same embedder instance, each writing to its own LanceDB table.

- LangChain's indexing API: ``index()`` with a ``SQLRecordManager`` on SQLite and the community ``LanceDB``
  vector store, once with ``cleanup="full"`` and once with ``cleanup="incremental"``.
- LlamaIndex's ``IngestionPipeline`` with a ``SimpleDocumentStore``, ``LanceDBVectorStore`` and
  ``DocstoreStrategy.UPSERTS_AND_DELETE``.

Each tool is fed one document per chunk (source = the chunk's ``doc_id``, the ``chunk_id`` in the metadata),
never a text splitter, so every contender embeds exactly the same texts. Each runs a full ingest, a refresh
after ``edit_corpus`` and a no-change refresh, re-deriving the chunks from the folder every time.
Needs the ``bench`` extra (``pip install -e '.[bench]'``).
"""

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from workload import CountingEmbedder, audit, edit_corpus, folder_chunks, keys

from embedding_assets.core.chunking import Chunk, ChunkingConfig
from embedding_assets.core.store import sql_string

Ingest = Callable[[list[Chunk]], None]


def langchain_index(workdir: Path, counter: CountingEmbedder, cleanup: str) -> Ingest:
    """``index(docs, SQLRecordManager, LanceDB, cleanup=cleanup, source_id_key="source")``."""
    from langchain_classic.indexes import SQLRecordManager
    from langchain_community.vectorstores import LanceDB
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.indexing import index

    class Wrapped(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return counter.embed(texts).tolist()

        def embed_query(self, text: str) -> list[float]:
            return counter.embed([text])[0].tolist()

    records = SQLRecordManager(f"lancedb/{cleanup}", db_url=f"sqlite:///{workdir / 'records.sqlite'}")
    records.create_schema()
    # mode="append": the store's default, "overwrite", replaces the whole table on every add_documents batch.
    store = LanceDB(uri=str(workdir / "lancedb"), embedding=Wrapped(), table_name="chunks", mode="append")

    def ingest(chunks: list[Chunk]) -> None:
        docs = [Document(page_content=c.text, metadata={"source": c.doc_id, "chunk_id": c.chunk_id}) for c in chunks]
        index(docs, records, store, cleanup=cleanup, source_id_key="source", key_encoder="sha256")

    return ingest


def llamaindex_pipeline(workdir: Path, counter: CountingEmbedder) -> Ingest:
    """``IngestionPipeline([keep-whole parser, embed_model], docstore, LanceDBVectorStore, UPSERTS_AND_DELETE)``."""
    from llama_index.core import Document
    from llama_index.core.embeddings import BaseEmbedding
    from llama_index.core.ingestion import DocstoreStrategy, IngestionPipeline
    from llama_index.core.node_parser import NodeParser
    from llama_index.core.node_parser.node_utils import build_nodes_from_splits
    from llama_index.core.storage.docstore import SimpleDocumentStore
    from llama_index.vector_stores.lancedb import LanceDBVectorStore

    class Wrapped(BaseEmbedding):
        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            return counter.embed(texts).tolist()

        def _get_text_embedding(self, text: str) -> list[float]:
            return self._get_text_embeddings([text])[0]

        def _get_query_embedding(self, query: str) -> list[float]:
            return self._get_text_embedding(query)

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_text_embedding(query)

    class KeepWhole(NodeParser):
        """One node per chunk-document, linked to it the way a splitter links its nodes (so the vector
        store's ``doc_id`` column holds the document id that upserts delete by). Splits nothing."""

        def _parse_nodes(self, nodes: Sequence[Any], show_progress: bool = False, **kwargs: Any) -> list[Any]:
            return [n for doc in nodes for n in build_nodes_from_splits([doc.get_content()], doc, id_func=self.id_func)]

    class QuotedLanceDBVectorStore(LanceDBVectorStore):
        """lancedb >= 0.38 reads "x" as a column name, so the store's own deletes fail; quote as SQL does."""

        def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
            self.table.delete(f"{self.doc_id_key} = {sql_string(ref_doc_id)}")

        def delete_nodes(self, node_ids: list[str], **delete_kwargs: Any) -> None:
            self.table.delete(f"id IN ({', '.join(map(sql_string, node_ids))})")

    pipeline = IngestionPipeline(
        transformations=[KeepWhole(), Wrapped(model_name="all-MiniLM-L6-v2-int8", embed_batch_size=counter.batch_size)],
        docstore=SimpleDocumentStore(),
        vector_store=QuotedLanceDBVectorStore(uri=str(workdir / "lancedb"), table_name="chunks"),
        docstore_strategy=DocstoreStrategy.UPSERTS_AND_DELETE,
    )

    def ingest(chunks: list[Chunk]) -> None:
        # The source is kept out of the embedded text, which would otherwise read "source: <doc_id>\n\n<text>".
        pipeline.run(
            documents=[
                Document(
                    id_=c.chunk_id, text=c.text, metadata={"source": c.doc_id}, excluded_embed_metadata_keys=["source"]
                )
                for c in chunks
            ]
        )

    return ingest


def _rows(workdir: Path, chunk_id_of: Callable[[dict], str]) -> list[tuple[str, str]]:
    """(chunk_id, text) of every row the tool left in its LanceDB table."""
    import lancedb

    table = lancedb.connect(str(workdir / "lancedb")).open_table("chunks")
    return [(chunk_id_of(row), row["text"]) for row in table.to_arrow().to_pylist()]


# name: (short label for the chart, builder, where the tool keeps our chunk id in its rows)
PEERS: dict[str, tuple[str, Callable[[Path, CountingEmbedder], Ingest], Callable[[dict], str]]] = {
    'LangChain index(cleanup="full")': (
        "LangChain\nfull",
        lambda w, c: langchain_index(w, c, "full"),
        lambda row: row["metadata"]["chunk_id"],
    ),
    'LangChain index(cleanup="incremental")': (
        "LangChain\nincremental",
        lambda w, c: langchain_index(w, c, "incremental"),
        lambda row: row["metadata"]["chunk_id"],
    ),
    "LlamaIndex IngestionPipeline (UPSERTS_AND_DELETE)": (
        "LlamaIndex\nupserts+delete",
        llamaindex_pipeline,
        lambda row: row["doc_id"],
    ),
}


def run_peer(
    name: str,
    workdir: Path,
    source: Path,
    added: list[tuple[str, str]],
    chunking: ChunkingConfig,
    counter: CountingEmbedder,
) -> dict[str, Any]:
    """Full ingest, refresh after ``edit_corpus(source, added)``, and a no-change refresh of one peer.

    Args:
        name: a key of ``PEERS``.
        workdir: an empty folder for the tool's LanceDB and record store.
        source: a fresh copy of the benchmark corpus; it is edited in place.
        added: the sections ``edit_corpus`` adds.
        chunking: the pipeline's chunking configuration.
        counter: the shared embedder (model already loaded), counting the texts it embeds.

    Returns:
        The figures of item 7 for this tool.
    """
    label, make, chunk_id_of = PEERS[name]
    workdir.mkdir(parents=True, exist_ok=True)
    ingest = make(workdir, counter)

    def timed_run() -> tuple[float, list[str], list[Chunk]]:
        before, started = counter.texts, time.perf_counter()
        chunks = folder_chunks(source, chunking, counter.embedder.count_tokens)
        ingest(chunks)
        return time.perf_counter() - started, counter.seen[before:], chunks

    full_s, full_texts, first = timed_run()
    edit_corpus(source, added)
    refresh_s, refresh_texts, current = timed_run()
    expected = keys(current) - keys(first)
    noop_s, noop_texts, _ = timed_run()
    return {
        "tool": name,
        "label": label,
        "full_s": full_s,
        "full_embedded": len(full_texts),
        "full_chunks_per_s": len(full_texts) / full_s,
        "refresh_s": refresh_s,
        "refresh_ratio": refresh_s / full_s,
        "refresh_embedded": len(refresh_texts),
        "refresh_expected": len(expected),
        "refresh_exact": sorted(refresh_texts) == sorted(text for _, text in expected),
        "noop_s": noop_s,
        "noop_embedded": len(noop_texts),
    } | audit(_rows(workdir, chunk_id_of), current)
