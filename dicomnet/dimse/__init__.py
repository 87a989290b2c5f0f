"""DIMSE (PS3.7): command sets and message assembly, sans-IO.

:mod:`dicomnet.dimse.commands` encodes and decodes command sets and builds the
C-ECHO/C-STORE/C-FIND/C-MOVE/C-GET/C-CANCEL commands;
:mod:`dicomnet.dimse.assembler` turns received PDVs into :class:`Message` objects.
"""
from __future__ import annotations

from dicomnet.dimse.assembler import Message, MessageAssembler
from dicomnet.dimse.commands import (
    DATASET_PRESENT,
    NO_DATASET,
    Command,
    CommandField,
    Priority,
    c_cancel_rq,
    c_echo_rq,
    c_echo_rsp,
    c_find_rq,
    c_find_rsp,
    c_get_rq,
    c_get_rsp,
    c_move_rq,
    c_move_rsp,
    c_store_rq,
    c_store_rsp,
    decode_command,
    encode_command,
)

__all__ = [
    "DATASET_PRESENT",
    "NO_DATASET",
    "Command",
    "Message",
    "MessageAssembler",
    "CommandField",
    "Priority",
    "c_cancel_rq",
    "c_echo_rq",
    "c_echo_rsp",
    "c_find_rq",
    "c_find_rsp",
    "c_get_rq",
    "c_get_rsp",
    "c_move_rq",
    "c_move_rsp",
    "c_store_rq",
    "c_store_rsp",
    "decode_command",
    "encode_command",
]
