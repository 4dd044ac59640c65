"""fashion.embedding.sigstack: reading the thread's alternate signal stack, telling an unmapped one,
and kept() putting back the stack a block replaced (the state OpenVINO plugins leave, made by hand)."""

from __future__ import annotations

import ctypes
import mmap

import pytest

from fashion.embedding import sigstack

if sigstack.current() is None:
    pytest.skip("sigaltstack is read on Linux only", allow_module_level=True)

SIZE = 64 * 1024


def _stack() -> tuple[mmap.mmap, int]:
    region = mmap.mmap(-1, SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    return region, ctypes.addressof(ctypes.c_char.from_buffer(region))


def test_kept_puts_back_the_stack_a_block_replaced_and_unmapped():
    before = sigstack.current()
    region, address = _stack()
    with sigstack.kept():
        sigstack._set((address, SIZE, 0))
        assert sigstack.current() == (address, SIZE, 0) and sigstack.usable()
    assert sigstack.current() == before and sigstack.usable()

    with sigstack.kept():  # what a plugin does: its stack current, then unmapped
        sigstack._set((address, SIZE, 0))
        region.close()
        assert not sigstack.usable()  # no signal may be handled on this thread now
    assert sigstack.current() == before and sigstack.usable()


def test_kept_leaves_an_unchanged_stack_alone_and_is_mapped_reads_the_maps():
    before = sigstack.current()
    with sigstack.kept():
        pass
    assert sigstack.current() == before
    region, address = _stack()
    assert sigstack.is_mapped(address) and sigstack.is_mapped(address + SIZE - 1)
    assert not sigstack.is_mapped(0)
