"""Untrusted files: a model, an index, a cache or a dataset from someone else cannot run code or reach
outside its folder (issue 5, item 3).

The promises:

- a malicious pickle saved as the model weights (``model.pth``, ``model.safetensors``), as a fastai
  ``export.pkl``, as the saved index (``index.npz``) or as an embedding-cache chunk is refused with a
  clear one-line error naming the file — and its code never runs (the payload would create a marker file);
- fastai's ``export.pkl`` is not a model format: a directory holding only one is refused, by the
  library and by the command line;
- image paths from any dataset format never lead outside the dataset root: not by ``..``, not by an
  absolute path, not through a symlinked file or folder;
- the HTML gallery of a run over hostile file and label names, opened in headless Chromium, runs no
  script and contains no element injected by a name (the names show as plain text).
The gallery test is the security-focused, end-to-end twin of tests/test_gallery_browser.py (which
checks write_gallery itself): here the names come from a dataset on disk through ``retrieval.run``.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fashion import cli, datasets
from fashion.errors import DatasetError

from factories import noisy_jpeg, tiny_jpeg, write_list


class Payload:
    """Unpickling this object runs ``touch <marker>``: the marker file proves code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


@pytest.fixture
def marker(tmp_path) -> Path:
    """Where a Payload leaves its mark; checked first: a plain ``pickle.loads`` does run the payload."""
    marker = tmp_path / "PWNED"
    pickle.loads(_pickle(marker))
    assert marker.exists(), "the payload must work, or the tests below prove nothing"
    marker.unlink()
    return marker


def _model_json(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    config = {"arch": "efficientnet_lite0", "classes": ["a", "b"], "size": 32, "mean": [0.5] * 3, "std": [0.5] * 3}
    (directory / "model.json").write_text(json.dumps(config))


def _torch_save(marker: Path, path: Path) -> None:
    """A torch.save zip archive whose pickle holds the payload next to a real tensor."""
    import torch

    torch.save({"weight": torch.zeros(2), "extra": Payload(marker)}, path)


# ------------------------------------------------------------------------------------------ models

def _pickle(marker: Path) -> bytes:
    return pickle.dumps({"state_dict": Payload(marker)})


MODEL_CASES = {
    # id: (what to write into the model directory, given the marker; regex of the one-line error)
    "pickle_as_model_pth": (lambda d, m: (_model_json(d), (d / "model.pth").write_bytes(_pickle(m))),
                            r"cannot read weights .*model\.pth"),
    "torch_save_with_code_as_model_pth": (lambda d, m: (_model_json(d), _torch_save(m, d / "model.pth")),
                                          r"cannot read weights .*model\.pth"),
    "pickle_as_model_safetensors": (lambda d, m: (_model_json(d), (d / "model.safetensors").write_bytes(_pickle(m))),
                                    r"cannot read weights .*model\.safetensors"),
    "fastai_export_pkl_only": (lambda d, m: (d.mkdir(parents=True), (d / "export.pkl").write_bytes(_pickle(m))),
                               r"model\.json"),
    "fastai_export_pkl_beside_model_json": (lambda d, m: (_model_json(d), (d / "export.pkl").write_bytes(_pickle(m))),
                                            r"no model\.safetensors or model\.pth"),
}


@pytest.mark.parametrize("case", sorted(MODEL_CASES))
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's note about the raw pickle
def test_load_model_refuses_pickled_code(tmp_path, marker, case):
    """training.load_model refuses the directory with one line naming it; the pickle never runs."""
    from fashion.training import load_model

    write, error = MODEL_CASES[case]
    model_dir = tmp_path / "model"
    write(model_dir, marker)
    with pytest.raises(Exception) as info:
        load_model(model_dir)
    message = str(info.value)
    assert not marker.exists(), "unpickling ran the payload"
    assert re.search(error, message) and str(model_dir) in message, message
    assert "\n" not in message, f"not one line:\n{message}"


def test_measure_sim_refuses_fastai_export_as_model(tmp_path, marker, capsys):
    """measure_sim.py --model DIR_WITH_EXPORT_PKL: exit 2, one stderr line, the pickle never runs."""
    (tmp_path / "fastai").mkdir()
    (tmp_path / "fastai" / "export.pkl").write_bytes(_pickle(marker))
    root = tmp_path / "photos"
    for c in range(2):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (16, 16), (90 * c, 40 * i, 99)).save(root / f"c{c}" / f"{i}.jpg")
    try:
        code = cli.measure_sim_main(["-i", str(root), "--output_dir", str(tmp_path / "out"),
                                     "--model", str(tmp_path / "fastai")])
    except Exception as exc:  # noqa: BLE001 - a traceback is the failure this test is about
        pytest.fail(f"raised instead of one line: {type(exc).__name__}: {exc}")
    err = capsys.readouterr().err
    assert not marker.exists()
    assert code == 2 and err.count("\n") == 1 and "model.json" in err, err


