"""The one description of an embedder: :class:`EmbedderSpec`.

It travels unchanged from the command line (:meth:`EmbedderSpec.of` a config) to the network
(:meth:`fashion.embedding.Embedder.from_spec`), the embedding cache's key
(:meth:`~fashion.embedding.Embedder.cache_path`), ``run.json``'s ``embedder`` block and an embedding
shard set's ``embedder.json`` (:meth:`EmbedderSpec.to_json`, within
:meth:`~fashion.embedding.Embedder.describe`), a Ray actor, and the service's rebuild of a run's
embedder (:meth:`EmbedderSpec.from_json`). Before an embedder is built the spec says what was asked for
(``layer="auto"``, ``size=None``, ``checksum=None``); :attr:`Embedder.spec` says what was built, every
field resolved, and rebuilding from it checks the weights' checksum.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields

from ..backbones import DEFAULT_BACKBONE

DEFAULT_ARCH = DEFAULT_BACKBONE  # the bare ImageNet backbone's default, where one is asked for


def resolve_model(model=None, arch: str | None = None) -> tuple[str | None, str]:
    """(model directory or None, arch) of the options ``--model`` / ``--arch``: the one rule for what an
    entry point embeds with. A model directory wins; else ``arch`` alone asks for that bare ImageNet
    backbone; neither: the bundled clothing model (:func:`fashion.modelio.bundled_model_dir`).

    >>> resolve_model(arch="efficientnet_lite2")
    (None, 'efficientnet_lite2')
    >>> resolve_model("runs/train1") == ("runs/train1", DEFAULT_ARCH)
    True
    """
    if model is None and arch is None:
        from ..modelio import bundled_model_dir

        model = os.fspath(bundled_model_dir())
    return (None if model is None else os.fspath(model)), arch or DEFAULT_ARCH


def locate_model(described: dict, where) -> dict:
    """A run's ``embedder`` block (run.json) with a ``model_dir`` that exists on this machine.

    A run records its model's absolute path. A run made with the bundled clothing model by another
    install (a fresh clone, another virtual environment, a removed checkout) names a directory that is
    gone; its weights' checksum then says whether that model was the bundled one, and the block names
    this install's copy instead (in memory: run.json is not changed). Any other missing model directory
    is a :class:`~fashion.errors.FashionError` naming ``where`` (the run.json) and the directory."""
    model_dir = described.get("model_dir")
    if not model_dir or os.path.isdir(model_dir):
        return described
    from ..modelio.export import bundled_model_dir, weights_file, weights_sha256

    try:
        bundled = bundled_model_dir()
    except FileNotFoundError:
        bundled = None
    # hashed once: building the embedder from the bundled model asks weights_sha256 again
    if bundled is not None and described.get("checksum") == weights_sha256(weights_file(bundled)):
        return {**described, "model_dir": os.fspath(bundled)}
    from ..errors import FashionError

    raise FashionError(f"{where}: the run's model directory {model_dir} is not here (moved or deleted), and "
                       "its weights are not the bundled model's: restore it, or rerun with --model DIR")


@dataclass(frozen=True)
class EmbedderSpec:
    """What makes an embedder: ``arch`` (the backbone; a trained model's own arch once built),
    ``model_dir`` (a `fashion train` output directory, or None for the bare backbone), ``layer``
    ("auto", "body", "head"), ``size`` (px; None: the model's), ``crop`` (to the items' bbox; None: the
    model's setting), ``runtime`` and ``precision`` (``fashion.embedding.RUNTIMES`` / ``PRECISIONS``),
    ``checksum`` (SHA-256 of the weights; None: whatever the files hold now).

    >>> spec = EmbedderSpec(arch="efficientnet_lite0", layer="body", size=224, runtime="torch")
    >>> EmbedderSpec.from_json(spec.to_json()) == spec
    True
    """

    arch: str = DEFAULT_ARCH
    model_dir: str | None = None
    layer: str = "auto"
    size: int | None = None
    crop: bool | None = None
    runtime: str = "auto"
    precision: str = "auto"
    checksum: str | None = None

    @classmethod
    def of(cls, config) -> "EmbedderSpec":
        """The spec a config asks for (``MeasureConfig``, ``EmbedConfig``, ``DuplicatesConfig``, ...: the
        fields ``model``, ``arch``, and those of ``layer``, ``size``, ``crop``, ``runtime``, ``precision``
        it has); neither model nor arch: the bundled clothing model (:func:`resolve_model`)."""
        model, arch = resolve_model(getattr(config, "model", None), getattr(config, "arch", None))
        given = {f.name: getattr(config, f.name) for f in fields(cls)
                 if f.name not in ("arch", "model_dir", "checksum") and hasattr(config, f.name)}
        return cls(arch=arch, model_dir=model, **given)

    def check_checksum(self, found: str) -> None:
        """:class:`~fashion.errors.FashionError` when this spec names a weights checksum and ``found`` (the
        weights' checksum now) differs: the run's model was retrained since."""
        if self.checksum is not None and found != self.checksum:
            from ..errors import FashionError

            raise FashionError(f"the model's weights changed since the run (checksum {found[:12]} != "
                               f"{self.checksum[:12]}); rerun `fashion neighbors` with the current model")

    def to_json(self) -> dict:
        """JSON-ready fields (the keys ``run.json``'s ``embedder`` block has always had)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "EmbedderSpec":
        """The spec in a ``run.json`` ``embedder`` block or an ``embedder.json`` (other keys ignored); keys
        an older run lacks read as what it meant then (body layer, torch runtime)."""
        old = {"layer": "body", "runtime": "torch"}
        known = {f.name for f in fields(cls)}
        return cls(**{**old, **{k: v for k, v in data.items() if k in known}})
