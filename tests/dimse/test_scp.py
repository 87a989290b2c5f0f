"""dicomnet.dimse.scp pieces without a socket: the streaming sink, statuses, matches."""
from __future__ import annotations

import gc
import os

import pytest

from dicomnet.dicom import Dataset, read_file
from dicomnet.dicom.writer import encode_dataset
from dicomnet.dimse.commands import c_store_rq
from dicomnet.dimse.scp import StoreSink, _check_status, _failure_status, _match, error_comment
from dicomnet.interfaces.handlers import ServiceContext
from dicomnet.pdu.negotiation import NegotiatedContext

pydicom_data = pytest.importorskip("pydicom.data")

CT = "1.2.840.10008.5.1.4.1.1.2"
IMPLICIT = "1.2.840.10008.1.2"


def context(ts: str = IMPLICIT, instance: str = "1.2.3.4.5") -> ServiceContext:
    command = c_store_rq(7, CT, instance)
    return ServiceContext("CALLER", "SCP", None, NegotiatedContext(1, CT, ts, False, True), 7, command,
                          None)  # type: ignore[arg-type]  # no AssociationInfo needed here


def source() -> Dataset:
    return read_file(pydicom_data.get_testdata_file("CT_small.dcm", download=False))


def test_sink_writes_a_part10_file_in_the_negotiated_syntax(tmp_path):
    ds = source()
    body = bytes(encode_dataset(ds, IMPLICIT))
    final = tmp_path / "sub" / "x.dcm"
    sink = StoreSink(context(instance=ds.SOPInstanceUID), final)
    for i in range(0, len(body), 1000):               # fragments as PDVs would bring them
        sink.write(memoryview(body)[i:i + 1000])
        assert not final.exists()                      # nothing under the final name yet
    assert sink.size == len(body)
    assert sink.commit() == str(final)
    assert os.listdir(final.parent) == ["x.dcm"]
    written = read_file(final)
    assert written.preamble == bytes(128)
    meta = written.file_meta
    assert meta.TransferSyntaxUID == IMPLICIT
    assert meta.MediaStorageSOPClassUID == CT and meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert meta.SourceApplicationEntityTitle == "CALLER"
    assert bytes(encode_dataset(written, IMPLICIT)) == body
    import pydicom

    assert pydicom.dcmread(final).PatientName == str(ds.PatientName)


def test_sink_discard_and_garbage_collection_remove_the_temporary(tmp_path):
    sink = StoreSink(context(), tmp_path / "a.dcm")
    sink.write(b"\x08\x00")
    assert len(os.listdir(tmp_path)) == 1
    sink.discard()
    assert os.listdir(tmp_path) == []
    sink = StoreSink(context(), tmp_path / "b.dcm")
    sink.write(b"\x08\x00")
    del sink                    # no cycle holds a sink: it goes at once, with its file
    assert os.listdir(tmp_path) == []
    gc.collect()
    assert os.listdir(tmp_path) == []


