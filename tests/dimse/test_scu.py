"""dicomnet.dimse.scu without a socket: context choice, zero-copy file sends, queries."""
from __future__ import annotations

import mmap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dicomnet.dicom import Dataset, read_dataset, read_file
from dicomnet.dicom.writer import encode_dataset
from dicomnet.dimse.scu import FIND_MODELS, _find_sop_class, prepare_store, query_dataset, window_bytes
from dicomnet.errors import NoPresentationContext
from dicomnet.pdu.negotiation import NegotiatedAssociation, NegotiatedContext

pydicom_data = pytest.importorskip("pydicom.data")

IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
BIG = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
SC = "1.2.840.10008.5.1.4.1.1.7"


def data(name: str) -> str:
    path = pydicom_data.get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} not available offline")
    return str(path)


def negotiated(*contexts: tuple[str, str]) -> NegotiatedAssociation:
    ctxs = {2 * i + 1: NegotiatedContext(2 * i + 1, a, t, True, False) for i, (a, t) in enumerate(contexts)}
    return NegotiatedAssociation(True, "SCU", "SCP", ctxs, {}, 16384, 16384, None, None)


def test_a_path_is_sent_as_a_view_of_the_mapped_file(monkeypatch):
    import dicomnet.dimse.scu as scu_mod

    monkeypatch.setattr(scu_mod, "_READ_MAX", 1000)     # CT_small.dcm (39 KB) counts as large
    path = data("CT_small.dcm")
    raw = open(path, "rb").read()
    prepared = prepare_store(negotiated((CT, IMPLICIT), (CT, EXPLICIT)), path)
    try:
        view = prepared.dataset
        assert isinstance(view, memoryview) and isinstance(view.obj, mmap.mmap)
        assert view.obj is prepared.mapping
        # The bytes sent are the file's own bytes after the File Meta: no copy was made.
        assert np.shares_memory(np.frombuffer(view, np.uint8), np.frombuffer(prepared.mapping, np.uint8))
        assert bytes(view) == raw[len(raw) - len(view):]
        assert bytes(view) == bytes(encode_dataset(read_file(path)))
        assert prepared.context.context_id == 3 and not prepared.transcoded
        assert prepared.sop_class_uid == CT
        assert prepared.sop_instance_uid == read_file(path).SOPInstanceUID
    finally:
        prepared.close()
    assert prepared.mapping is None


def test_a_small_file_is_read_once_and_sent_as_a_view_of_its_bytes():
    path = data("CT_small.dcm")
    raw = open(path, "rb").read()
    prepared = prepare_store(negotiated((CT, IMPLICIT), (CT, EXPLICIT)), path)
    view = prepared.dataset
    assert isinstance(view, memoryview) and isinstance(view.obj, bytes) and prepared.mapping is None
    assert view.obj == raw and bytes(view) == raw[len(raw) - len(view):]     # a view: no second copy
    assert bytes(view) == bytes(encode_dataset(read_file(path)))
    prepared.close()


def test_command_uids_come_from_the_data_set_not_a_stale_file_meta():
    path = data("rtplan.dcm")            # its File Meta names another instance
    ds = read_file(path)
    assert ds.file_meta.MediaStorageSOPInstanceUID != ds.SOPInstanceUID
    prepared = prepare_store(negotiated((ds.SOPClassUID, ds.transfer_syntax)), path)
    assert prepared.sop_instance_uid == ds.SOPInstanceUID
    prepared.close()


def test_transcoding_prefers_explicit_little_endian():
    path = data("MR_small_bigendian.dcm")
    prepared = prepare_store(negotiated((MR, IMPLICIT), (MR, EXPLICIT)), path)
    assert prepared.context.transfer_syntax == EXPLICIT and prepared.transcoded
    assert prepared.source_transfer_syntax == BIG
    assert bytes(prepared.dataset) == bytes(encode_dataset(read_file(path), EXPLICIT))