# ------------------------------------------------------------------------------------------ indexes


def _npz(path: Path, **arrays) -> None:
    with open(path, "wb") as f:
        np.savez(f, **arrays)


META = json.dumps({"format_version": 1, "name": "exact", "metric": "cosine", "params": {}})
INDEX_CASES = {
    "raw_pickle": lambda path, payload: path.write_bytes(pickle.dumps(payload)),
    "object_array_as_data": lambda path, payload: _npz(path, __meta__=np.array(META), data=np.array([payload], dtype=object)),
    "object_array_as_meta": lambda path, payload: _npz(path, __meta__=np.array([payload], dtype=object)),
}


@pytest.mark.parametrize("case", sorted(INDEX_CASES))
def test_load_index_refuses_pickled_code(tmp_path, marker, case):
    """neighbors.load_index refuses a pickle with a ValueError naming the file; the pickle never runs."""
    from fashion.neighbors import load_index

    path = tmp_path / "index.npz"
    INDEX_CASES[case](path, Payload(marker))
    with pytest.raises(ValueError) as info:
        load_index(path)
    assert not marker.exists(), "unpickling ran the payload"
    assert str(path) in str(info.value), f"the error does not name the file: {info.value}"


def test_poisoned_embedding_cache_is_ignored(tmp_path, marker):
    """A cache chunk holding pickled objects is skipped (recomputed), never unpickled."""
    from fashion.embedding import Embedder

    photo = tmp_path / "a.jpg"
    Image.new("RGB", (20, 20), (200, 10, 10)).save(photo)
    embedder = Embedder.create(size=32, pretrained=False)
    chunks = embedder.cache_path(tmp_path / "cache")
    chunks.mkdir(parents=True)
    payload = np.array([Payload(marker)], dtype=object)
    _npz(chunks / "chunk_00000.npz", keys=payload, vectors=payload, ok=payload, reasons=payload)
    result = embedder.embed([photo], batch_size=1, cache_dir=tmp_path / "cache", num_workers=0, progress=False)
    assert not marker.exists()
    assert result.ok.all() and result.n_computed == 1 and result.n_cached == 0


# --------------------------------------------------------------------------------- paths in datasets


def _deepfashion(root: Path, name: str) -> None:
    """A DeepFashion root listing one good image and ``name``."""
    write_list(root / "Anno" / "list_category_cloth.txt", "category_name  category_type", ["Tee  1"])
    write_list(root / "Anno" / "list_category_img.txt", "image_name  category_label", ["img/Tee/good.jpg  1", f"{name}  1"])
    write_list(root / "Eval" / "list_eval_partition.txt", "image_name  evaluation_status",
          ["img/Tee/good.jpg  train", f"{name}  train"])
    tiny_jpeg(root / "img" / "Tee" / "good.jpg")


def _inshop(root: Path, name: str) -> None:
    """An In-shop root listing one good image and ``name``."""
    good = "img/WOMEN/Tees/id_00000001/01_front.jpg"
    write_list(root / "Eval" / "list_eval_partition.txt", "image_name  item_id  evaluation_status",
          [f"{good}  id_00000001  query", f"{name}  id_00000001  gallery"])
    tiny_jpeg(root / good)


ESCAPES = {  # how an annotation names something outside the root: (listed name, symlink to make or None)
    "dotdot": ("img/../../outside/secret.jpg", None),
    "absolute": ("{outside}/secret.jpg", None),
    "windows_absolute": ("C:/outside/Tees/id_00000001/secret.jpg", None),
    "symlinked_file": ("img/Tee/link.jpg", ("img/Tee/link.jpg", "secret.jpg")),
    "symlinked_folder": ("img/linkdir/secret.jpg", ("img/linkdir", "")),
}


