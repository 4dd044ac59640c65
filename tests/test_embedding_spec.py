"""EmbedderSpec: one description of the embedder from the CLI to the cache key, run.json and the service."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from fashion.embedding import Embedder, EmbedderSpec
from fashion.errors import FashionError

# the keys run.json's ``embedder`` block has always had (readers: fashion.service.loading, runfiles)
RUN_JSON_KEYS = {"arch", "model_dir", "layer", "size", "mean", "std", "checksum", "source", "precision", "runtime",
                 "crop", "resize", "dim"}


@pytest.fixture(scope="module")
def bare():
    return Embedder.from_spec(EmbedderSpec(arch="efficientnet_lite0", size=32, runtime="torch", precision="fp32"))


def test_a_built_embedders_spec_is_resolved_and_rebuilds_the_same_embedder(bare):
    spec = bare.spec
    assert (spec.layer, spec.size, spec.runtime, spec.precision, spec.model_dir) == ("body", 32, "torch", "fp32", None)
    assert spec.checksum == bare.checksum and len(spec.checksum) == 64
    again = Embedder.from_spec(EmbedderSpec.from_json(json.loads(json.dumps(spec.to_json()))))
    assert again.spec == spec
    assert again.cache_path("c") == bare.cache_path("c")  # the cache key follows from the spec


def test_run_json_block_keeps_its_keys_and_reads_back(bare):
    block = json.loads(json.dumps(bare.describe()))
    assert set(block) == RUN_JSON_KEYS
    assert EmbedderSpec.from_json(block) == bare.spec


def test_a_changed_checksum_is_refused(bare):
    with pytest.raises(FashionError, match="weights changed since the run"):
        Embedder.from_spec(replace(bare.spec, checksum="0" * 64))


def test_an_older_block_reads_as_what_it_meant():
    old = {"arch": "efficientnet_lite0", "model_dir": None, "size": 224, "checksum": "ab" * 32, "mean": [0.5] * 3}
    spec = EmbedderSpec.from_json(old)
    assert (spec.layer, spec.runtime, spec.checksum) == ("body", "torch", "ab" * 32)


def test_every_entry_point_asks_for_the_same_default_embedder():
    from fashion.insight.stage import DuplicatesConfig
    from fashion.modelio import bundled_model_dir
    from fashion.retrieval import MeasureConfig
    from fashion.scale.embed import EmbedConfig

    measure, embed = EmbedderSpec.of(MeasureConfig(output_dir="o")), EmbedderSpec.of(EmbedConfig("r"))
    assert measure == embed and measure.model_dir == str(bundled_model_dir())
    # fashion duplicates stays on the bare backbone its distance threshold is calibrated on
    assert EmbedderSpec.of(DuplicatesConfig()).model_dir is None


def test_a_run_of_the_bundled_model_made_by_another_install_opens_with_this_ones(tmp_path):
    """A run records its model's absolute path; a run made with the bundled model by another checkout or
    venv (since removed) names a directory that is gone: its checksum finds this install's bundled model.
    Any other missing model directory is one line naming the run.json and the directory."""
    import os

    from fashion.embedding.spec import locate_model
    from fashion.modelio import bundled_model_dir, weights_file
    from fashion.rundir import file_sha256

    bundled = bundled_model_dir()
    gone = os.fspath(tmp_path / "old-checkout" / "fashion" / "data" / "model")
    block = {"arch": "efficientnet_lite0", "model_dir": gone, "checksum": file_sha256(weights_file(bundled))}
    assert locate_model(block, "run.json") == {**block, "model_dir": os.fspath(bundled)}
    here = {**block, "model_dir": os.fspath(bundled)}
    assert locate_model(here, "run.json") is here  # a model that is there: the block as recorded
    bare_block = {"arch": "efficientnet_lite0", "model_dir": None, "checksum": "abc"}
    assert locate_model(bare_block, "run.json") is bare_block
    with pytest.raises(FashionError, match=r"^RUN/run.json: the run's model directory .*old-checkout.* is not here") as err:
        locate_model({**block, "checksum": "0" * 64}, "RUN/run.json")
    assert "\n" not in str(err.value)


def test_open_run_serves_a_bundled_model_run_whose_recorded_model_dir_is_gone(tmp_path):
    from factories import make_vector_run

    from fashion import rundir
    from fashion.modelio import bundled_model_dir, weights_file
    from fashion.run import layout
    from fashion.run.reader import open_run

    run_dir = make_vector_run(tmp_path / "run")
    info = json.loads((run_dir / layout.RUN_JSON).read_text())
    info["embedder"] = {"arch": "efficientnet_lite0", "model_dir": str(tmp_path / "gone" / "model"),
                        "checksum": rundir.file_sha256(weights_file(bundled_model_dir()))}
    (run_dir / layout.RUN_JSON).write_text(json.dumps(info))
    rundir.write_manifest(run_dir, info["run_id"], kind=layout.RUN_KIND)  # a crafted run: resealed
    run = open_run(run_dir)
    assert run.info["embedder"]["model_dir"] == str(bundled_model_dir())
    assert json.loads((run_dir / layout.RUN_JSON).read_text())["embedder"]["model_dir"].endswith("gone/model")


def test_a_relocated_bundled_model_is_hashed_once_from_the_runs_open_to_its_embedder(tmp_path, monkeypatch):
    """open_run checks a relocated run's checksum against the bundled weights; building the embedder then
    reads the same digest (modelio.weights_sha256), not a second SHA-256 of the file."""
    import os
    import shutil

    from factories import make_vector_run

    from fashion import rundir
    from fashion.modelio import export, weights_file
    from fashion.run import layout
    from fashion.run.reader import open_run

    bundled = tmp_path / "install" / "model"  # a fresh copy of the bundled model: no digest of it remembered
    shutil.copytree(export.bundled_model_dir(), bundled)
    monkeypatch.setattr(export, "bundled_model_dir", lambda: bundled)
    run_dir = make_vector_run(tmp_path / "run")
    info = json.loads((run_dir / layout.RUN_JSON).read_text())
    info["embedder"] = {"arch": "efficientnet_lite0", "model_dir": str(tmp_path / "gone" / "model"), "layer": "head",
                        "runtime": "torch", "precision": "fp32", "checksum": rundir.file_sha256(weights_file(bundled))}
    (run_dir / layout.RUN_JSON).write_text(json.dumps(info))
    rundir.write_manifest(run_dir, info["run_id"], kind=layout.RUN_KIND)  # a crafted run: resealed
    hashed, real = [], rundir.file_sha256
    monkeypatch.setattr(rundir, "file_sha256", lambda path: hashed.append(os.fspath(path)) or real(path))
    embedder = Embedder.from_spec(EmbedderSpec.from_json(open_run(run_dir).info["embedder"]))
    assert embedder.model_dir == os.fspath(bundled.resolve())
    assert hashed.count(os.fspath(weights_file(bundled))) == 1
    from fashion.service import loading  # the served OpenVINO path checks the weights without an embedder

    loading._check_weights(open_run(run_dir).info["embedder"])
    assert hashed.count(os.fspath(weights_file(bundled))) == 1
