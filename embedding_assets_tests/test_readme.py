"""The README's commands are the ones the Makefile and CI really run."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), flags=re.M))


def test_quick_start_commands_are_makefile_targets() -> None:
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^make (\w+)", quick_start, flags=re.M)
    assert commands == ["demo", "test", "ui"]
    assert set(commands) <= makefile_targets()


def test_every_make_command_in_the_readme_exists() -> None:
    mentioned = set(re.findall(r"`make (\w+)", README)) | set(re.findall(r"^make (\w+)", README, flags=re.M))
    assert mentioned and mentioned <= makefile_targets()


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, flags=re.M)
    assert "make test" in README


def test_every_setting_is_documented_and_nothing_else() -> None:
    from dataclasses import fields

    from embedding_assets.core.settings import Settings

    documented = set(re.findall(r"`EMBEDDING_ASSETS_(\w+)`", README))
    assert documented == {f.name.upper() for f in fields(Settings)}