@pytest.mark.parametrize("fmt", ["deepfashion", "inshop"])
@pytest.mark.parametrize("how", sorted(ESCAPES))
def test_annotation_paths_never_escape_the_root(tmp_path, fmt, how):
    """Every annotated format: a name that leads outside the root is a DatasetError on its line."""
    outside = tiny_jpeg(tmp_path / "outside" / "secret.jpg").parent
    name, link = ESCAPES[how]
    name = name.format(outside=outside)
    root = tmp_path / "root"
    (_deepfashion if fmt == "deepfashion" else _inshop)(root, name)
    if link:
        (root / link[0]).parent.mkdir(parents=True, exist_ok=True)
        (root / link[0]).symlink_to(outside / link[1])
    with pytest.raises(DatasetError, match=r"list_(category_img|eval_partition)\.txt:4: (absolute )?image path .*"
                                           r"(escapes the dataset root|must be relative)"):
        datasets.load(root, format=fmt, missing="skip")


@pytest.mark.parametrize("link", ["train/shirt/link.jpg", "train/evil", "valid"])
def test_image_folders_never_escape_the_root(tmp_path, link):
    """Folder format: a symlinked image, class folder or split folder that leads outside is an error."""
    outside = tiny_jpeg(tmp_path / "outside" / "shirt" / "secret.jpg").parent
    root = tmp_path / "root"
    tiny_jpeg(root / "train" / "shirt" / "good.jpg")
    target = {"train/shirt/link.jpg": outside / "secret.jpg", "train/evil": outside, "valid": outside.parent}[link]
    (root / link).symlink_to(target)
    with pytest.raises(DatasetError, match=rf"image path '{link}[^']*' escapes the dataset root"):
        datasets.load(root)


def test_symlinks_inside_the_root_are_fine(tmp_path):
    """The escape check is no blanket ban: links that stay inside the root load."""
    root = tmp_path / "root"
    tiny_jpeg(root / "shirt" / "a.jpg")
    (root / "shirt" / "alias.jpg").symlink_to(root / "shirt" / "a.jpg")
    (root / "pants").symlink_to(root / "shirt")
    assert sorted(datasets.load(root).frame["relpath"]) == ["pants/a.jpg", "pants/alias.jpg", "shirt/a.jpg", "shirt/alias.jpg"]


# ---------------------------------------------------------------------------------- HTML gallery

# Each payload, if it ever became markup, would set window.__pwned, change the title or open a dialog.
HOSTILE_ROOT = "<b onmouseover=alert(0)>shop"
HOSTILE_CATEGORIES = ["<script>window.__pwned=1;document.title='pwned'</script>",
                      "<img src=x onerror=window.__pwned=2>"]
HOSTILE_IMAGES = ["img/<svg onload=window.__pwned=3>/a <i>.jpg", "img/<svg onload=window.__pwned=3>/b.jpg",
                  "img/<iframe srcdoc=x onload=alert(4)>/c.jpg", "img/<iframe srcdoc=x onload=alert(4)>/d.jpg"]
HOSTILE_BROKEN = "img/<script>alert(5)</script>.jpg"  # zero bytes: listed among the skipped images


def _hostile_run(tmp_path: Path) -> Path:
    """retrieval.run over a DeepFashion root whose root, category and image names are HTML payloads."""
    from fashion.retrieval import MeasureConfig, run

    root = tmp_path / HOSTILE_ROOT
    write_list(root / "Anno" / "list_category_cloth.txt", "category_name  category_type",
          [f"{c}  1" for c in HOSTILE_CATEGORIES])
    rows = [f"{n}  {1 + i // 2}" for i, n in enumerate(HOSTILE_IMAGES)] + [f"{HOSTILE_BROKEN}  2"]
    write_list(root / "Anno" / "list_category_img.txt", "image_name  category_label", rows)
    for i, name in enumerate(HOSTILE_IMAGES):
        noisy_jpeg(root / name, (200, 40, 40) if i < 2 else (40, 60, 200), seed=i, size=(24, 24), noise=20, quality=75)
    (root / HOSTILE_BROKEN).parent.mkdir(parents=True, exist_ok=True)
    (root / HOSTILE_BROKEN).write_bytes(b"")
    out = tmp_path / "run"
    run(MeasureConfig(input=str(root), output_dir=str(out), size=32, batch_size=4, k=2, grids=2, num_workers=0))
    return out / "index.html"


