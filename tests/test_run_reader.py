"""Opening a large run cheaply (fashion.run.reader.open_run): large files are checked by their sampled
fingerprint, never read whole; a damaged file is still refused at open; the service answers from the
on-disk IVF-PQ run that benchmarks/serve.py grows (here small, with the size threshold lowered)."""

import runpy
from pathlib import Path

import numpy as np
import pytest

from fashion import rundir
from fashion.rundir import RunDirError

REPO = Path(__file__).resolve().parents[1]
N = 3000


def _read_bytes() -> int:
    """Bytes this process has read with read(2) so far (mapped pages do not count)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


@pytest.fixture(scope="module")
def ivfpq_run(sample_run, tmp_path_factory):
    """A 3,000-item run of benchmarks/serve.py's big_run with the on-disk IVF-PQ index, sealed while files
    above 256 KiB count as large (sampled fingerprints of 16 blocks of 4 KiB)."""
    patch = pytest.MonkeyPatch()
    patch.setattr(rundir, "SAMPLE_ABOVE", 256 * 1024)
    patch.setattr(rundir, "SAMPLE_BLOCKS", 16)
    patch.setattr(rundir, "SAMPLE_BLOCK", 4096)
    big_run = runpy.run_path(str(REPO / "benchmarks" / "serve.py"))["big_run"]
    dest = tmp_path_factory.mktemp("ivfpq") / "run"
    built = big_run(Path(sample_run), dest, N, "faiss-ivfpq", noise=0.6)
    yield dest, built
    patch.undo()


@pytest.fixture
def small_samples(monkeypatch):
    monkeypatch.setattr(rundir, "SAMPLE_ABOVE", 256 * 1024)
    monkeypatch.setattr(rundir, "SAMPLE_BLOCKS", 16)
    monkeypatch.setattr(rundir, "SAMPLE_BLOCK", 4096)


def test_the_grown_run_is_an_ivfpq_run_with_sampled_fingerprints(ivfpq_run):
    import json

    dest, built = ivfpq_run
    info = json.loads((dest / "run.json").read_text())
    assert info["index"]["kind"] == "ivfpq" and info["index"]["count"] == N and built["n"] == N
    files = json.loads((dest / "manifest.json").read_text())["files"]
    large = {rel for rel, e in files.items() if e["size"] > 256 * 1024}
    assert {"embeddings.npy", "ivfpq/vectors.f16.npy"} <= large
    assert all(("sample" in files[rel]) == (rel in large) for rel in files)


def test_open_reads_a_bounded_part_of_the_large_files(ivfpq_run, small_samples, monkeypatch):
    from fashion.run.reader import open_run

    dest, _ = ivfpq_run
    hashed = []
    whole = rundir.file_sha256
    monkeypatch.setattr(rundir, "file_sha256", lambda p: hashed.append(Path(p).name) or whole(p))
    before = _read_bytes()
    run = open_run(dest)
    read = _read_bytes() - before
    big = (dest / "embeddings.npy").stat().st_size + (dest / "ivfpq" / "vectors.f16.npy").stat().st_size
    assert "embeddings.npy" not in hashed and "vectors.f16.npy" not in hashed  # sampled, not hashed whole
    assert "run.json" in hashed  # small files still are
    assert read < big / 4, (read, big)  # 3 large files x 64 KiB of samples, plus the small files
    assert isinstance(run.embeddings, np.memmap) and run.embeddings.shape == (N, 1280)
    assert isinstance(run.index.live.base.vectors, np.memmap)  # the re-rank reads the float16 file by mapping
    dist, ids = run.index.search(np.asarray(run.embeddings[[5, N - 1]]), 3)
    assert ids[:, 0].tolist() == [5, N - 1] and np.abs(dist[:, 0]).max() < 1e-2


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_a_damaged_large_file_is_refused_at_open(ivfpq_run, small_samples, tmp_path):
    """A change inside a sampled block (here the last bytes of embeddings.npy) is refused by open_run;
    one confined to the unsampled middle passes the open (the documented trade-off) and is refused by
    the full check (open_run(full_check=True), rundir.verify)."""
    import shutil

    from fashion.run.reader import open_run

    src, _ = ivfpq_run
    run = tmp_path / "run"
    shutil.copytree(src, run)  # copies, not links: the module's run stays whole
    npy = run / "embeddings.npy"
    size = npy.stat().st_size
    _flip(npy, size - 1)
    with pytest.raises(RunDirError, match=r"embeddings.npy does not match its sampled SHA-256"):
        open_run(run, load_index=False)
    _flip(npy, size - 1)
    # between two sampled blocks: 16 blocks of 4 KiB over ~15 MB leave ~1 MB gaps
    gap = (size - 4096) // 15 // 2
    _flip(npy, gap)
    assert open_run(run, load_index=False).embeddings.shape == (N, 1280)
    with pytest.raises(RunDirError, match=r"embeddings.npy does not match its SHA-256"):
        open_run(run, load_index=False, full_check=True)
    with pytest.raises(RunDirError, match=r"embeddings.npy does not match its SHA-256"):
        rundir.verify(run)


def test_a_truncated_or_swapped_large_file_is_refused_at_open(ivfpq_run, small_samples, tmp_path):
    import shutil

    from fashion.run.reader import open_run

    src, _ = ivfpq_run
    run = tmp_path / "run"
    shutil.copytree(src, run)
    f16 = run / "ivfpq" / "vectors.f16.npy"
    data = f16.read_bytes()
    f16.write_bytes(data[:-2])
    with pytest.raises(RunDirError, match=r"ivfpq/vectors.f16.npy has \d+ bytes but manifest.json says"):
        open_run(run)
    # same size, other content (another run's vectors): the header is sampled, the rows in the blocks differ
    vectors = np.load(run / "embeddings.npy", mmap_mode="r")
    np.save(f16, np.asarray(vectors[::-1], dtype=np.float16))
    assert f16.stat().st_size == len(data)
    with pytest.raises(RunDirError, match=r"vectors.f16.npy does not match its sampled SHA-256"):
        open_run(run)


def test_the_service_answers_from_the_ivfpq_run(ivfpq_run, small_samples):
    from fastapi.testclient import TestClient

    from fashion.server import create_app
    from fashion.service import SimilarityService

    dest, _ = ivfpq_run
    service = SimilarityService.open(dest, warm=False)
    assert service.run.index.name == "faiss-ivfpq" and service.n_gallery == N
    items = service.run.items
    i = int(np.flatnonzero(items["split"].to_numpy() != "synthetic")[3])
    found = service.search_image(items["path"].iat[i], k=3).results
    assert found[0].distance == pytest.approx(0, abs=1e-2)  # the photo itself (or a copy of it) first
    assert items["path"].iat[found[0].id] == items["path"].iat[i]
    with TestClient(create_app(service), base_url="http://localhost") as client:
        answer = client.get(f"/api/items/{N - 2}/neighbors?k=4")
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["results"]) == 4 and N - 2 not in [r["id"] for r in answer.json()["results"]]


def test_row_reader_reads_the_rows_asked_for(tmp_path):
    matrix = np.random.default_rng(0).standard_normal((50, 7)).astype(np.float16)
    np.save(tmp_path / "m.npy", matrix)
    from fashion.rowreader import RowReader

    reader = RowReader(tmp_path / "m.npy")
    ids = [49, 0, 3, 3, 17]
    assert np.array_equal(reader.read(ids), matrix[ids]) and reader.read([]).shape == (0, 7)
    with pytest.raises(IndexError):
        reader.read([50])
