"""How a model's tensors are stored on disk: float32 as trained, float16, or int8 with a scale per output
channel (:func:`stored_state`), and read back into float32 tensors (:func:`float_state`).

int8 keeps each weight matrix or convolution kernel (a floating tensor of two or more dimensions) as
``round(w / s)`` in [-127, 127] with ``s = max |w| / 127`` over each output channel (its first dimension),
and ``s`` beside it under the tensor's name + :data:`SCALE_SUFFIX`; the other floating tensors (biases,
batch-norm statistics) as float16. Half the bytes of float16, with an error per weight of at most half a
step of its own channel's scale: the bundled model's card says what that changes in its predictions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch

DTYPES = ("float32", "float16", "int8")
SCALE_SUFFIX = ":int8_scale"  # no parameter name holds a colon, so the key cannot collide


def stored_state(state: dict, dtype: str) -> "dict[str, torch.Tensor]":
    """``state`` (name → tensor) as ``dtype`` stores it; integer tensors (batch counters) unchanged."""
    import torch

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    out = {}
    for name, tensor in state.items():
        tensor = tensor.detach().cpu()
        if not tensor.is_floating_point():
            out[name] = tensor
        elif dtype == "int8" and tensor.dim() >= 2:
            flat = tensor.float().reshape(len(tensor), -1)
            scale = flat.abs().amax(dim=1) / 127.0
            scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero channel stays zero
            out[name] = torch.round(flat / scale[:, None]).clamp(-127, 127).to(torch.int8).reshape(tensor.shape)
            out[name + SCALE_SUFFIX] = scale
        else:
            out[name] = tensor.to(torch.float16 if dtype != "float32" else torch.float32)
    return out


def float_state(state: dict) -> "dict[str, torch.Tensor]":
    """A stored state (:func:`stored_state`, or any plain state dict) with its int8 tensors scaled back to
    float32; every other tensor as it is (``load_state_dict`` casts float16 into the float32 network)."""
    import torch

    out = {}
    for name, tensor in state.items():
        if name.endswith(SCALE_SUFFIX):
            continue
        scale = state.get(name + SCALE_SUFFIX)
        if scale is not None:
            if tensor.dtype != torch.int8 or scale.dim() != 1 or len(scale) != len(tensor):
                raise ValueError(f"{name}: an int8 tensor with one scale per output channel expected, got "
                                 f"{tensor.dtype} {tuple(tensor.shape)} with scales {tuple(scale.shape)}")
            tensor = tensor.float() * scale.float().reshape(-1, *([1] * (tensor.dim() - 1)))
        out[name] = tensor
    return out