def _visit(browser, page_path: Path) -> dict:
    """Open ``page_path``; return what a script could have done: dialogs, errors, __pwned, title..."""
    page = browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(page_path.resolve().as_uri(), wait_until="load")
    page.wait_for_timeout(300)  # let onload/onerror handlers fire, if there were any
    seen = {
        "dialogs": dialogs,
        "pwned": page.evaluate("window.__pwned === undefined ? null : window.__pwned"),
        "title": page.title(),
        "scripts": page.evaluate("document.scripts.length"),
        "injected": page.evaluate("document.querySelectorAll('svg, iframe, i, [onerror], [onload], "
                                  "[onmouseover]').length"),
        "text": page.inner_text("body"),
    }
    page.close()
    return seen


@pytest.mark.browser
def test_harness_detects_a_script_that_runs(chromium, tmp_path):
    """Control: the checks below do notice a page whose payload runs."""
    page = tmp_path / "control.html"
    page.write_text(f"<html><head><title>t</title></head><body>{HOSTILE_CATEGORIES[0]}{HOSTILE_CATEGORIES[1]}"
                    "<script>alert(9)</script></body></html>")
    seen = _visit(chromium, page)
    assert seen["pwned"] == 2 and seen["title"] == "pwned" and seen["dialogs"] == ["9"] and seen["injected"] == 1


@pytest.mark.browser
def test_gallery_of_hostile_names_runs_no_script(chromium, tmp_path):
    """index.html of a run over HTML-named root, labels and files: nothing runs, nothing is injected,
    every name is shown as text (the skipped hostile file included)."""
    seen = _visit(chromium, _hostile_run(tmp_path))
    assert seen["pwned"] is None and seen["dialogs"] == []
    assert seen["scripts"] == 0 and seen["injected"] == 0
    assert seen["title"].endswith(HOSTILE_ROOT)
    for text in [HOSTILE_ROOT, *HOSTILE_CATEGORIES, HOSTILE_BROKEN]:
        assert text in seen["text"], text



# ------------------------------------- crafted array headers and run files (issue 11, classes 6 and 5)


def _npy_header(shape, dtype="<f4") -> bytes:
    """A genuine .npy v1.0 header claiming ``shape`` (no data follows)."""
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def _crafted_index(path: Path, shape) -> None:
    """A valid index.npz layout whose data.npy header claims ``shape`` while holding 64 bytes."""
    import io
    import zipfile

    meta = io.BytesIO()
    np.save(meta, np.array(META))
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("__meta__.npy", meta.getvalue())
        archive.writestr("data.npy", _npy_header(shape) + bytes(64))


@pytest.mark.parametrize("shape", [(2**40, 256), (10**15,), (3, 2**61)])
def test_index_whose_header_claims_a_huge_array_is_refused_before_allocating(tmp_path, shape):
    """index.npz whose data.npy header claims a petabyte: one ValueError naming the file and the member,
    no MemoryError (numpy used to try to allocate the claimed size)."""
    import resource

    from fashion.neighbors import load_index

    path = tmp_path / "index.npz"
    _crafted_index(path, shape)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ValueError) as info:
        load_index(path)
    message = str(info.value)
    assert str(path) in message and "data.npy" in message and "claims" in message, message
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KB: nothing big touched


def test_check_npy_compares_the_header_with_the_file_size(tmp_path):
    from fashion.runfiles import RunFileError, check_npy

    good = tmp_path / "good.npy"
    np.save(good, np.zeros((4, 3), np.float32))
    assert check_npy(good)[0] == (4, 3)
    bad = tmp_path / "embeddings.npy"
    bad.write_bytes(_npy_header((10**12, 512)) + bytes(16))
    with pytest.raises(RunFileError, match=r"embeddings\.npy: the header claims a \(1000000000000, 512\) float32"):
        check_npy(bad)


