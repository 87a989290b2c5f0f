"""Unit tests for dimse.retrieve (SCU negotiation helpers, results) and dimse.retrieve_scp (proposal, rules)."""
from __future__ import annotations

import pytest

from dicomnet.dicom import write_file
from dicomnet.dimse import retrieve, retrieve_scp
from dicomnet.dimse.commands import c_move_rsp
from dicomnet.errors import DimseStatusError
from dicomnet.pdu.negotiation import build_associate_rq
from dicomnet.samples.synthetic import generate
from dicomnet.types.sop_classes import DEFAULT_ABSTRACT_SYNTAXES, is_storage_sop_class, storage_sop_classes

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"
BIG = "1.2.840.10008.1.2.2"
JPEG = "1.2.840.10008.1.2.4.50"
RLE = "1.2.840.10008.1.2.5"


def test_get_role_selections_default_proposal():
    roles = retrieve.get_role_selections()
    storage = [u for u in DEFAULT_ABSTRACT_SYNTAXES if is_storage_sop_class(u)]
    assert len(storage) == 30
    assert [r.sop_class_uid for r in roles] == storage
    assert all(r.scp_role and not r.scu_role for r in roles)
    # Non-storage classes and duplicates get none.
    roles = retrieve.get_role_selections(["1.2.840.10008.1.1", CT, (CT, [EXPLICIT]), (MR, [IMPLICIT])])
    assert [r.sop_class_uid for r in roles] == [CT, MR]


def test_retrieve_contexts_fit_and_roles():
    contexts, roles = retrieve.retrieve_contexts()
    assert contexts[0][0] == "1.2.840.10008.1.1"
    uids = [c[0] for c in contexts]
    assert retrieve.GET_MODELS["study"] in uids and retrieve.MOVE_MODELS["patient"] in uids
    assert len(contexts) == 7 + 30 and len(roles) == 30
    rq = build_associate_rq("A", "B", contexts, role_selections=roles)
    assert len(rq.presentation_contexts) == 37
    contexts, roles = retrieve.retrieve_contexts([CT, CT, MR], transfer_syntaxes=[JPEG, EXPLICIT],
                                                 models=["study"])
    assert contexts[-2:] == [(CT, (JPEG, EXPLICIT)), (MR, (JPEG, EXPLICIT))]
    with pytest.raises(ValueError, match="128"):
        retrieve.retrieve_contexts(list(storage_sop_classes(include_retired=True))[:125])
    with pytest.raises(ValueError):
        retrieve.retrieve_contexts(models=["worklist"])


def test_model_names():
    assert retrieve._sop_class("Study", retrieve.GET_MODELS, "GET") == "1.2.840.10008.5.1.4.1.2.2.3"
    assert retrieve._sop_class("1.2.3", retrieve.MOVE_MODELS, "MOVE") == "1.2.3"
    with pytest.raises(ValueError):
        retrieve._sop_class("worklist", retrieve.MOVE_MODELS, "MOVE")


def test_move_contexts_native_first_and_encapsulated_apart():
    infos = [(CT, "1", EXPLICIT), (CT, "2", IMPLICIT), (CT, "3", JPEG), (MR, "4", BIG), (None, None, None),
             (CT, "5", JPEG), (MR, "6", RLE)]
    assert retrieve_scp.move_contexts(infos) == [
        (CT, [EXPLICIT, IMPLICIT]),
        (CT, [JPEG, EXPLICIT, IMPLICIT]),
        (MR, [BIG, EXPLICIT, IMPLICIT]),
        (MR, [RLE, EXPLICIT, IMPLICIT]),
    ]
    many = [(f"1.2.3.{n}", str(n), EXPLICIT) for n in range(200)]
    assert len(retrieve_scp.move_contexts(many)) == 128