def test_a_deflated_file_is_sent_as_is_or_inflated():
    path = data("image_dfl.dcm")
    ds = read_file(path)
    assert ds.transfer_syntax == DEFLATED
    as_is = prepare_store(negotiated((ds.SOPClassUID, DEFLATED)), path)
    raw = open(path, "rb").read()
    assert bytes(as_is.dataset) == raw[len(raw) - len(as_is.dataset):]
    as_is.close()
    inflated = prepare_store(negotiated((ds.SOPClassUID, EXPLICIT)), path)
    assert bytes(inflated.dataset) == bytes(encode_dataset(ds, EXPLICIT))


def test_requested_syntax():
    path = data("CT_small.dcm")
    prepared = prepare_store(negotiated((CT, EXPLICIT), (CT, IMPLICIT)), path, transfer_syntax=IMPLICIT)
    assert prepared.context.transfer_syntax == IMPLICIT
    assert bytes(prepared.dataset) == bytes(encode_dataset(read_file(path), IMPLICIT))
    with pytest.raises(NoPresentationContext) as info:
        prepare_store(negotiated((CT, EXPLICIT)), path, transfer_syntax=IMPLICIT)
    assert info.value.requested == IMPLICIT and info.value.accepted == [EXPLICIT]


def test_encapsulated_data_is_never_transcoded():
    path = data("JPEG-lossy.dcm")
    with pytest.raises(NoPresentationContext) as info:
        prepare_store(negotiated((SC, EXPLICIT), (SC, IMPLICIT)), path)
    err = info.value
    assert (err.sop_class, err.transfer_syntax, err.accepted) == (SC, JPEG_EXTENDED, [EXPLICIT, IMPLICIT])
    assert SC in str(err) and JPEG_EXTENDED in str(err)
    with pytest.raises(NoPresentationContext):
        prepare_store(negotiated((SC, JPEG_EXTENDED)), path, transfer_syntax=EXPLICIT)
    ok = prepare_store(negotiated((SC, EXPLICIT), (SC, JPEG_EXTENDED)), path)
    assert ok.context.transfer_syntax == JPEG_EXTENDED
    ok.close()


def test_a_file_without_file_meta_is_decoded(tmp_path):
    ds = read_file(data("CT_small.dcm"))
    bare = tmp_path / "bare.dcm"
    bare.write_bytes(bytes(encode_dataset(ds, EXPLICIT)))
    prepared = prepare_store(negotiated((CT, EXPLICIT)), bare)
    assert prepared.mapping is None and prepared.sop_instance_uid == ds.SOPInstanceUID
    assert bytes(prepared.dataset) == bytes(encode_dataset(ds, EXPLICIT))


def test_a_dataset_from_scratch_and_missing_uids():
    ds = Dataset()
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = "1.2.3.4"
    ds.PatientName = "Doe^John"
    prepared = prepare_store(negotiated((CT, IMPLICIT)), ds)
    assert prepared.context.transfer_syntax == IMPLICIT
    assert bytes(prepared.dataset) == bytes(encode_dataset(ds, IMPLICIT))
    del ds.SOPInstanceUID
    with pytest.raises(ValueError, match="SOP Instance UID"):
        prepare_store(negotiated((CT, IMPLICIT)), ds)
    with pytest.raises(TypeError):
        prepare_store(negotiated((CT, IMPLICIT)), 42)  # type: ignore[arg-type]


def test_query_dataset_and_models():
    q = query_dataset({"QueryRetrieveLevel": "SERIES", "PatientID": None, "Modality": "CT",
                       0x0020000E: ""})
    assert q.QueryRetrieveLevel == "SERIES" and q.Modality == "CT" and "PatientID" in q
    assert 0x0020000E in q
    same = Dataset()
    assert query_dataset(same) is same
    with pytest.raises(TypeError):
        query_dataset(["PatientID"])  # type: ignore[arg-type]
    assert _find_sop_class("Patient") == FIND_MODELS["patient"] == "1.2.840.10008.5.1.4.1.2.1.1"
    assert _find_sop_class("study") == "1.2.840.10008.5.1.4.1.2.2.1"
    assert _find_sop_class("worklist") == "1.2.840.10008.5.1.4.31"
    assert _find_sop_class("1.2.3") == "1.2.3"
    with pytest.raises(ValueError, match="model"):
        _find_sop_class("series")


