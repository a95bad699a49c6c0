"""benchmarks/results.png: embedding_assets beside each peer on full-ingest throughput, refresh cost and
no-op time, with the bare model's throughput as reference lines."""

from pathlib import Path

OURS = "#1f6feb"
PEER = "#8b949e"


def write_chart(figures: dict, path: Path) -> None:
    """Three panels of grouped bars (one bar per tool) from the figures ``run.py`` collected."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tools = [
        {
            "label": "embedding_assets",
            "full_chunks_per_s": figures["full_chunks_per_s"],
            "refresh_ratio": figures["incremental_ratio"],
            "noop_s": figures["noop_s"],
        },
        *figures["peers"],
    ]
    labels = [t["label"] for t in tools]
    colors = [OURS] + [PEER] * (len(tools) - 1)
    fig, axes = plt.subplots(1, 3, figsize=(15, 5))
    panels = [
        ("Full ingest (chunks/s, higher is better)", [t["full_chunks_per_s"] for t in tools], "{:.1f}"),
        ("Refresh after a 1% edit (% of full ingest)", [100 * t["refresh_ratio"] for t in tools], "{:.1f}%"),
        ("No-change refresh (s, lower is better)", [t["noop_s"] for t in tools], "{:.2f}"),
    ]
    for ax, (title, values, fmt) in zip(axes, panels, strict=True):
        bars = ax.bar(range(len(tools)), values, color=colors)
        ax.bar_label(bars, labels=[fmt.format(v) for v in values], fontsize=8)
        ax.set_xticks(range(len(tools)), labels, fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.margins(y=0.4)  # room above the bars for the legends
    axes[0].axhline(
        figures["bare_chunks_per_s"],
        color="black",
        linestyle="--",
        linewidth=1,
        label=f"bare model, document order, batches of 16 ({figures['bare_chunks_per_s']:.1f})",
    )
    axes[0].axhline(
        figures["bare_sorted_chunks_per_s"],
        color="black",
        linestyle=":",
        linewidth=1,
        label=f"our embedder alone ({figures['bare_sorted_chunks_per_s']:.1f})",
    )
    axes[0].legend(fontsize=7, loc="upper left")
    axes[1].axhline(1.5, color="green", linestyle="--", linewidth=1, label="goal 1.5%")
    axes[1].axhline(3.0, color="red", linestyle=":", linewidth=1, label="never above 3%")
    axes[1].legend(fontsize=7, loc="upper left")
    fig.suptitle(
        f"{figures['documents']} documents, {figures['chunks']} chunks, all-MiniLM-L6-v2 int8, "
        f"{figures['cores']} cores, {figures['memory_gb']} GiB",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
