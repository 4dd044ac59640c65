"""fashion.run: one run format (format 2) for every size, one reader.

The same photos as a run of the sharded verbs (``fashion manifest → embed → index → knn``), as a
``measure_sim.py --index ivfpq-disk`` run (the same stages) and as a small ``--index faiss-ivfpq`` run:
each is opened by ``fashion search`` (a gallery photo's own copy first, at distance ~0), by
:class:`SimilarityService` and by ``POST /api/search``; the verbs and measure_sim give the same vectors and
neighbours; a run of the older layout is refused with one line that says how to upgrade it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("pyarrow")

from factories import make_photo_folder, make_verbs_run, read_run_items  # noqa: E402

ARCH = "efficientnet_lite0"  # the backbone an old-layout run.json names


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{kind: run dir} of the same 24 photos (+ a corrupt one): verbs, measure_sim sharded, measure_sim small."""
    from fashion.retrieval import MeasureConfig, run

    base = tmp_path_factory.mktemp("runs")
    data = make_photo_folder(base / "data", n=24)
    common = dict(input=str(data), k=3, grids=1, runtime="torch", num_workers=0)  # the default embedder, as the verbs
    run(MeasureConfig(output_dir=str(base / "sharded"), index="ivfpq-disk", **common))
    run(MeasureConfig(output_dir=str(base / "small"), index="faiss-ivfpq", insight=False, **common))
    run(MeasureConfig(output_dir=str(base / "ivf"), index="faiss-ivf", insight=False, **common))
    return {"verbs": make_verbs_run(data, base / "verbs"), "sharded": base / "sharded", "small": base / "small",
            "ivf": base / "ivf"}


@pytest.mark.parametrize("kind", ["verbs", "sharded", "small"])
def test_fashion_search_finds_a_gallery_photos_own_copy_first(runs, kind, capsys):
    from fashion import cli

    items = read_run_items(runs[kind])
    photo = items[items["ok"]].iloc[5]
    assert cli.main(["search", photo["path"], "--run", str(runs[kind]), "-k", "3", "--no-grids"]) == 0
    lines = capsys.readouterr().out.splitlines()
    first = next(line for line in lines if line.strip().startswith("1."))
    assert photo["relpath"] in first and "distance 0.0000" in first, lines


@pytest.mark.parametrize("kind", ["verbs", "sharded", "small"])
def test_service_and_api_search_answer_every_run(runs, kind):
    from fastapi.testclient import TestClient

    from fashion.server import create_app
    from fashion.service import SimilarityService

    service = SimilarityService.open(runs[kind], warm=False)
    items = service.run.items
    i = int(items.index[items["ok"]][7])
    found = service.search_image(items["path"].iat[i], k=3).results
    assert found[0].id == i and found[0].distance == pytest.approx(0, abs=1e-3)
    around = service.neighbors_of(i, k=3).results
    assert len(around) == 3 and i not in [m.id for m in around]
    with TestClient(create_app(service), base_url="http://localhost") as client:
        with open(items["path"].iat[i], "rb") as f:
            answer = client.post("/api/search?k=2", files={"image": ("p.jpg", f, "image/jpeg")})
    assert answer.status_code == 200, answer.text
    assert answer.json()["results"][0]["id"] == i


@pytest.mark.parametrize("kind", ["verbs", "sharded", "small", "ivf"])
def test_id_queries_answer_from_the_stored_lists_as_the_index_search(runs, kind, tmp_path):
    """Every index kind the pipeline writes (on-disk IVF-PQ by the verbs and by measure_sim, IVF-PQ and IVF
    in memory): an id query with k up to the run's k is answered from its stored list
    (fashion.run.listcache), and that answer is the index search's, rank for rank, distance for distance."""
    import shutil

    from test_run_listcache import same_as_search

    from fashion.run.reader import open_run
    from fashion.service import SimilarityService

    run_dir = tmp_path / kind
    shutil.copytree(runs[kind], run_dir)
    service = SimilarityService(open_run(run_dir, stored_lists=True), None, None)
    assert service.run.lists is not None and service.run.lists.k == 3
    queries = service.run.neighbors()["query_id"].unique()
    assert len(queries) >= 20
    assert same_as_search(service, queries, (1, 2, 3)) == 3 * len(queries)


def test_lists_searched_with_other_settings_than_the_index_are_not_used(runs, tmp_path):
    """`fashion knn --nprobe` searches the lists with other settings than the served index's: id queries
    search the index instead."""
    import shutil

    from fashion import cli
    from fashion.run import listcache
    from fashion.run.reader import open_run

    run_dir = tmp_path / "verbs"
    shutil.copytree(runs["verbs"], run_dir)
    assert cli.main(["knn", str(run_dir), "-k", "3", "--nprobe", "1"]) == 0
    assert listcache.LISTS_KEY not in json.loads((run_dir / "run.json").read_text())
    assert open_run(run_dir, stored_lists=True).lists is None


