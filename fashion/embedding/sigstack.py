"""The calling thread's alternate signal stack (``sigaltstack(2)``), kept valid around OpenVINO.

Why this exists: every CPU plugin instance of OpenVINO (one per ``openvino.Core`` that compiles or
queries "CPU") installs an alternate signal stack of its own on the thread that creates it (for
AMX's large signal frames) and remembers the stack it replaced. When the plugin is destroyed it
unmaps its stack, and puts the remembered one back only if its own is still the current one. Two
plugin instances released in the order they were made (not the reverse) therefore leave the thread
pointing at the first one's unmapped stack: the next signal with a handler (``SA_ONSTACK``, which is
every Python handler, faulthandler's, and torch DataLoader's SIGCHLD handler) cannot be delivered and
the kernel kills the process with SIGSEGV, without any traceback (faulthandler runs on that stack too).

That is how ``tests/test_embeddings.py::test_killed_run_resumes_bitwise`` died after the int8 tests:
NNCF's engines and two embedders each held a Core; when the killed child's SIGCHLD reached the
DataLoader's handler, the stack was gone. The package guards against it twice: all its own OpenVINO
work goes through one process-wide Core (:func:`fashion.embedding.net.openvino_core`), and the code it
does not control (``nncf.quantize``, which makes Cores of its own) runs inside :func:`kept`, which
puts back the stack the thread had before.

Linux only (glibc); elsewhere :func:`current` returns None and :func:`kept` does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import sys

SS_DISABLE = 2  # <bits/ss_flags.h> on Linux


class _StackT(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def current() -> tuple[int, int, int] | None:
    """The calling thread's alternate signal stack as (address, size, flags); (0, 0, SS_DISABLE)
    when it has none; None where this cannot be read (not Linux)."""
    libc = _libc()
    if libc is None:
        return None
    stack = _StackT()
    if libc.sigaltstack(None, ctypes.byref(stack)) != 0:
        raise OSError(ctypes.get_errno(), "sigaltstack")
    return int(stack.ss_sp or 0), int(stack.ss_size), int(stack.ss_flags)


def is_mapped(address: int) -> bool:
    """True when ``address`` lies in a mapping of this process (``/proc/self/maps``)."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            start, end = (int(x, 16) for x in line.split(None, 1)[0].split("-"))
            if start <= address < end:
                return True
    return False


def usable() -> bool:
    """True unless the calling thread's alternate signal stack points at memory that is not mapped
    (the state in which the next handled signal kills the process)."""
    stack = current()
    return stack is None or stack[2] & SS_DISABLE != 0 or not stack[0] or is_mapped(stack[0])


def _set(stack: tuple[int, int, int]) -> None:
    address, size, flags = stack
    value = _StackT(address or None, SS_DISABLE if flags & SS_DISABLE else 0, size)
    if _libc().sigaltstack(ctypes.byref(value), None) != 0:
        raise OSError(ctypes.get_errno(), "sigaltstack")


@contextlib.contextmanager
def kept():
    """Run a block that may make and drop OpenVINO Cores, then give the calling thread back the
    alternate signal stack it had before: at once (the one the block left may be unmapped already),
    and again after collecting what the block dropped, so that the plugins' destructors run now
    rather than at some later collection. A plugin destroyed once its stack is no longer the
    current one unmaps only its own stack."""
    before = current()
    try:
        yield
    finally:
        if before is not None:
            for _ in range(2):
                if current() != before:
                    _set(before)
                gc.collect()
