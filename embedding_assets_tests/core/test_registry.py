from pathlib import Path

import lancedb
import pytest

from embedding_assets.core.errors import ConfigError
from embedding_assets.core.registry import Registry


def test_promote_rollback_and_drop_replay_as_a_stack(tmp_path: Path) -> None:
    registry = Registry(lancedb.connect(str(tmp_path)))
    assert registry.state().live is None
    registry.promote("a")
    registry.promote("b")
    registry.promote("c")
    assert (registry.state().live, registry.state().history) == ("c", ["a", "b"])
    assert registry.rollback() == "b"
    again = Registry(lancedb.connect(str(tmp_path)))  # durable: another process sees the same state
    assert (again.state().live, again.state().history) == ("b", ["a"])
    with pytest.raises(ConfigError, match="b is live"):
        again.record_drop("b")
    again.record_drop("a")
    assert again.state().history == [] and again.state().dropped == {"a"}
    with pytest.raises(ConfigError, match="nothing to roll back to"):
        again.rollback()
    again.promote("a")
    assert again.state().live == "a" and again.state().dropped == set()
    assert [e.action for e in again.events()] == ["promote"] * 3 + ["rollback", "drop", "promote"]
