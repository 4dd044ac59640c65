"""fashion.scale on Ray (``ray`` marker): loopback only, every id once, vectors equal the local engine's.

The session's one Ray (tests/conftest.py's ``ray_cluster``: 2 CPUs, ~300 MB object store, no dashboard,
node IP 127.0.0.1, temp dir under the test's temporary directory); it is shut down at the end and the
fixture checks that none of its processes is left. Token authentication is switched off for this
loopback-only cluster (``RAY_AUTH_MODE=disabled``), so no token file is written anywhere (Ray would
otherwise create ``~/.ray/auth_token``; its config is read at import, before a fixture could point it
elsewhere).
"""

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytestmark = pytest.mark.ray
# Before Ray is imported: keep 127.0.0.1 as the node address (Ray otherwise swaps in the host's interface
# address), and no token file (see the module docstring). Only Ray reads these variables.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
ray = pytest.importorskip("ray", reason="the [scale] extra is not installed (pip install -e '.[scale]')")

from factories import seal_work  # noqa: E402
from fashion.scale import embed, executors, ivfpq, knn, manifest, shards  # noqa: E402

from tests.test_scale_embed import make_dataset  # noqa: E402


@pytest.fixture(scope="module")
def photos_run(tmp_path_factory):
    """200 real JPEGs + a corrupt one, manifested, and the local engine's embeddings of them."""
    from fashion import datasets

    base = tmp_path_factory.mktemp("scale_ray")
    items = datasets.load(make_dataset(base / "data", n=200))
    manifest.write_manifest(items, base / "local")
    local = embed.embed_run(_config(base / "local", "local"), progress=False)
    return base, embed.read_embeddings(local.directory)


def _config(run, engine, **kw):
    return embed.EmbedConfig(str(run), engine=engine, runtime="openvino", shard_rows=32, batch_size=16,
                             num_workers=1, **kw)


def _fresh_run(base, name):
    run = base / name
    shutil.copytree(base / "local" / "manifest", run / "manifest")  # the manifest stage only
    return run


@pytest.mark.parametrize("actors", [1, 2])
def test_ray_embeds_every_id_once_equal_to_local(ray_cluster, photos_run, actors):
    base, (ref_ids, ref) = photos_run
    run = _fresh_run(base, f"ray{actors}")
    result = embed.embed_run(_config(run, "ray", actors=actors, cpus_per_actor=0.5), progress=False)
    assert result.computed == 201 and result.failed == 1
    ids = shards.read_ids(result.directory)
    assert sorted(ids.tolist()) == list(range(201))  # every id exactly once
    got_ids, got = embed.read_embeddings(result.directory)
    assert np.array_equal(got_ids, ref_ids) and np.array_equal(got, ref)  # OpenVINO: bitwise


def test_ray_index_and_knn_give_the_local_neighbours(ray_cluster, photos_run):
    base, _ = photos_run
    local, far = base / "local", _fresh_run(base, "ray_knn")
    shutil.copytree(local / "embeddings", far / "embeddings")
    for run, engine in ((local, "local"), (far, "ray")):
        executor = executors.make_executor(engine, actors=2, cpus_per_actor=0.5)
        ivfpq.build(embed.latest_embeddings(run), run / "index", id_space=201, executor=executor)
        seal_work(run, 5, executor)  # fashion knn: query the shards, then seal with the pipeline's stages
    a, b = knn.read_neighbors(local), knn.read_neighbors(far)
    assert a[["query_id", "rank", "neighbor_id"]].equals(b[["query_id", "rank", "neighbor_id"]])
    assert len(a) == 200 * 5 and (a["query_id"] != a["neighbor_id"]).all()
    # both end sealed as runs of format 2 that the reader opens: the same vectors and neighbours
    from fashion.run.reader import open_run

    ra, rb = open_run(local), open_run(far)
    assert np.array_equal(ra.embeddings, rb.embeddings) and ra.neighbors().equals(rb.neighbors())
    assert ra.index.name == rb.index.name == "faiss-ivfpq" and ra.index.count == 200


@pytest.mark.slow
def test_killed_driver_is_resumed(ray_cluster, photos_run):
    base, (ref_ids, ref) = photos_run
    run = _fresh_run(base, "killed")
    cmd = [sys.executable, "-m", "fashion", "embed", str(run), "--engine", "ray", "--address", ray_cluster,
           "--runtime", "openvino", "--shard-rows", "16", "--batch-size", "8", "--cpus-per-actor", "0.5"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = None
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            dirs = list((run / "embeddings").glob("*/part-*.parquet"))
            if dirs:
                out = dirs[0].parent
                break
            time.sleep(0.2)
        assert out is not None, "the driver wrote no shard"
        proc.send_signal(signal.SIGKILL)  # the driver dies mid-run
    finally:
        proc.kill()
        proc.wait()
    assert len(shards.read_ids(out)) < 201
    result = embed.embed_run(_config(run, "ray", cpus_per_actor=0.5), progress=False)
    assert result.done_before > 0
    assert sorted(shards.read_ids(out).tolist()) == list(range(201))
    got_ids, got = embed.read_embeddings(out)
    assert np.array_equal(got_ids, ref_ids) and np.array_equal(got, ref)


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_torch_runtime_on_ray_equals_the_local_engine_bitwise(ray_cluster, photos_run, precision):
    """The torch runtime on the Ray engine (2 actors of half a CPU each, so one thread apiece by Ray's
    default) gives the local engine's vectors bit for bit, as `benchmarks/scale.py drift` measured
    (benchmarks/README.md). float32 is the hard case: oneDNN's kernels round by thread count, so the
    workers run the network on the driver's count."""
    base, _ = photos_run
    runs = {}
    for engine in ("local", "ray"):
        run = _fresh_run(base, f"torch_{engine}_{precision}")
        cfg = embed.EmbedConfig(str(run), engine=engine, runtime="torch", precision=precision, shard_rows=32,
                                batch_size=16, num_workers=1, actors=2, cpus_per_actor=0.5)
        runs[engine] = embed.read_embeddings(embed.embed_run(cfg, progress=False).directory)
    (ids_a, a), (ids_b, b) = runs["local"], runs["ray"]
    assert np.array_equal(ids_a, ids_b) and len(ids_a) == 200
    d = embed.drift(a, b)
    assert d["bitwise_equal"] == 200, d
