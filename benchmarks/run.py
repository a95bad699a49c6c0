"""`make bench`: the pipeline's throughput against the bare model, the cost of incremental and no-change
refreshes, peak memory at two corpus sizes, query latency, and the same work done by LangChain's indexing
API and LlamaIndex's IngestionPipeline (benchmarks/peers.py). Writes benchmarks/results.md and results.png.

Usage: python benchmarks/run.py [--docs N] [--memory-docs M] [--out benchmarks/results.md]
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chart import write_chart
from corpus import kernel_sections, pydoc_sections, write_corpus
from peers import PEERS, run_peer
from workload import CountingEmbedder, audit, bare_model_embed, edit_corpus, edit_percent, folder_chunks, keys

from embedding_assets.core.index import Index
from embedding_assets.core.settings import Settings
from embedding_assets.core.shards import shard_keys
from embedding_assets.core.store import VectorStore
from embedding_assets.refresh import refresh


def timed(work):
    started = time.perf_counter()
    result = work()
    return result, time.perf_counter() - started


def settings_for(root: Path, shards: int = Settings.shards) -> Settings:
    """The project's defaults (model, chunking, shard count) on folders under ``root``."""
    return Settings(
        source_dir=str(root / "source"),
        lancedb_uri=str(root / "lancedb"),
        staging_dir=str(root / "staging"),
        shards=shards,
    )


