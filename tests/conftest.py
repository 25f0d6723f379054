"""Shared test set-up: pinned PRNG, hypothesis profiles, the statistical budget."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest
from hypothesis import HealthCheck, settings

# CI replays the same examples every run (no flakes from new draws, no example database);
# locally `HYPOTHESIS_PROFILE=dev` explores new ones.
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ROOT = Path(__file__).resolve().parents[1]

#: False-failure budget of one statistical test function (the testing rules of docs/contributing.md).
TEST_ALPHA = 1e-6


def pinned_key(seed: int) -> jax.Array:
    """A key with the PRNG implementation pinned, so a JAX default change cannot move the stream."""
    return jax.random.key(seed, impl="threefry2x32")


@pytest.fixture
def key() -> jax.Array:
    return pinned_key(0)


@pytest.fixture(scope="session")
def built_site(tmp_path_factory) -> Path:
    """The docs site, built once per test session with `mkdocs build --strict` (the build
    executes the notebooks, so every test that reads the site shares this one build)."""
    site = tmp_path_factory.mktemp("docs") / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    env.pop("SNRKIT_LEDGER_DIR", None)
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200, check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"mkdocs build --strict failed:\n{result.stdout}{result.stderr}", pytrace=False)
    return site
