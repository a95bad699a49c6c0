"""The demo corpus: Python's own reference documentation, from the stdlib module ``pydoc_data.topics``."""

from pathlib import Path

from embedding_assets.core import progress


def export_pydoc_topics(folder: str | Path) -> int:
    """Write each pydoc topic as ``<topic>.txt`` under ``folder``; returns the number written.

    Files whose content is already identical are left alone, so a second export changes nothing.
    """
    from pydoc_data.topics import topics

    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    for name, text in sorted(topics.items()):
        path = root / f"{name}.txt"
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        progress.advance("export", path.name)
    return len(topics)
