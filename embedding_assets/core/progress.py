"""Progress of long work, told to whoever watches it in this process (the command line's display).

Work reports each item it finishes (a shard of a step, a batch of keys, a file) with its figures;
nothing listens unless a caller is ``watching``, so reporting costs a function call. Runs that
``embedding-assets refresh`` executes in its own process report through here too.
"""

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

Listener = Callable[[str, str, Mapping[str, Any]], None]
"""Called with (step, item, figures) as each item of a step is finished."""

_listeners: list[Listener] = []


@contextmanager
def watching(listener: Listener) -> Iterator[None]:
    """Tell ``listener`` of everything finished while the block runs."""
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)


def advance(step: str, item: str = "", **figures: Any) -> None:
    """``item`` of ``step`` is finished (a shard, a batch, a file), with what it counted."""
    for listener in tuple(_listeners):
        listener(step, item, figures)