def test_split_move_rule():
    items = ["a", "b"]
    table = {"DEST": ("127.0.0.1", 104)}
    assert retrieve_scp._split_move((("h", 1), items), table, "DEST") == (("h", 1), items)
    assert retrieve_scp._split_move((None, items), table, "DEST") == (None, items)
    assert retrieve_scp._split_move(items, table, "DEST") == (("127.0.0.1", 104), items)
    assert retrieve_scp._split_move(items, table, "OTHER") == (None, items)
    # A pair of instances is not mistaken for (address, instances).
    pair = ("x.dcm", "y.dcm")
    assert retrieve_scp._split_move(pair, table, "DEST") == (("127.0.0.1", 104), pair)
    with pytest.raises(TypeError):
        retrieve_scp._split_move(items, {"DEST": ("h", "104")}, "DEST")


def test_instance_info_dataset_and_file(tmp_path):
    ds = next(generate(patients=1, studies=1, series=1, instances=1, rows=8, cols=8))
    assert retrieve_scp.instance_info(ds)[:2] == (str(ds.SOPClassUID), str(ds.SOPInstanceUID))
    path = tmp_path / "x.dcm"
    write_file(path, ds, IMPLICIT)
    assert retrieve_scp.instance_info(str(path)) == (str(ds.SOPClassUID), str(ds.SOPInstanceUID), IMPLICIT)
    assert retrieve_scp.instance_info(str(tmp_path / "missing.dcm")) == (None, None, None)
    (tmp_path / "junk").write_bytes(b"not dicom at all")
    assert retrieve_scp.instance_info(str(tmp_path / "junk")) == (None, None, None)


class _FakeAssoc:
    """Just enough of an Association for a result's response handling."""

    def __init__(self, messages, issued=()):
        import logging

        self._messages = list(messages)
        self._log = logging.getLogger("test")
        self.sent = []
        self.is_established = True
        self._issued = list(issued)     # our earlier requests' Message IDs

    def _late_response(self, command, awaited):
        from dicomnet.association import Association

        return Association._late_response(self, command, awaited)

    def _receive_message(self, timeout=None, *, lane=False):
        return self._messages.pop(0)

    def _send_message(self, context_id, command, dataset=None):
        self.sent.append(command)

    def abort(self):
        self.is_established = False


class _Ctx:
    context_id = 1
    transfer_syntax = IMPLICIT


def _msg(command, dataset=None):
    from dicomnet.dimse.assembler import Message

    return Message(1, command, dataset)


def test_move_result_counts_failed_list_and_raise():
    from dicomnet.dicom import Dataset
    from dicomnet.dicom.writer import encode_dataset
    from dicomnet.errors import DimseStatusError

    ident = Dataset()
    ident.set("FailedSOPInstanceUIDList", ["1.2.3", "1.2.4"])
    msgs = [_msg(c_move_rsp(5, None, 0xFF00, 3, 1, 0, 0)),
            _msg(c_move_rsp(5, None, 0xFF00, 2, 1, 1, 0)),
            _msg(c_move_rsp(5, None, 0xA702, None, 0, 4, 0, True), memoryview(encode_dataset(ident, IMPLICIT)))]
    result = retrieve.MoveResult(_FakeAssoc(msgs), _Ctx(), 5, None)
    seen = []
    with pytest.raises(DimseStatusError) as info:
        for progress in result:
            seen.append(progress)
    assert [p.remaining for p in seen] == [3, 2]
    assert info.value.status == 0xA702 and "2 failed instance" in info.value.comment
    assert result.failed_instances == ["1.2.3", "1.2.4"] and result.failed == 4 and result.remaining == 0
    with pytest.raises(RuntimeError):
        iter(result)


def test_move_result_rejects_a_foreign_response():
    from dicomnet.errors import AssociationAborted

    assoc = _FakeAssoc([_msg(c_move_rsp(9, None, 0x0000))])
    result = retrieve.MoveResult(assoc, _Ctx(), 5, None)
    with pytest.raises(AssociationAborted):
        result.result()
    assert not assoc.is_established


