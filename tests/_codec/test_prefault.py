"""The page prefaulter (dicomnet/_codec/prefault.pyx): a helper thread that
faults in the pages of receive buffers before the data arrive."""
from __future__ import annotations

import gc
import mmap
import os
import resource
import sys

import pytest

from dicomnet._codec.prefault import Prefaulter

PAGE = mmap.PAGESIZE
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="MADV_POPULATE_WRITE is Linux's")


def _unpopulated(size: int) -> mmap.mmap:
    return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)


def _faults_writing(buf: mmap.mmap) -> int:
    """Minor page faults this thread takes writing one byte per page of ``buf``."""
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    for offset in range(0, len(buf), PAGE):
        buf[offset] = 1
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


@pytest.fixture
def prefaulter():
    p = Prefaulter()
    if not p.supported:
        p.close()
        pytest.skip("MADV_POPULATE_WRITE is not offered here")
    yield p
    p.close()


@linux_only
def test_a_submitted_buffer_is_written_without_page_faults(prefaulter):
    pages = 256
    control = _unpopulated(pages * PAGE)
    assert _faults_writing(control) >= pages * 9 // 10      # the measure sees faults where they happen
    buf = _unpopulated(pages * PAGE)
    assert prefaulter.submit(buf)
    prefaulter.drain()
    assert _faults_writing(buf) <= pages // 10
    assert buf[:PAGE].count(0) == PAGE - 1 and buf[0] == 1  # the pages are zero, as fresh memory is


@linux_only
def test_the_contents_are_never_changed(prefaulter):
    buf = _unpopulated(64 * PAGE)
    buf[:5] = b"hello"
    buf[-5:] = b"world"
    assert prefaulter.submit(buf)
    prefaulter.drain()
    assert buf[:5] == b"hello" and buf[-5:] == b"world" and buf[5:-5].count(0) == len(buf) - 10


@linux_only
def test_a_buffer_unmapped_before_its_turn_is_harmless(prefaulter):
    # No export is kept (the assembler must stay free to mremap its buffers), so
    # a range may be gone when the thread reaches it: the advice then fails.
    for _ in range(50):
        buf = _unpopulated(256 * PAGE)
        prefaulter.submit(buf)
        buf.close()
    prefaulter.drain()
    assert prefaulter.supported


@linux_only
def test_a_submitted_map_can_still_be_resized(prefaulter):
    buf = _unpopulated(64 * PAGE)
    assert prefaulter.submit(buf)
    buf.resize(16 * PAGE)                       # no BufferError: nothing is exported
    buf.resize(128 * PAGE)
    prefaulter.drain()
    buf[-1] = 7
    assert buf[-1] == 7


@linux_only
def test_close_joins_the_thread_and_refuses_more_work():
    before = _threads()
    p = Prefaulter()
    assert _threads() == before + 1
    p.close()
    p.close()                                   # idempotent
    assert _threads() == before
    assert not p.supported
    assert not p.submit(_unpopulated(PAGE * 4))
    p.drain()                                   # nothing to wait for


@linux_only
def test_dropping_an_open_prefaulter_joins_its_thread():
    before = _threads()
    p = Prefaulter()
    p.submit(_unpopulated(PAGE * 64))
    del p
    gc.collect()
    assert _threads() == before


def test_submit_wants_a_writable_buffer():
    p = Prefaulter()
    try:
        if p.supported:
            with pytest.raises((BufferError, TypeError)):
                p.submit(b"read-only")
    finally:
        p.close()


@linux_only
def test_a_range_shorter_than_a_page_is_not_queued(prefaulter):
    assert not prefaulter.submit(bytearray(100))


@linux_only
def test_a_forked_child_neither_waits_for_nor_joins_the_parents_thread(prefaulter):
    prefaulter.submit(_unpopulated(256 * PAGE))
    pid = os.fork()
    if pid == 0:                                # the child: no thread of this Prefaulter here
        code = 1
        try:
            code = 0 if (not prefaulter.supported and not prefaulter.submit(_unpopulated(PAGE * 4))) else 2
            prefaulter.drain()
            prefaulter.close()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert prefaulter.supported                 # the parent's is untouched
    prefaulter.drain()
