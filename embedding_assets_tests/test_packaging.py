"""The wheel carries the Dagster instance profiles: built from the sources, installed outside the checkout,
and asked through the real CLI where each profile's dagster.yaml is."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from embedding_assets.core.profiles import PROFILES

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
# The files the build reads: a copy keeps setuptools' build/ and egg-info out of the shared checkout.
SOURCES = ("pyproject.toml", "setup.cfg", "README.md", "embedding_assets")
PIP = (sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input")

# Run with -S -E: no .pth file is processed (the editable install's finder among them) and no PYTHON*
# variable is read, so nothing of the checkout can be imported. sys.path is the wheel's target, then the
# venv's site-packages for the dependencies, then the standard library.
PROBE = """
import contextlib, io, json, os, sys
site, purelib = sys.argv[1:]
sys.path[:] = [site, purelib, *(p for p in sys.path if p)]
import embedding_assets
from embedding_assets.cli import main
from embedding_assets.core.profiles import instance_config
printed = {}
for profile in ("local", "production"):
    os.environ["EMBEDDING_ASSETS_PROFILE"] = profile
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["instance-config"])
    printed[profile] = [code, out.getvalue()]
try:
    instance_config("prod")
    unknown = None
except ValueError as err:
    unknown = str(err)
own = {n: getattr(m, "__file__", None) for n, m in sys.modules.items() if n.split(".")[0] == "embedding_assets"}
print(json.dumps({"package": embedding_assets.__file__, "printed": printed, "unknown": unknown, "own": own}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built offline (no build isolation) with the venv's own setuptools."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    dist = tmp / "dist"
    build = [*PIP, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(dist), str(src)]
    done = subprocess.run(build, cwd=tmp, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    (built,) = dist.glob("embedding_assets-*.whl")
    return built


def test_the_wheel_holds_both_profiles_and_py_typed(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for profile in PROFILES:
        assert f"embedding_assets/deploy/{profile}/dagster.yaml" in names
    assert "embedding_assets/py.typed" in names
    assert not any(name.startswith(("deploy/", "embedding_assets_tests/")) for name in names)


def test_an_installed_wheel_finds_its_profiles_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    install = [*PIP, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)]
    done = subprocess.run(install, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    purelib = sysconfig.get_paths()["purelib"]  # of this interpreter, the venv's python
    probe = [sys.executable, "-S", "-E", "-c", PROBE, str(site), purelib]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMBEDDING_ASSETS_", "PYTHON"))}
    done = subprocess.run(probe, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])

    assert Path(result["package"]).is_relative_to(site)
    assert result["own"] and all(Path(f).is_relative_to(site) for f in result["own"].values()), result["own"]
    for profile in PROFILES:
        code, out = result["printed"][profile]
        assert code == 0
        printed = Path(out.strip())
        assert printed.is_relative_to(site) and printed.is_file(), printed
        assert printed == site / "embedding_assets" / "deploy" / profile / "dagster.yaml"
        assert printed.read_bytes() == (ROOT / "embedding_assets" / "deploy" / profile / "dagster.yaml").read_bytes()
    assert result["unknown"] == "unknown profile 'prod'"
