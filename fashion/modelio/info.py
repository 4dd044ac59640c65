"""``model.json``: :class:`ModelInfo`, what rebuilds a trained classifier and how its inputs are
prepared, read with every value checked (one :class:`~fashion.errors.FormatError` naming the file and key)."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..errors import FormatError

log = logging.getLogger("fashion.modelio")

CONFIG_FILE = "model.json"
FORMAT_VERSION = 1
DEFAULT_HEAD = {"lin_ftrs": [512], "ps": 0.5, "concat_pool": True}
_REQUIRED = object()
MAX_IMAGE_SIZE = 4096  # px; beyond this a model.json value is a typo, not a model
MAX_FEATURES = 1 << 16  # channels / hidden units
_CROPS = ("none", "bbox")


@dataclass(frozen=True)
class ModelInfo:
    """``model.json``: what rebuilds a trained classifier and how its inputs are prepared.

    arch: backbone name (:mod:`fashion.backbones`); classes: label names, in output order;
    size: image px of the first stages; final_size: px the kept model was trained at (None: ``size``);
    mean / std: per-channel normalisation on the [0, 1] scale (3 values each, std > 0);
    feature_dim: the body's channels; head: fastai ``create_head`` settings (lin_ftrs, ps, concat_pool);
    crop: "bbox" when trained on DeepFashion boxes, else "none"; backbone_source: where the pretrained
    weights came from; best / metrics / train_config: what the run recorded, for people;
    members: for an ensemble (:mod:`fashion.ensemble`), each member's {arch, feature_dim, head}, in
    state-dict order (``arch`` then names them all, joined by "+"); empty for one classifier.
    ``format_version`` (:data:`FORMAT_VERSION`) says how to read the file; files without one are version 1.
    """

    arch: str
    classes: tuple
    size: int
    mean: tuple
    std: tuple
    final_size: int | None = None
    feature_dim: int | None = None
    head: dict = field(default_factory=lambda: dict(DEFAULT_HEAD))
    crop: str = "none"
    backbone_source: str = ""
    best: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    train_config: dict = field(default_factory=dict)
    members: tuple = ()
    format_version: int = FORMAT_VERSION

    @property
    def input_size(self) -> int:
        """Image side the kept model expects (``final_size``, else ``size``)."""
        return self.final_size or self.size

    def one_pass(self, size: int) -> bool:
        """Whether an embedder of this model at ``size`` px gives the classifier's prediction from the
        same pass as the vector: a single model (an ensemble averages its members' probabilities), fed
        the size it predicts at. The one rule for :meth:`fashion.embedding.Embedder.from_model_dir` and
        the service's saved network (:func:`fashion.service.loading.saved_network`)."""
        return not self.members and int(size) == self.input_size

    def to_json(self) -> dict:
        """A JSON-ready dict (lists for tuples), the inverse of :meth:`from_json`."""
        out = asdict(self)
        out.update(classes=list(self.classes), mean=list(self.mean), std=list(self.std),
                   members=[dict(m) for m in self.members])
        return {"format_version": out.pop("format_version"), **out}

    @classmethod
    def from_json(cls, data, source="model.json") -> "ModelInfo":
        """Validate a parsed ``model.json``; any bad value is one :class:`FormatError` naming ``source``
        and the key. Keys this version does not know are ignored (logged)."""
        if not isinstance(data, dict):
            raise FormatError(f"expected a JSON object, got {type(data).__name__}", source)
        check = _Checker(data, source)
        version = check.integer("format_version", 1, 1, default=1)
        if version != FORMAT_VERSION:
            raise FormatError(f"format_version {version} is not supported (this fashion reads {FORMAT_VERSION})",
                              source, "format_version")
        size = check.integer("size", 8, MAX_IMAGE_SIZE)
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            log.debug("%s: ignoring keys %s", source, unknown)
        return cls(
            arch=check.text("arch"), classes=check.classes("classes"), size=size,
            mean=check.triple("mean", 0.0, 1.0, low_open=False), std=check.triple("std", 0.0, 10.0, low_open=True),
            final_size=check.integer("final_size", 8, MAX_IMAGE_SIZE, default=None),
            feature_dim=check.integer("feature_dim", 1, MAX_FEATURES, default=None),
            head=check.head("head"), crop=check.choice("crop", _CROPS, default="none"),
            backbone_source=check.text("backbone_source", default=""),
            best=check.mapping("best"), metrics=check.mapping("metrics"), train_config=check.mapping("train_config"),
            members=check.members("members"), format_version=version)

    @classmethod
    def read(cls, directory) -> "ModelInfo":
        """The ``model.json`` of a model directory (FileNotFoundError when absent, FormatError when bad)."""
        path = Path(directory) / CONFIG_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no model.json (not a `fashion train` output directory?)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise FormatError(f"invalid JSON: {exc}", path) from None
        return cls.from_json(data, source=path)


class _Checker:
    """Reads one key of a JSON object each call, raising FormatError(source, key) for a bad value."""

    def __init__(self, data: dict, source):
        self.data, self.source = data, source

    def _get(self, key, default):
        if key in self.data and self.data[key] is not None:
            return self.data[key]
        if default is _REQUIRED:
            raise FormatError("missing", self.source, key)
        return default

    def _fail(self, key, message):
        raise FormatError(message, self.source, key)

    def text(self, key, default=_REQUIRED) -> str:
        value = self._get(key, default)
        if not isinstance(value, str) or (default is _REQUIRED and not value.strip()):
            self._fail(key, f"expected a non-empty string, got {value!r}")
        return value

    def integer(self, key, low, high, default=_REQUIRED):
        value = self._get(key, default)
        if value is default and default is not _REQUIRED:
            return value
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self._fail(key, f"expected an integer in [{low}, {high}], got {value!r}")
        return value

    def triple(self, key, low, high, low_open: bool) -> tuple:
        value = self._get(key, _REQUIRED)
        ok = (isinstance(value, list) and len(value) == 3
              and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value))
        if ok:
            ok = all((low < v if low_open else low <= v) and v <= high for v in value)
        if not ok:
            bound = f"({low}, {high}]" if low_open else f"[{low}, {high}]"
            self._fail(key, f"expected 3 numbers in {bound} (one per RGB channel), got {value!r}")
        return tuple(float(v) for v in value)

    def classes(self, key) -> tuple:
        value = self._get(key, _REQUIRED)
        if (not isinstance(value, list) or len(value) < 2 or not all(isinstance(v, str) and v for v in value)
                or len(set(value)) != len(value)):
            self._fail(key, f"expected a list of at least 2 distinct non-empty names, got {_short(value)}")
        return tuple(value)

    def choice(self, key, choices, default=_REQUIRED) -> str:
        value = self._get(key, default)
        if value not in choices:
            self._fail(key, f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    def mapping(self, key) -> dict:
        value = self._get(key, {})
        if not isinstance(value, dict):
            self._fail(key, f"expected a JSON object, got {_short(value)}")
        return value

    def members(self, key) -> tuple:
        value = self._get(key, [])
        if not isinstance(value, list) or len(value) == 1 or not all(isinstance(m, dict) for m in value):
            self._fail(key, f"expected a list of at least 2 objects {{arch, feature_dim, head}}, got {_short(value)}")
        out = []
        for i, member in enumerate(value):
            check = _Checker(member, self.source)
            try:
                out.append({"arch": check.text("arch"), "feature_dim": check.integer("feature_dim", 1, MAX_FEATURES),
                            "head": check.head("head")})
            except FormatError as exc:
                self._fail(key, f"member {i}: {exc}")
        return tuple(out)

    def head(self, key) -> dict:
        value = self.mapping(key) or dict(DEFAULT_HEAD)
        unknown = set(value) - set(DEFAULT_HEAD)
        lin, ps, concat = value.get("lin_ftrs", []), value.get("ps", 0.5), value.get("concat_pool", True)
        if (unknown or not isinstance(lin, list)
                or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_FEATURES for v in lin)
                or isinstance(ps, bool) or not isinstance(ps, (int, float)) or not 0 <= ps < 1
                or not isinstance(concat, bool)):
            self._fail(key, f"expected {{lin_ftrs: [hidden sizes in 1..{MAX_FEATURES}], ps: dropout in [0, 1), "
                            f"concat_pool: true/false}}, got {_short(value)}")
        return {**DEFAULT_HEAD, **value}


def _short(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