def test_sink_takes_a_relative_destination(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sink = StoreSink(context(), "c.dcm")
    [tmp] = os.listdir(tmp_path)
    assert tmp.startswith(".c.dcm.") and tmp.endswith(".part")
    sink.write(b"\x08\x00\x16\x00" + bytes(4))
    assert sink.commit() == "c.dcm"
    assert os.listdir(tmp_path) == ["c.dcm"]


def test_sink_write_errors_are_kept_for_the_response(tmp_path):
    (tmp_path / "a-file").write_bytes(b"")     # a folder that is a file: cannot be created, on any OS
    sink = StoreSink(context(), str(tmp_path / "a-file" / "this.dcm"))
    assert isinstance(sink.error, OSError)
    sink.write(b"data")                    # dropped quietly
    with pytest.raises(OSError):
        sink.commit()
    failed = StoreSink(context(), None, RuntimeError("no destination"))
    with pytest.raises(RuntimeError):
        failed.commit()


def test_statuses_and_comments():
    assert _check_status(None, "on_store") == 0
    assert _check_status(0xB000, "on_store") == 0xB000
    for bad in (True, -1, 0x10000, "0", 1.0):
        with pytest.raises(TypeError):
            _check_status(bad, "on_store")
    assert _failure_status(MemoryError(), store=True) == 0xA700
    assert _failure_status(OSError(), store=False) == 0xA700
    assert _failure_status(KeyError("x"), store=True) == 0xC000
    text = error_comment(ValueError("é" + "x" * 100))
    assert len(text) == 64 and text.startswith("ValueError: ?x") and text.isascii()


def test_match_forms():
    ds = Dataset()
    assert _match(ds) == (0xFF00, ds)
    assert _match((0xFF01, ds)) == (0xFF01, ds)
    status, made = _match({"PatientID": "A"})
    assert status == 0xFF00 and made.PatientID == "A"
    with pytest.raises(ValueError, match="Pending"):
        _match((0x0000, ds))
    with pytest.raises(TypeError):
        _match("PatientID")


def test_file_meta_bytes_match_the_writer():
    from dicomnet.dicom.writer import encode_file_meta
    from dicomnet.dimse.scp import file_meta_bytes

    ds = Dataset()
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = "1.2.3.45"
    assert file_meta_bytes(CT, "1.2.3.45", IMPLICIT, None) == bytes(128) + b"DICM" + bytes(
        encode_file_meta(ds, IMPLICIT))
    with_ae = file_meta_bytes(CT, "1.2.3.45", IMPLICIT, "CALLER")
    meta = read_file(with_ae + bytes(encode_dataset(source(), IMPLICIT))).file_meta
    assert meta.SourceApplicationEntityTitle == "CALLER" and meta.MediaStorageSOPInstanceUID == "1.2.3.45"
    with pytest.raises(ValueError):
        file_meta_bytes(CT, "1." * 40, IMPLICIT, None)


def test_store_rsp_bytes_match_the_general_encoder():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from dicomnet.dimse.commands import c_store_rsp, encode_command
    from dicomnet.dimse.scp import _store_rsp_bytes

    uids = st.text(alphabet="0123456789.", min_size=1, max_size=64)

    @settings(max_examples=200, deadline=None)
    @given(st.integers(0, 0xFFFF), uids, uids, st.sampled_from([0, 0x0107, 0xA700, 0xB000, 0xC000]))
    def check(message_id: int, sop_class: str, sop_instance: str, status: int) -> None:
        expected = encode_command(c_store_rsp(message_id, sop_class, sop_instance, status))
        assert _store_rsp_bytes(message_id, sop_class, sop_instance, status) == expected

    check()
    # What the fast path cannot encode goes to the general encoder (which raises).
    assert _store_rsp_bytes(1, CT, "1." * 40, 0) is None
    assert _store_rsp_bytes(1, CT, "1.2.ü", 0) is None
    assert _store_rsp_bytes(1, None, "1.2", 0) is None
    assert _store_rsp_bytes(70000, CT, "1.2", 0) is None
    assert _store_rsp_bytes(-1, CT, "1.2", 0) is None
    assert _store_rsp_bytes(1, CT, "1.2", 1 << 70) is None
    assert _store_rsp_bytes(1.0, CT, "1.2", 0) is None


def test_sink_writes_the_file_meta_with_the_first_fragment_or_alone(tmp_path):
    from dicomnet.dimse.scp import file_meta_bytes

    head = file_meta_bytes(CT, "1.2.3.4.5", IMPLICIT, "CALLER")
    sink = StoreSink(context(), tmp_path / "one.dcm")
    assert os.path.getsize(tmp_path / os.listdir(tmp_path)[0]) == 0   # nothing written before data
    sink.write(memoryview(b"\x08\x00\x16\x00" + bytes(4)))
    sink.write(b"\x08\x00\x18\x00" + bytes(4))
    assert sink.commit() == str(tmp_path / "one.dcm")
    assert (tmp_path / "one.dcm").read_bytes() == head + b"\x08\x00\x16\x00" + bytes(4) + b"\x08\x00\x18\x00" + bytes(4)
    empty = StoreSink(context(), tmp_path / "empty.dcm")
    empty.commit()
    assert (tmp_path / "empty.dcm").read_bytes() == head
