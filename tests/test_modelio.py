"""fashion.modelio.ModelInfo: model.json round-trips, and every bad value is one line naming file and key."""

from __future__ import annotations

import json

import pytest

from fashion.errors import FashionError, FormatError
from fashion.modelio import FORMAT_VERSION, ModelInfo

GOOD = {"arch": "efficientnet_lite0", "classes": ["dress", "hat"], "size": 160, "final_size": 224,
        "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "feature_dim": 1280, "crop": "none",
        "head": {"lin_ftrs": [512], "ps": 0.5, "concat_pool": True}}


def write(tmp_path, data) -> None:
    (tmp_path / "model.json").write_text(json.dumps(data))


def test_round_trip_and_defaults(tmp_path):
    info = ModelInfo.from_json(GOOD)
    assert info.input_size == 224 and info.classes == ("dress", "hat") and info.mean == (0.5, 0.5, 0.5)
    data = info.to_json()
    assert data["format_version"] == FORMAT_VERSION and data["classes"] == ["dress", "hat"]
    assert ModelInfo.from_json(json.loads(json.dumps(data))) == info
    minimal = ModelInfo.from_json({k: GOOD[k] for k in ("arch", "classes", "size", "mean", "std")})
    assert minimal.input_size == 160 and minimal.crop == "none" and minimal.head["lin_ftrs"] == [512]


def test_unknown_keys_of_the_same_version_are_ignored():
    assert ModelInfo.from_json({**GOOD, "resize": "squish", "note": "x"}) == ModelInfo.from_json(GOOD)


@pytest.mark.parametrize("key, value", [
    ("mean", [0.5, 0.5]),                   # two channels
    ("mean", [0.5, "x", 0.5]),
    ("mean", [0.5, float("nan"), 0.5]),
    ("mean", [128, 128, 128]),              # 0-255 scale, not [0, 1]
    ("std", [0.5, 0.0, 0.5]),               # division by zero
    ("std", [0.5, -0.2, 0.5]),
    ("size", 0), ("size", 100_000), ("size", "224"), ("size", True), ("size", 22.5),
    ("final_size", 5),
    ("classes", ["only-one"]), ("classes", ["a", "a"]), ("classes", "ab"), ("classes", ["a", 3]),
    ("arch", ""), ("arch", 7),
    ("crop", "box"),
    ("head", {"lin_ftrs": [0]}), ("head", {"lin_ftrs": [10**9]}), ("head", {"ps": 1.5}), ("head", {"extra": 1}),
    ("head", [512]),
    ("feature_dim", -1),
    ("metrics", [1, 2]),
    ("format_version", 99),
])
def test_a_bad_value_is_one_line_naming_file_and_key(tmp_path, key, value):
    write(tmp_path, {**GOOD, key: value})
    with pytest.raises(FormatError) as info:
        ModelInfo.read(tmp_path)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'model.json'}: {key}: ") and "\n" not in message
    assert isinstance(info.value, (FashionError, ValueError))


@pytest.mark.parametrize("key", ["arch", "classes", "size", "mean", "std"])
def test_a_missing_key_is_named(tmp_path, key):
    write(tmp_path, {k: v for k, v in GOOD.items() if k != key})
    with pytest.raises(FormatError, match=f"model.json: {key}: missing"):
        ModelInfo.read(tmp_path)


def test_not_json_or_not_an_object(tmp_path):
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(FormatError, match="model.json: invalid JSON"):
        ModelInfo.read(tmp_path)
    write(tmp_path, [1, 2, 3])
    with pytest.raises(FormatError, match="expected a JSON object"):
        ModelInfo.read(tmp_path)
    with pytest.raises(FileNotFoundError, match="model.json"):
        ModelInfo.read(tmp_path / "absent")


def test_weights_sha256_hashes_a_rewritten_file_anew(tmp_path):
    """The digest is remembered per version of the file: rewritten in place (same size, other bytes), it is
    hashed again; replaced by another file at the same path, too."""
    import hashlib
    import os

    from fashion.modelio import weights_sha256

    path = tmp_path / "model.safetensors"
    path.write_bytes(b"a" * 4096)
    assert weights_sha256(path) == hashlib.sha256(b"a" * 4096).hexdigest()
    before = os.stat(path)
    with open(path, "r+b") as f:  # in place: the same inode and size
        f.write(b"b" * 4096)
    # its times as a write one clock tick later leaves them (within one tick they may not move: see weights_sha256)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 10_000_000))
    assert weights_sha256(path) == hashlib.sha256(b"b" * 4096).hexdigest()
    other = tmp_path / "other"
    other.write_bytes(b"c" * 4096)
    os.replace(other, path)
    assert weights_sha256(path) == hashlib.sha256(b"c" * 4096).hexdigest()