def test_move_result_drops_a_late_response_to_an_earlier_request():
    """A second final response to request 4 (pynetdicom does that after a
    Warning), read while request 5 is answered, is dropped."""
    assoc = _FakeAssoc([_msg(c_move_rsp(4, None, 0x0000)), _msg(c_move_rsp(5, None, 0x0000, 0, 2, 0, 0))],
                       issued=[4, 5])
    result = retrieve.MoveResult(assoc, _Ctx(), 5, None)
    assert result.result() == 0x0000 and result.completed == 2
    assert assoc.is_established


def test_failed_list_after_the_command_set_is_read():
    """Orthanc (dcmtk) puts a final response's Failed SOP Instance UID List
    after the command set, with no data set: it reaches failed_instances."""
    import struct

    from dicomnet.dimse.commands import decode_command, encode_command

    uid = b"1.2.3.4\x00"
    tail = struct.pack("<HHII", 8, 0, 4, 8 + len(uid)) + struct.pack("<HHI", 8, 0x0058, len(uid)) + uid
    final = decode_command(encode_command(c_move_rsp(5, None, 0xA702, 0, 0, 1, 0)) + tail)
    assert final.tail == tail
    result = retrieve.MoveResult(_FakeAssoc([_msg(final)]), _Ctx(), 5, None)
    with pytest.raises(DimseStatusError):
        result.result()
    assert result.failed_instances == ["1.2.3.4"] and result.failed == 1


def test_instance_info_file_meta_longer_than_the_first_read(tmp_path):
    from dicomnet.dicom import read_file
    from dicomnet.dicom.writer import encode_file_meta

    ds = next(generate(patients=1, studies=1, series=1, instances=1, rows=8, cols=8))
    path = tmp_path / "short.dcm"
    write_file(path, ds, EXPLICIT)
    meta = read_file(path).file_meta
    meta.set("PrivateInformationCreatorUID", "1.2.3")
    meta.set("PrivateInformation", b"\x01" * 10000, "OB")
    raw = path.read_bytes()
    body_at = len(bytes(encode_file_meta(read_file(path), EXPLICIT)))
    long_meta = bytes(encode_file_meta(_with_meta(read_file(path), meta), EXPLICIT))
    assert len(long_meta) > retrieve_scp._HEAD
    (tmp_path / "long.dcm").write_bytes(long_meta + raw[body_at:])
    assert retrieve_scp._head_info(str(tmp_path / "long.dcm")) is None
    assert retrieve_scp.instance_info(str(tmp_path / "long.dcm")) == (str(ds.SOPClassUID), str(ds.SOPInstanceUID),
                                                                      EXPLICIT)
    assert retrieve_scp._head_info(str(path)) == (str(ds.SOPClassUID), str(ds.SOPInstanceUID), EXPLICIT)


def _with_meta(ds, meta):
    ds.file_meta = meta
    return ds


def test_file_meta_heads_read_in_c_agree_with_the_general_reader(monkeypatch):
    import glob
    import os

    pydicom_data = pytest.importorskip("pydicom.data")
    from dicomnet.dimse import retrieve_scp

    folder = os.path.join(os.path.dirname(pydicom_data.__file__), "test_files")
    paths = sorted(p for p in glob.glob(os.path.join(folder, "**", "*.dcm"), recursive=True))
    if len(paths) < 50:
        pytest.skip("pydicom's test files are not installed")
    fast = [retrieve_scp._head_info(p) for p in paths]
    monkeypatch.setattr(retrieve_scp, "part10_meta", lambda head: None)
    general = [retrieve_scp._head_info(p) for p in paths]
    assert fast == general
    assert sum(info is not None for info in fast) >= len(paths) // 2


def test_an_instance_path_names_its_uid_when_the_file_cannot_be_read(tmp_path):
    from dicomnet.dimse.retrieve_scp import InstancePath, instance_info

    gone = InstancePath(tmp_path / "gone.dcm", "1.2.3.4")
    assert gone == str(tmp_path / "gone.dcm")
    assert instance_info(gone) == (None, "1.2.3.4", None)
    assert instance_info(str(tmp_path / "gone.dcm")) == (None, None, None)
