"""Association: receive-path buffer ownership (dicomnet/association.py)."""
from __future__ import annotations

import ctypes

from dicomnet.association import Association
from dicomnet.dimse import commands as C
from dicomnet.dimse.commands import encode_command

from tests.transport.test_sync import associated_pair

CT = "1.2.840.10008.5.1.4.1.1.2"


def _address(view: memoryview) -> int:
    holder = ctypes.c_char.from_buffer(view)
    try:
        return ctypes.addressof(holder)
    finally:
        del holder                     # release the export at once


def test_receiving_messages_reuses_the_pdu_readers_block():
    """Association._next drops each P-DATA event before the next receive, so
    the PDU reader slides the next PDU into the same block instead of
    allocating a new one for every PDU (a P-DATA event's PDV views pin the
    block they point into)."""
    # PDUs of ~30 KB in the reader's 64 KiB block: after one, there is room
    # for a window in the same block, so a pinned block shows as a window
    # that starts past the front instead of at it.
    req, acc = associated_pair(req_max_pdu=1 << 16, acc_max_pdu=30000)
    assoc = Association(acc, acc.conn.negotiated, rq=acc.conn.rq, ac=None, dimse_timeout=5)  # type: ignore[arg-type]
    starts: list[int] = []
    get_buffer = acc.conn.get_buffer

    def recording_get_buffer(sizehint: int = -1) -> memoryview:
        view = get_buffer(sizehint)
        reader = acc.conn._reader
        if reader.buffered == 0 and not reader.placing:  # at a PDU boundary: the window starts the block
            starts.append(_address(view))
        return view

    acc.conn.get_buffer = recording_get_buffer  # type: ignore[method-assign]
    try:
        for i in range(12):
            payload = bytes([i]) * 150_000    # 6 PDUs
            req.conn.send_pdata(1, True, encode_command(C.c_store_rq(i + 1, CT, f"1.2.3.{i}")))
            req.conn.send_pdata(1, False, payload)
            req.flush()
            message = assoc._receive_message(5)
            assert message.command.message_id == i + 1
            assert bytes(message.dataset) == payload
    finally:
        req.close()
        acc.close()
    assert len(starts) >= 12
    assert len(set(starts)) == 1, "windows not at the block's front: something holds the last P-DATA event"