def test_a_file_whose_meta_names_the_wrong_encoding_is_decoded_not_sent_raw(tmp_path):
    from dicomnet.dicom.writer import encode_file_meta

    ds = read_file(data("CT_small.dcm"))
    liar = tmp_path / "liar.dcm"             # says Explicit VR LE, holds Implicit VR LE
    liar.write_bytes(bytes(128) + b"DICM" + bytes(encode_file_meta(ds, EXPLICIT))
                     + bytes(encode_dataset(ds, IMPLICIT)))
    assert read_file(liar).PatientName == ds.PatientName      # the reader trusts the bytes
    prepared = prepare_store(negotiated((CT, EXPLICIT)), liar)
    assert prepared.mapping is None and prepared.context.transfer_syntax == EXPLICIT
    as_implicit = read_dataset(bytes(encode_dataset(ds, IMPLICIT)), transfer_syntax=IMPLICIT)
    assert bytes(prepared.dataset) == bytes(encode_dataset(as_implicit, EXPLICIT))
    implicit = prepare_store(negotiated((CT, IMPLICIT)), liar)   # really implicit: re-encoded as such
    assert bytes(implicit.dataset) == bytes(encode_dataset(ds, IMPLICIT))


# ------------------------------------------------- the plain-file fast path
def _general_head(raw):
    """prepare_store's general reading of a file, when it would send the
    bytes as they are: (offset, SOP Class, SOP Instance, syntax), else None."""
    from dicomnet.dimse.scu import _read_head

    head = _read_head(raw)
    return head if head is not None and head[1] and head[2] and head[3] else None


def _agree(raw) -> bool:
    """The fast path answers as the general path does, or leaves it the file.
    True when it answered."""
    from dicomnet.dimse.scu import _plain_head
    from dicomnet.errors import DicomParseError

    plain = _plain_head(raw)
    try:
        general = _general_head(raw)
    except DicomParseError:
        assert plain is None
        return False
    assert plain is None or plain == general, (plain, general)
    return plain is not None


def test_the_fast_path_reads_every_test_file_as_the_general_path_does():
    import glob
    import os

    folder = os.path.join(os.path.dirname(pydicom_data.__file__), "test_files")
    paths = [p for p in glob.glob(os.path.join(folder, "**", "*"), recursive=True)
             if os.path.isfile(p) and not p.endswith((".gz", ".json", ".txt", ".dump", ".icc"))]
    if len(paths) < 50:
        pytest.skip("pydicom's test files are not installed")
    answered = 0
    for path in paths:
        with open(path, "rb") as f:
            answered += _agree(f.read())
    assert answered >= len(paths) // 2      # the usual file takes the fast path


def _file_bytes(syntax: str) -> bytes:
    from dicomnet.dicom.writer import encode_file_meta

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.2.1125.1.42"
    ds.PatientName = "Doe^Jane"
    ds.Rows = 2
    return bytes(128) + b"DICM" + bytes(encode_file_meta(ds, syntax)) + bytes(encode_dataset(ds, syntax))


@pytest.mark.parametrize("syntax", [IMPLICIT, EXPLICIT, BIG])
def test_the_fast_path_answers_for_the_usual_file(syntax):
    from dicomnet.dimse.scu import _plain_head

    raw = _file_bytes(syntax)
    assert _agree(raw)
    offset, sop_class, sop_instance, own = _plain_head(raw)
    assert (sop_class, sop_instance, own) == (CT, "1.2.826.0.1.3680043.2.1125.1.42", syntax)
    assert raw[offset:offset + 2] == (b"\x08\x00" if syntax != BIG else b"\x00\x08")


