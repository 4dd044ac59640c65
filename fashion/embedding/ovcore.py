"""OpenVINO's one Core of the process, without torch (importing this module imports neither)."""

from __future__ import annotations

import importlib.util
import threading

_CORE_LOCK = threading.Lock()
_CORE = None


def openvino_available() -> bool:
    """True when the ``openvino`` package can be imported (checked without importing it)."""
    return importlib.util.find_spec("openvino") is not None


def openvino_core():
    """The process's one ``openvino.Core``, made on first use and kept until the process ends.

    One Core means one CPU plugin instance: each instance swaps in an alternate signal stack of its
    own on the thread that makes it, and instances released out of order leave that thread on an
    unmapped stack, where the next handled signal is a SIGSEGV (:mod:`.sigstack`). A Core per
    runtime did exactly that once two embedders had come and gone."""
    global _CORE
    with _CORE_LOCK:
        if _CORE is None:
            import openvino as ov

            _CORE = ov.Core()
        return _CORE
