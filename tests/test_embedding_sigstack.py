"""fashion.embedding.sigstack: reading the thread's alternate signal stack, telling an unmapped one,
and kept() putting back the stack a block replaced. No test leaves this process on an unmapped stack,
not even for a moment: a signal handled then (a DataLoader worker's SIGCHLD) would kill pytest."""

from __future__ import annotations

import ctypes
import mmap

import pytest

from fashion.embedding import sigstack

if sigstack.current() is None:
    pytest.skip("sigaltstack is read on Linux only", allow_module_level=True)

SIZE = 64 * 1024


def _region() -> tuple[mmap.mmap, int]:
    region = mmap.mmap(-1, SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    return region, ctypes.addressof(ctypes.c_char.from_buffer(region))


def test_kept_puts_back_the_stack_a_block_replaced():
    before = sigstack.current()
    region, address = _region()
    with sigstack.kept():  # what an OpenVINO plugin does: swaps in a stack of its own
        sigstack._set((address, SIZE, 0))
        assert sigstack.current() == (address, SIZE, 0) and sigstack.usable()
    assert sigstack.current() == before and sigstack.usable()
    region.close()  # only now that it is no longer this thread's stack
    with sigstack.kept():  # a block that changes nothing: nothing set
        pass
    assert sigstack.current() == before


def test_usable_is_false_only_for_a_stack_in_unmapped_memory(monkeypatch):
    region, address = _region()
    assert sigstack.is_mapped(address) and sigstack.is_mapped(address + SIZE - 1)
    region.close()
    assert not sigstack.is_mapped(address) and not sigstack.is_mapped(0)
    monkeypatch.setattr(sigstack, "current", lambda: (address, SIZE, 0))  # what the plugins left
    assert not sigstack.usable()
    monkeypatch.setattr(sigstack, "current", lambda: (0, 0, sigstack.SS_DISABLE))  # no stack at all
    assert sigstack.usable()
    monkeypatch.setattr(sigstack, "current", lambda: None)  # not readable here (not Linux)
    assert sigstack.usable()
