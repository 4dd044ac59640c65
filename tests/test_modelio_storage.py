"""fashion.modelio.storage: a model's tensors stored as float32, float16 or int8 (a scale per output
channel), and read back into the float32 network by load_model."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from fashion.errors import FormatError  # noqa: E402
from fashion.modelio import (CONFIG_FILE, WEIGHTS_FILE, ModelInfo, build_classifier, export_model,  # noqa: E402
                             float_state, load_model, save_state_dict, stored_state)
from fashion.modelio.storage import SCALE_SUFFIX  # noqa: E402


def test_int8_keeps_every_weight_within_half_a_step_of_its_channel():
    torch.manual_seed(0)
    conv = torch.randn(8, 4, 3, 3) * torch.logspace(-3, 0, 8).view(8, 1, 1, 1)  # channels of very different range
    conv[3] = 0.0  # an all-zero channel
    state = {"conv.weight": conv, "bn.bias": torch.randn(8), "bn.num_batches_tracked": torch.tensor(5)}
    stored = stored_state(state, "int8")
    assert stored["conv.weight"].dtype == torch.int8 and stored["conv.weight"].abs().max() == 127
    assert stored["bn.bias"].dtype == torch.float16 and stored["bn.num_batches_tracked"].dtype == torch.int64
    back = float_state(stored)
    assert set(back) == set(state) and back["conv.weight"].dtype == torch.float32
    step = conv.abs().amax(dim=(1, 2, 3)) / 127
    error = (back["conv.weight"] - conv).abs().amax(dim=(1, 2, 3))
    assert torch.all(error <= step / 2 + 1e-7)  # per channel: the smallest channel keeps its own precision
    assert torch.equal(back["conv.weight"][3], torch.zeros(4, 3, 3))


def test_float16_and_float32_storage():
    state = {"w": torch.randn(3, 2), "b": torch.randn(3)}
    assert {v.dtype for v in stored_state(state, "float16").values()} == {torch.float16}
    assert all(torch.equal(stored_state(state, "float32")[k], state[k]) for k in state)
    assert float_state(state) == state  # a plain state dict reads as it is
    with pytest.raises(ValueError, match="dtype must be one of"):
        stored_state(state, "int4")


def test_an_int8_model_file_loads_into_the_float32_network(tmp_path):
    torch.manual_seed(0)
    model, _ = build_classifier("efficientnet_lite0", 3, pretrained=False)
    model.eval()
    info = ModelInfo(arch="efficientnet_lite0", classes=("a", "b", "c"), size=48, mean=(0.5,) * 3, std=(0.5,) * 3)
    export_model(tmp_path / "f32", model, info)
    (tmp_path / "int8").mkdir()
    save_state_dict(tmp_path / "int8" / WEIGHTS_FILE, stored_state(model.state_dict(), "int8"))
    (tmp_path / "int8" / CONFIG_FILE).write_bytes((tmp_path / "f32" / CONFIG_FILE).read_bytes())
    size = {d: (tmp_path / d / WEIGHTS_FILE).stat().st_size for d in ("f32", "int8")}
    assert size["int8"] < 0.3 * size["f32"]
    loaded = load_model(tmp_path / "int8")
    assert next(loaded.model.parameters()).dtype == torch.float32
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():  # untrained: the real model is checked on photos (bundle_model.py --data)
        ref, got = model(x), loaded.model(x)
    assert torch.allclose(ref, got, atol=0.1 * ref.abs().max().item())


def test_int8_scales_that_do_not_fit_their_tensor_are_a_format_error_naming_the_file(tmp_path):
    torch.manual_seed(0)
    model, _ = build_classifier("efficientnet_lite0", 3, pretrained=False)
    info = ModelInfo(arch="efficientnet_lite0", classes=("a", "b", "c"), size=48, mean=(0.5,) * 3, std=(0.5,) * 3)
    export_model(tmp_path, model, info)
    stored = stored_state(model.state_dict(), "int8")
    name = next(k for k in stored if k.endswith(SCALE_SUFFIX))
    stored[name] = stored[name][:-1]  # one scale short
    save_state_dict(tmp_path / WEIGHTS_FILE, stored)
    with pytest.raises(FormatError, match="one scale per output channel") as err:
        load_model(tmp_path)
    assert WEIGHTS_FILE in str(err.value)