def test_verbs_and_measure_sim_give_the_same_vectors_and_neighbours(runs):
    from fashion.run.reader import open_run

    verbs, sharded = open_run(runs["verbs"]), open_run(runs["sharded"])
    assert np.array_equal(verbs.embeddings, sharded.embeddings)
    assert verbs.neighbors().equals(sharded.neighbors())
    assert verbs.items[["id", "relpath", "ok", "role"]].equals(sharded.items[["id", "relpath", "ok", "role"]])
    for run in (verbs, sharded):
        assert run.info["format_version"] == 2 and run.info["index"]["kind"] == "ivfpq"
    # the verbs' work stays beside the run, outside its manifest, and resumes
    manifest = json.loads((runs["verbs"] / "manifest.json").read_text())
    assert not any(f.split("/")[0] in ("embeddings", "index", "knn", "manifest") for f in manifest["files"])
    assert (runs["verbs"] / "manifest" / "manifest.json").is_file() and (runs["verbs"] / "knn").is_dir()


def test_a_small_run_has_the_same_layout(runs):
    from fashion.run.reader import open_run

    run = open_run(runs["small"])
    assert run.info["index"] == {"kind": "npz", "path": "index.npz", "name": "faiss-ivfpq", "metric": "cosine",
                                 "count": 24}
    assert run.items.columns[:8].tolist() == ["id", "path", "relpath", "label", "split", "ok", "reason", "role"]
    with np.load(runs["small"] / "index.npz") as arrays:
        assert np.array_equal(arrays["ids"], run.gallery_ids)
    nb = run.neighbors()
    assert nb.columns.tolist() == ["query_id", "rank", "neighbor_id", "distance"] and len(nb) == 24 * 3
    assert (nb["query_id"] != nb["neighbor_id"]).all()


def test_an_old_layout_run_is_refused_with_how_to_upgrade(tmp_path, capsys):
    from fashion import cli

    old = tmp_path / "old"
    old.mkdir()
    (old / "items.csv").write_text("index,path,relpath,label,index_row\n0,a.jpg,a.jpg,Hat,0\n")
    (old / "neighbors.csv").write_text("query,rank,neighbor,distance\n")
    (old / "run.json").write_text(json.dumps({"run_id": "x", "embedder": {"arch": ARCH, "checksum": "0"}}))
    photo = tmp_path / "p.jpg"
    photo.write_bytes(b"")
    assert cli.main(["search", str(photo), "--run", str(old)]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "older layout" in err and "rerun" in err and "Traceback" not in err


def _downgrade(run_dir, dest):
    """``run_dir`` (format 2) rewritten in the older layout at ``dest``: items.csv with index and index_row,
    neighbors.csv, index.npz without ids, run.json without format_version and index; resealed."""
    import shutil

    from fashion import rundir
    from fashion.neighbors import load_index
    from fashion.run.reader import read_items, read_neighbors

    shutil.copytree(run_dir, dest, ignore=shutil.ignore_patterns("cache", "items", "neighbors", "index.npz"))
    items = read_items(run_dir).reset_index(drop=True).rename(columns={"id": "index"})
    # the older layout predates the colour columns (fashion.colour.stage): the upgrade computes them again
    items = items.drop(columns=["colour", "colour_2", "colour_hex", "colour_share"])
    with np.load(run_dir / "index.npz") as arrays:
        ids = arrays["ids"]
    items["index_row"] = -1
    items.loc[ids, "index_row"] = np.arange(len(ids))
    items.to_csv(dest / "items.csv", index=False)
    nb = read_neighbors(run_dir).rename(columns={"query_id": "query", "neighbor_id": "neighbor"})
    nb["distance"] = nb["distance"].astype(np.float64)
    nb.to_csv(dest / "neighbors.csv", index=False)
    load_index(run_dir / "index.npz").save(dest / "index.npz")
    info = json.loads((run_dir / "run.json").read_text())
    del info["format_version"], info["index"], info["n_items"]
    (dest / "run.json").write_text(json.dumps(info))
    rundir.write_manifest(dest, info["run_id"], "neighbors")
    return dest


def test_an_old_layout_run_is_upgraded_in_place_bit_for_bit(runs, tmp_path, capsys):
    from fashion import cli
    from fashion.run.reader import open_run
    from fashion.rundir import RunDirError

    old = _downgrade(runs["small"], tmp_path / "old")
    with pytest.raises(RunDirError, match="older layout.*`fashion upgrade "):  # the hint names a command that exists
        open_run(old)
    assert cli.main(["upgrade", str(old)]) == 0
    assert "converted from the older layout" in capsys.readouterr().out
    new, ref = open_run(old), open_run(runs["small"])
    assert not (old / "items.csv").exists() and new.info["run_id"] == ref.info["run_id"]
    assert np.array_equal(new.embeddings, ref.embeddings) and new.neighbors().equals(ref.neighbors())
    assert new.items.equals(ref.items)
    assert new.info["index"] == ref.info["index"]
