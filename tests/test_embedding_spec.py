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
