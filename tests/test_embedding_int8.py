"""fashion.embedding.int8: the openvino-int8 runtime on tiny data (no timings): rows independent of
their batch, unit vectors, the cache tag and run.json name the calibration set, the quantised network
is kept in the cache and a run that reads it computes what the calibrating run computed."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from fashion.embedding import RUNTIMES, Embedder
from fashion.embedding import int8

# In the default run. They once had a process of their own: a later test died of SIGSEGV, the signal
# stack OpenVINO plugins left unmapped (fashion.embedding.sigstack, fixed); the last test checks it.
pytestmark = pytest.mark.int8

pytest.importorskip("openvino", reason="the int8 runtime runs on OpenVINO")
pytest.importorskip("nncf", reason="the int8 runtime needs NNCF: pip install 'fashion[int8]'")

SIZE = 32


def _embedder(like: Embedder | None = None) -> Embedder:
    import torch

    torch.manual_seed(0)
    e = Embedder.from_backbone("efficientnet_lite0", pretrained=False, size=SIZE, runtime="openvino-int8")
    if like is not None:  # the same weights (the random init differs per instance)
        e._body, e.checksum = like._body, like.checksum
    return e


@pytest.fixture(scope="module")
def photos():
    """11 photos of the bundled sample (not the calibration photos)."""
    from fashion.sample import sample_root

    calibration = set(int8.calibration_paths())
    return [str(p) for p in sorted((sample_root() / "img").rglob("*.jpg")) if str(p) not in calibration][::15][:11]


def test_int8_is_a_runtime_choice_and_describes_its_calibration():
    assert "openvino-int8" in RUNTIMES
    paths = int8.calibration_paths()
    assert len(paths) == len(set(paths)) == int8.CALIBRATION_IMAGES
    calibration = int8.calibration_set()
    assert calibration == int8.calibration_set()  # a fixed set: the same id every time
    assert calibration["source"] == "fashion/data/sample" and calibration["images"] == int8.CALIBRATION_IMAGES
    e = _embedder()
    assert e.describe()["calibration"] == calibration and e.describe()["runtime"] == "openvino-int8"
    tag = e.cache_path("c").name
    assert f"-openvino-int8-{calibration['id']}-" in tag
    other = Embedder.from_backbone("efficientnet_lite0", pretrained=False, size=SIZE, runtime="openvino")
    other.checksum = e.checksum
    assert other.cache_path("c").name != tag and "calibration" not in other.describe()


def test_int8_rows_do_not_depend_on_their_batch_and_the_saved_network_gives_the_same_vectors(photos, tmp_path,
                                                                                            monkeypatch):
    monkeypatch.setattr(int8, "CALIBRATION_IMAGES", 8)  # a quick calibration: the mechanism, not the quality
    first = _embedder()
    whole = first.embed(photos, batch_size=16, cache_dir=tmp_path / "a", num_workers=0, progress=False)
    pieces = first.embed(photos, batch_size=3, num_workers=0, progress=False)  # same network, other batches
    assert whole.ok.all() and np.array_equal(whole.vectors, pieces.vectors)
    np.testing.assert_allclose(np.linalg.norm(whole.vectors, axis=1), 1.0, atol=1e-5)
    kept = first.cache_path(tmp_path / "a") / int8.MODEL_FILE
    assert kept.is_file() and kept.with_suffix(".bin").is_file()

    for chunk in kept.parent.glob("chunk_*.npz"):  # vectors gone, the quantised network kept
        chunk.unlink()
    monkeypatch.setattr(int8, "_calibrate", lambda *a: pytest.fail("calibrated again instead of reading the IR"))
    again = _embedder(like=first)
    resumed = again.embed(photos, batch_size=4, cache_dir=tmp_path / "a", num_workers=0, progress=False)
    assert resumed.n_computed == len(photos) and np.array_equal(resumed.vectors, whole.vectors)

    from fashion.embedding import sigstack

    del first, again  # released in the order they were made, NNCF's Cores long gone: a signal stack
    gc.collect()  # that is still mapped (else the next handled signal is a SIGSEGV: see sigstack)
    assert sigstack.usable()


def test_int8_without_nncf_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(int8, "nncf_available", lambda: False)
    with pytest.raises(ValueError, match=r"pip install 'fashion\[int8\]'"):
        Embedder.from_backbone("efficientnet_lite0", pretrained=False, size=SIZE, runtime="openvino-int8")