@pytest.fixture(scope="module")
def sealed_run(tmp_path_factory):
    """A finished retrieval run on 6 tiny images."""
    from fashion.retrieval import MeasureConfig, run

    base = tmp_path_factory.mktemp("sealed")
    for label in ("red", "blue"):
        for i in range(3):
            noisy_jpeg(base / "root" / label / f"{i}.jpg", (200, 30, 30) if label == "red" else (30, 30, 200), seed=i)
    run(MeasureConfig(input=str(base / "root"), output_dir=str(base / "run"), size=32, grids=0, num_workers=0, k=2))
    return base


def _reseal(run_dir: Path) -> None:
    """Rewrite the manifest over edited files: a crafted run that passes the manifest check."""
    from fashion import rundir

    manifest = json.loads((run_dir / "manifest.json").read_text())
    rundir.write_manifest(run_dir, manifest["run_id"], manifest["kind"])


ITEMS_PART = "items/part-000000.parquet"
RUN_FILE_CASES = {
    "items_without_role": (ITEMS_PART, lambda t: t.drop_columns(["role"]), r"items/part-000000\.parquet: .*'role'"),
    "items_without_path": (ITEMS_PART, lambda t: t.drop_columns(["path"]), r"items/part-000000\.parquet: .*'path'"),
    "items_id_not_int": (ITEMS_PART, lambda t: t.set_column(0, "id", t.column("id").cast("string")),
                         r"items: column 'id' must hold integers"),
    "run_without_embedder": ("run.json", lambda t: json.dumps({k: v for k, v in json.loads(t).items() if k != "embedder"}),
                             r"run\.json: key 'embedder' is missing"),
    "run_without_checksum": ("run.json", lambda t: json.dumps({**json.loads(t), "embedder": {
        k: v for k, v in json.loads(t)["embedder"].items() if k != "checksum"}}), r"run\.json: key 'embedder\.checksum' is missing"),
    "run_with_absurd_size": ("run.json", lambda t: json.dumps({**json.loads(t), "embedder": {
        **json.loads(t)["embedder"], "size": 100000}}), r"run\.json: key 'embedder\.size': image size must be an integer from 8 to 4096"),
    "run_not_an_object": ("run.json", lambda t: "[1, 2]", r"run\.json: expected a JSON object"),
}


@pytest.mark.parametrize("case", sorted(RUN_FILE_CASES))
def test_search_on_a_run_with_bad_run_files_is_one_line(sealed_run, tmp_path, capsys, case):
    """The item table missing a column, run.json missing a key or holding an absurd value (even with a
    manifest rewritten to match): `fashion search` ends with one line naming the file and the key."""
    from fashion import cli

    name, edit, expected = RUN_FILE_CASES[case]
    run_dir = tmp_path / "run"
    shutil.copytree(sealed_run / "run", run_dir)
    path = run_dir / name
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        pq.write_table(edit(pq.read_table(path)), path)
    else:
        path.write_text(edit(path.read_text()))
    _reseal(run_dir)
    status = cli.main(["search", str(sealed_run / "root" / "red" / "0.jpg"), "--run", str(run_dir),
                       "--output_dir", str(tmp_path / "grids")])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert re.search(expected, err), err


def test_npz_arrays_maps_large_stored_members_and_reads_the_rest(tmp_path):
    """runfiles.npz_arrays: a large member of an uncompressed .npz is a read-only map equal to np.load's
    array (C and Fortran order); small and compressed members are read; a large object array is refused."""
    from fashion.runfiles import npz_arrays

    rng = np.random.default_rng(0)
    arrays = {"data": rng.normal(size=(300, 40)).astype(np.float32), "ids": np.arange(7),
              "fortran": np.asfortranarray(rng.normal(size=(50, 30))), "__meta__": np.array(META)}
    stored, packed = tmp_path / "stored.npz", tmp_path / "packed.npz"
    np.savez(stored, **arrays)
    np.savez_compressed(packed, **arrays)
    for path, mapped in ((stored, {"data", "fortran"}), (packed, set())):
        got = npz_arrays(path, map_above=1000)
        assert set(got) == set(arrays)
        for name, want in arrays.items():
            np.testing.assert_array_equal(got[name], want)
            assert isinstance(got[name], np.memmap) == (name in mapped), (path.name, name)
        for name in mapped:
            assert not got[name].flags.writeable
    objects = tmp_path / "objects.npz"
    np.savez(objects, data=np.array([str(i) for i in range(500)], dtype=object))
    with pytest.raises(ValueError, match="objects"):
        npz_arrays(objects, map_above=100)