def ingest_peak_rss(sections: list, root: Path) -> float:
    """Peak RSS (MB) of a full ingest in a fresh process."""
    write_corpus(sections, root / "source")
    code = (
        "import sys, resource, dagster as dg; sys.path.insert(0, 'benchmarks'); from run import settings_for;"
        "from pathlib import Path; from embedding_assets.core.index import Index;"
        "from embedding_assets.refresh import refresh;"
        "refresh(Index(settings_for(Path(sys.argv[1]))), dg.DagsterInstance.ephemeral());"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    done = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=4000, help="documents of the main corpus")
    parser.add_argument("--memory-docs", type=int, default=1000, help="N of the peak-memory runs at N and 4N")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results.md"))
    parser.add_argument("--chart", default=str(Path(__file__).parent / "results.png"))
    args = parser.parse_args()
    sections = kernel_sections()
    corpus_name = "Linux kernel documentation (Debian linux-doc-6.1), reST sections"
    if not sections or len(sections) < max(args.docs + 3, 4 * args.memory_docs):
        sections, corpus_name = pydoc_sections(), "Python pydoc topics (fallback, far smaller)"
        args.docs, args.memory_docs = min(args.docs, len(sections) - 3), min(args.memory_docs, len(sections) // 4)
    docs = sections[: args.docs]
    root = Path(tempfile.mkdtemp(prefix="bench-"))
    settings = settings_for(root)
    write_corpus(docs, root / "source")
    index = Index(settings)
    embedder = index.models[0].embedder  # the one active model (EMBEDDING_ASSETS_MODEL)
    figures: dict = {"corpus": corpus_name, "documents": len(docs), "shards": settings.shards}

    # 1. The bare model over exactly the pipeline's chunks: a plain loop in document order on ONNX Runtime's
    # default session (what the model alone gives a user), in batches of 16 (the baseline) and of 1
    # (the fastest such loop on a CPU), and our embedder alone (length-sorted batches of at most
    # BATCH_TOKENS tokens, one per core in flight). Counting tokens loaded the model.
    before = folder_chunks(root / "source", settings.chunking, embedder.count_tokens)
    texts = [c.text for c in before]
    _, bare = timed(lambda: bare_model_embed(texts, embedder.batch_size))
    _, bare_one = timed(lambda: bare_model_embed(texts, 1))
    _, bare_sorted = timed(lambda: embedder.embed(texts))
    figures |= {
        "chunks": len(texts),
        "batch_size": embedder.batch_size,
        "batch_tokens": embedder.batch_tokens,
        "bare_chunks_per_s": len(texts) / bare,
        "bare_one_chunks_per_s": len(texts) / bare_one,
        "bare_sorted_chunks_per_s": len(texts) / bare_sorted,
    }

    # 2. Full ingest through Dagster, as `embedding-assets refresh` runs it: on a SQLite instance on disk, like
    # the local profile's DAGSTER_HOME (an in-memory instance would hide the cost of storing every event).
    instance = dg.DagsterInstance.local_temp(tempfile.mkdtemp(prefix="bench-dagster-"))
    report, full = timed(lambda: refresh(index, instance))
    figures |= {"full_s": full, "full_chunks_per_s": report.total("chunks_embedded") / full}
    figures["full_ratio"] = figures["full_chunks_per_s"] / figures["bare_chunks_per_s"]
    figures["full_ratio_one"] = figures["full_chunks_per_s"] / figures["bare_one_chunks_per_s"]
    figures["full_ratio_sorted"] = figures["full_chunks_per_s"] / figures["bare_sorted_chunks_per_s"]

    # 3. Incremental: edit 1% of the documents, delete 3, add 3 (the peers get the identical edit).
    added = sections[args.docs : args.docs + 3]
    edit_corpus(root / "source", added)
    after = folder_chunks(root / "source", settings.chunking, embedder.count_tokens)
    report, incremental = timed(lambda: refresh(index, instance))
    figures |= {
        "incremental_s": incremental,
        "incremental_embedded": report.total("chunks_embedded"),
        "incremental_expected": len(keys(after) - keys(before)),
        "incremental_ratio": incremental / full,
    }

    # 4. Nothing changed.
    report, noop = timed(lambda: refresh(index, instance))
    figures |= {"noop_s": noop, "noop_embedded": report.total("chunks_embedded")}
    store = VectorStore(settings.lancedb_uri)
    table = store.table(embedder.model_version)
    held = table.to_arrow().select(["chunk_id", "text"]).to_pylist()
    figures |= audit([(r["chunk_id"], r["text"]) for r in held], after)
    wrong = {
        name: (figures[name], want)
        for name, want in (
            ("incremental_embedded", figures["incremental_expected"]),
            ("noop_embedded", 0),
            ("stale_rows", 0),
        )
        if figures[name] != want
    }
    if wrong:
        raise SystemExit(f"the index is not exactly the source after the refresh (measured, expected): {wrong}")

    # 4b. What a refresh pays besides the model: a run of one unchanged shard, and of every shard unchanged.
    _, one_run = timed(lambda: refresh(index, instance, shards=["s000"]))
    _, all_runs = timed(lambda: refresh(index, instance, shards=shard_keys(settings.shards)))
    figures |= {"run_overhead_s": one_run, "shard_overhead_s": (all_runs - one_run) / (settings.shards - 1)}

    # 3b. Three more 1% edits, each of other documents: how much one refresh varies here, and the median.
    rounds = []
    for offset in (1, 2, 3):
        edit_percent(root / "source", offset)
        report, seconds = timed(lambda: refresh(index, instance))
        rounds.append(seconds)
    figures |= {
        "incremental_rounds_s": rounds,
        "incremental_median_ratio": statistics.median([incremental, *rounds]) / full,
    }

    # 6. Query latency, exact and with an ANN index, and the ANN's recall@10 against exact search.
    queries = embedder.embed([t[:200] for t in texts[:: max(1, len(texts) // 100)]][:100])

    def latencies() -> tuple[list[float], list[list[str]]]:
        times, hits = [], []
        for q in queries:
            result, seconds = timed(
                lambda q=q: table.search(q).distance_type("cosine").limit(10).select(["chunk_id"]).to_arrow()
            )
            times.append(seconds * 1000)
            hits.append(result.column("chunk_id").to_pylist())
        return times, hits

    exact_times, exact_hits = latencies()
    from lancedb.index import IvfHnswSq

    table.create_index("vector", config=IvfHnswSq(distance_type="cosine"))
    ann_times, ann_hits = latencies()
    recall = statistics.mean(len(set(a) & set(e)) / len(e) for a, e in zip(ann_hits, exact_hits, strict=True))
    for name, values in (("exact", exact_times), ("ann", ann_times)):
        figures[f"{name}_p50_ms"] = float(np.percentile(values, 50))
        figures[f"{name}_p95_ms"] = float(np.percentile(values, 95))
    figures["ann_recall_at_10"] = recall

    # 5. Peak memory of a full ingest at N and about 4N documents, each in a fresh process.
    n = args.memory_docs
    figures["memory_docs"] = n
    figures["rss_n_mb"] = ingest_peak_rss(sections[:n], Path(tempfile.mkdtemp(prefix="bench-n-")))
    figures["rss_4n_mb"] = ingest_peak_rss(sections[: 4 * n], Path(tempfile.mkdtemp(prefix="bench-4n-")))
    figures |= {
        "cores": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "self_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }

    # 7. The same corpus, edit, chunks and embedder instance through LangChain and LlamaIndex.
    counter = CountingEmbedder(embedder)
    figures["peers"] = []
    for name in PEERS:
        peer_root = Path(tempfile.mkdtemp(prefix="bench-peer-"))
        write_corpus(docs, peer_root / "source")
        figures["peers"].append(
            run_peer(name, peer_root / "work", peer_root / "source", added, settings.chunking, counter)
        )
    Path(args.out).write_text(render(figures))
    write_chart(figures, Path(args.chart))
    print(json.dumps(figures, indent=2))


def render(f: dict) -> str:
    rows = [
        (
            f"1. bare model (ONNX Runtime's default session, a loop in document order, batches of {f['batch_size']})",
            f"{f['bare_chunks_per_s']:.1f} chunks/s",
            "the limit a user gets from the model alone",
        ),
        (
            "1. the same loop, batches of 1 (the fastest plain loop on a CPU)",
            f"{f['bare_one_chunks_per_s']:.1f} chunks/s",
            "",
        ),
        (
            f"1. our embedder alone (length-sorted batches of at most {f['batch_tokens']} tokens, one per core in "
            "flight)",
            f"{f['bare_sorted_chunks_per_s']:.1f} chunks/s",
            "what our embedder does",
        ),
        (
            "2. full ingest through Dagster",
            f"{f['full_chunks_per_s']:.1f} chunks/s in {f['full_s']:.1f} s, ratio {f['full_ratio']:.2f} "
            f"({f['full_ratio_one']:.2f} against batches of 1, {f['full_ratio_sorted']:.2f} against our embedder "
            "alone)",
            "≥ 1.2 (issue 13)",
        ),
        (
            "3. refresh after editing 1% (+3 deleted, +3 added)",
            f"{f['incremental_s']:.2f} s, {f['incremental_embedded']} chunks embedded "
            f"({f['incremental_expected']} changed), {100 * f['incremental_ratio']:.1f}% of full, "
            f"{f['stale_rows']} stale rows",
            "≤ 1.5%, never > 3%",
        ),
        (
            "3b. three more 1% edits, each of other documents",
            ", ".join(f"{s:.2f}" for s in f["incremental_rounds_s"])
            + f" s; the median of the four refreshes {100 * f['incremental_median_ratio']:.2f}% of full",
            "≤ 1.5%",
        ),
        ("4. no-change refresh", f"{f['noop_s']:.2f} s, {f['noop_embedded']} chunks embedded", "< 1.5 s, 0"),
        (
            "4b. what a refresh costs besides the model",
            f"a run {f['run_overhead_s']:.2f} s, plus {1000 * f['shard_overhead_s']:.0f} ms per unchanged shard in it",
            "",
        ),
        (
            f"5. peak RSS of a full ingest, {f['memory_docs']:,} and {4 * f['memory_docs']:,} documents",
            f"{f['rss_n_mb']:.0f} MB and {f['rss_4n_mb']:.0f} MB",
            "no growth beyond the model and one batch",
        ),
        ("6. top-10 query, exact", f"p50 {f['exact_p50_ms']:.1f} ms, p95 {f['exact_p95_ms']:.1f} ms", ""),
        (
            "6. top-10 query, IVF_HNSW_SQ",
            f"p50 {f['ann_p50_ms']:.1f} ms, p95 {f['ann_p95_ms']:.1f} ms, recall@10 {f['ann_recall_at_10']:.3f}",
            "",
        ),
    ]
    table = "\n".join(f"| {m} | {v} | {g} |" for m, v, g in rows)
    ours = {
        "tool": "embedding_assets (`refresh`, Dagster)",
        "full_s": f["full_s"],
        "refresh_s": f["incremental_s"],
        "refresh_ratio": f["incremental_ratio"],
        "refresh_embedded": f["incremental_embedded"],
        "refresh_expected": f["incremental_expected"],
        "stale_rows": f["stale_rows"],
        "noop_s": f["noop_s"],
        "noop_embedded": f["noop_embedded"],
    }
    peers = "\n".join(
        f"| {p['tool']} | {p['full_s']:.1f} | {p['refresh_s']:.2f} | {100 * p['refresh_ratio']:.1f}% | "
        f"{p['refresh_embedded']} ({p['refresh_expected']}){_exact(p)} | {p['stale_rows']} | {p['noop_s']:.2f} "
        f"({p['noop_embedded']}) |"
        for p in [ours, *f["peers"]]
    )
    return (
        f"# Benchmark results\n\nMachine: {f['cores']} cores, {f['memory_gb']} GiB. Corpus: {f['corpus']}, "
        f"{f['documents']} documents in {f['shards']} shards (the default), {f['chunks']} chunks, "
        "all-MiniLM-L6-v2 int8 ONNX. "
        "Produced by `make bench` (`benchmarks/run.py`).\n\n| measurement | value | goal |\n|---|---|---|\n"
        f"{table}\n\n## 7. The same work by the tools users would otherwise pick\n\n"
        "Same run, corpus, edit, chunks (one document per chunk, no splitter) and embedder instance, each "
        "tool writing to its own LanceDB table (`benchmarks/peers.py`). Stale rows: rows left that are not "
        "a current chunk, duplicates included.\n\n"
        "| tool | full s | refresh s | refresh % of full | chunks embedded (changed) | stale rows | "
        f"no-op s (chunks embedded) |\n|---|---|---|---|---|---|---|\n{peers}\n\n{PEER_NOTES}\n\n"
        "![chart](results.png)\n"
    )


def _exact(peer: dict) -> str:
    if "refresh_exact" not in peer:
        return ""
    return ", exactly the changed chunks" if peer["refresh_exact"] else ", not the changed set"


PEER_NOTES = """How the peers are set up, and what had to be worked around on lancedb 0.40:

- Every tool calls the same `LocalMiniLM` instance through a thin wrapper (LangChain `Embeddings`, LlamaIndex
  `BaseEmbedding` with `embed_batch_size` 16), so forward passes are alike for all: texts of similar length, at
  most 256 tokens a pass. LangChain hands the embedder 100 texts per call (`index()`'s batch size), which our
  embedder length-sorts; LlamaIndex hands it 16.
- LangChain: `index(docs, SQLRecordManager(sqlite), LanceDB(..., mode="append"), source_id_key="source")`. The
  community `LanceDB` store defaults to `mode="overwrite"`, which replaces the table on every batch.
  `cleanup="incremental"` never deletes the chunks of deleted documents (those are its stale rows), and it
  deletes, then re-embeds, the chunks of a document that straddles two `index()` batches of 100.
- LlamaIndex: `IngestionPipeline([pass-through node parser, embed_model], SimpleDocumentStore(),
  LanceDBVectorStore, UPSERTS_AND_DELETE)`. The pass-through parser makes one node per chunk-document, linked to
  it as a splitter would, so the store's `doc_id` column holds the id its deletes use. `source` is excluded from
  the embedded text. `LanceDBVectorStore.delete`/`delete_nodes` quote ids with double quotes, which lancedb
  >= 0.38 reads as column names, so every delete fails; a subclass here quotes them as SQL strings."""


if __name__ == "__main__":
    main()
