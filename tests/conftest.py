"""Test-wide settings and the shared headless-Chromium fixture."""

import os
import shutil

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

CHROMIUM = os.environ.get("FASHION_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# Headless, no sandbox (CI runs as root), and none of the background traffic a closed network refuses.
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


@pytest.fixture(scope="session")
def chromium():
    """A Playwright Browser on Debian's Chromium; skips with the reason when either is missing."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright's Python package is not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def sample_run(tmp_path_factory):
    """A small finished run on the bundled sample (60 photos, torch runtime, k = 5): the service tests' data."""
    from fashion.retrieval import MeasureConfig, run

    out = tmp_path_factory.mktemp("sample_run") / "out"
    run(MeasureConfig(output_dir=os.fspath(out), limit=60, k=5, grids=0, runtime="torch", num_workers=0))
    return out


@pytest.fixture(scope="session")
def sample_service(sample_run):
    """:class:`fashion.service.SimilarityService` over :func:`sample_run`, opened once."""
    from fashion.service import SimilarityService

    return SimilarityService.open(sample_run)
