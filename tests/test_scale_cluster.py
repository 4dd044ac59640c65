"""fashion.scale on a two-node Ray cluster on one machine, loopback only (``slow`` + ``ray`` markers).

The cluster (``ray.cluster_utils.Cluster``: a head and a second node, 3 logical CPUs each, node IP 127.0.0.1,
Ray's temp dir under ``tmp_path``) lives in a child process of its own: the session-scoped Ray of
``test_scale_ray`` may already be running in the pytest process, and ``ray stop`` would stop every
Ray on the machine, not only this test's. The child runs embed → index → knn with ``engine="ray"``
on the cluster (two 2-CPU knn actors: one per node, so both nodes work), reports what Ray says
about its nodes and the addresses its processes listen on, and shuts the cluster down. The test
compares the results with the local engine's and checks with ``ps`` that no process of the cluster
(nothing whose command line names its temp dir) is left.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]
# Ray reads these at import: keep 127.0.0.1 as the node address, no token file (see test_scale_ray; this
# module is collected first, so it must set them before its importorskip imports Ray)
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}
for _name, _value in RAY_ENV.items():
    os.environ.setdefault(_name, _value)
pytest.importorskip("ray", reason="the [scale] extra is not installed (pip install -e '.[scale]')")

LOOPBACK = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[1]


def _cluster_processes(temp_dir, seen=None) -> list[str]:
    """``ps`` lines of the cluster's processes still alive: those whose command line names ``temp_dir``
    (GCS, raylets, agents carry their session directory in their arguments) and those the child saw
    running (``seen``: pid → start time; workers retitle themselves ``ray::…``)."""
    import psutil

    ps = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=True).stdout
    left = [line for line in ps.splitlines() if str(temp_dir) in line and "ps -eo" not in line]
    for pid, started in (seen or {}).items():
        try:
            if abs(psutil.Process(int(pid)).create_time() - started) < 1e-3:  # the same process, not a reused pid
                left.append(f"{pid} (seen running in the cluster)")
        except psutil.NoSuchProcess:
            pass
    return left


def _config(run, engine, **kw):
    from fashion.scale import embed

    return embed.EmbedConfig(str(run), engine=engine, runtime="openvino", shard_rows=16, batch_size=8,
                             num_workers=1, **kw)


def child(run_dir: str, temp_dir: str, report: str) -> None:
    """The child process: start the two-node cluster, run the stages on it, report, shut it down."""
    import psutil
    import ray
    from ray.cluster_utils import Cluster

    from fashion.scale import embed, executors, ivfpq, knn

    # 3 logical CPUs a node: room for the two embed actors (0.5 CPU each) and the tasks scheduled beside them
    node = {"num_cpus": 3, "node_ip_address": LOOPBACK, "object_store_memory": 150 * 2**20, "temp_dir": temp_dir}
    cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    out = {}
    try:
        cluster.add_node(**node)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        out["nodes"] = [{"ip": n["NodeManagerAddress"], "alive": n["Alive"]} for n in ray.nodes()]
        out["gcs"] = ray.get_runtime_context().gcs_address
        result = embed.embed_run(_config(run_dir, "ray", actors=2, cpus_per_actor=0.5), progress=False)
        out["computed"], out["failed"], out["embeddings"] = result.computed, result.failed, result.directory
        ivfpq.build(result.directory, Path(run_dir) / "index", executor=executors.make_executor("ray"))
        knn.knn_run(knn.KnnConfig(run_dir, k=5, engine="ray", actors=2, cpus_per_actor=2.0))
        # the cluster's processes: those naming the temp dir, and their children (workers retitle themselves)
        top = [p for p in psutil.process_iter(["cmdline"]) if temp_dir in " ".join(p.info["cmdline"] or [])]
        procs = {p for t in top for p in [t, *t.children(recursive=True)] if p.pid != os.getpid()}
        out["processes"] = {str(p.pid): p.create_time() for p in procs}
        out["listening"] = sorted({c.laddr.ip for c in psutil.net_connections("inet")
                                   if c.status == "LISTEN" and c.pid in {p.pid for p in procs}})
        Path(report).write_text(json.dumps(out))
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_two_node_loopback_cluster_gives_the_local_results(tmp_path, tmp_path_factory):
    from fashion import datasets
    from fashion.scale import embed, ivfpq, knn, manifest, shards

    from tests.test_scale_embed import make_dataset

    items = datasets.load(make_dataset(tmp_path / "data", n=60))
    local, far = tmp_path / "local", tmp_path / "cluster"
    for run in (local, far):
        manifest.write_manifest(items, run)
    ref = embed.embed_run(_config(local, "local"), progress=False)
    ivfpq.build(ref.directory, local / "index")
    knn.knn_run(knn.KnnConfig(str(local), k=5))

    # Ray's session files under pytest's temporary directory, in a short-named folder: its socket paths
    # (session_<date>_<pid>/sockets/plasma_store inside it) must stay within AF_UNIX's 107 bytes
    temp_dir = tmp_path_factory.mktemp("r")
    (temp_dir / "ray").mkdir()  # RAY_TMPDIR/ray: where Cluster writes the address file
    report = tmp_path / "report.json"
    env = {**os.environ, **RAY_ENV, "RAY_TMPDIR": str(temp_dir), "PYTHONPATH": str(ROOT)}
    code = f"from tests.test_scale_cluster import child; child({str(far)!r}, {str(temp_dir)!r}, {str(report)!r})"
    try:
        proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=900)
    finally:
        seen = json.loads(report.read_text())["processes"] if report.is_file() else {}
        deadline = time.time() + 30
        while _cluster_processes(temp_dir, seen) and time.time() < deadline:
            time.sleep(0.5)
        left = _cluster_processes(temp_dir, seen)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert not left, f"cluster processes left behind: {left}"
    got = json.loads(report.read_text())
    assert len(got["processes"]) >= 6, got["processes"]  # 2 raylets, GCS, agents, workers: all were seen
    assert len(got["nodes"]) == 2 and all(n["alive"] and n["ip"] == LOOPBACK for n in got["nodes"]), got["nodes"]
    assert got["gcs"].startswith(LOOPBACK + ":")
    assert got["listening"] and set(got["listening"]) <= {LOOPBACK, "::ffff:127.0.0.1"}, got["listening"]
    assert got["computed"] == 61 and got["failed"] == 1
    assert sorted(shards.read_ids(got["embeddings"]).tolist()) == list(range(61))  # every id exactly once
    ids, vecs = embed.read_embeddings(got["embeddings"])
    ref_ids, ref_vecs = embed.read_embeddings(ref.directory)
    assert np.array_equal(ids, ref_ids) and np.array_equal(vecs, ref_vecs)  # OpenVINO: bitwise
    a, b = knn.read_neighbors(local), knn.read_neighbors(far)
    assert a[["query_id", "rank", "neighbor_id"]].equals(b[["query_id", "rank", "neighbor_id"]])