def test_the_fast_path_leaves_unusual_files_to_the_general_path():
    from dicomnet.dimse.scu import _plain_head

    raw = bytearray(_file_bytes(EXPLICIT))
    assert _plain_head(bytes(raw)) is not None
    assert _plain_head(bytes(raw[128:])) is None                  # no preamble
    assert _plain_head(bytes(raw[:150])) is None                  # cut inside the File Meta
    wrong = raw.replace(EXPLICIT.encode() + b"\0", IMPLICIT.encode() + b"\0\0\0")   # meta names the wrong encoding
    assert _plain_head(bytes(wrong)) is None and _agree(bytes(wrong)) is False
    two = raw.replace(b"1.2.826.0.1.3680043.2.1125.1.42", b"1.2.826.0.1.3680043.2.1125.1\\4")
    assert _plain_head(bytes(two)) is None                        # a backslash: not one plain value


@settings(max_examples=300, deadline=None)
@given(syntax=st.sampled_from([IMPLICIT, EXPLICIT, BIG]), data=st.data())
def test_the_fast_path_never_disagrees_on_damaged_heads(syntax, data):
    raw = bytearray(_file_bytes(syntax))
    for _ in range(data.draw(st.integers(0, 4))):
        at = data.draw(st.integers(128, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(130, len(raw)))
    _agree(bytes(raw[:cut]))


def test_a_file_meta_uid_with_a_binary_vr_is_not_taken_for_text(tmp_path):
    import struct

    def short(element, vr, value):
        return struct.pack("<HH2sH", 2, element, vr, len(value)) + value

    ds = Dataset()
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = "1.2.3.4"
    body = bytes(encode_dataset(ds, EXPLICIT))
    meta = (short(0x0002, b"UI", CT.encode() + b"\0")
            + struct.pack("<HH2s2xI", 2, 0x0003, b"OB", 8) + b"1.2.3.4\0"      # a UID stored as OB
            + short(0x0010, b"UI", EXPLICIT.encode() + b"\0"))
    path = tmp_path / "odd.dcm"
    path.write_bytes(bytes(128) + b"DICM" + meta + body)
    prepared = prepare_store(negotiated((CT, EXPLICIT)), str(path))
    # The data set's own UIDs; the unusable File Meta value did not get in the way.
    assert (prepared.sop_class_uid, prepared.sop_instance_uid) == (CT, "1.2.3.4")
    prepared.close()


def test_reply_spin_lengthens_a_busy_poll_only_while_a_response_is_due():
    from types import SimpleNamespace

    from dicomnet.dimse.scu import _REPLY_SPIN, reply_spin

    for before, during in ((50e-6, _REPLY_SPIN), (0.0, 0.0), (5e-3, 5e-3)):
        assoc = SimpleNamespace(_driver=SimpleNamespace(busy_poll=before))
        with reply_spin(assoc):
            assert assoc._driver.busy_poll == during      # off stays off; a longer budget stays
        assert assoc._driver.busy_poll == before
    assoc = SimpleNamespace(_driver=SimpleNamespace(busy_poll=50e-6))
    with pytest.raises(KeyError), reply_spin(assoc):
        raise KeyError("the wait failed")
    assert assoc._driver.busy_poll == 50e-6


@pytest.mark.parametrize("rtt, budget", [
    (None, 1 << 20),            # the system does not say: 1 MiB
    (30e-6, 1 << 20),           # loopback
    (0.5e-3, 1 << 20),          # a LAN: 625 KB at 10 Gbit/s, less than 1 MiB
    (0.002, 2_500_000),         # from ~0.84 ms on, what 10 Gbit/s holds in the round trip
    (0.020, 25_000_000),
])
def test_window_bytes_is_1_mib_or_what_the_path_holds(rtt, budget):
    from types import SimpleNamespace

    assoc = SimpleNamespace(_driver=SimpleNamespace(path_rtt=lambda: rtt))
    assert window_bytes(assoc) == budget
    assert window_bytes(SimpleNamespace(_driver=SimpleNamespace())) == 1 << 20     # a driver without the measure
