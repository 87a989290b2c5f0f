"""A pynetdicom SCU negotiating association options against our Server.

pynetdicom runs in this process (it is only a client; our Server serves on
its own threads). Every association records the raw PDUs pynetdicom received
and sent (``EVT_DATA_RECV``/``EVT_DATA_SENT``), so the tests check what went
over the wire -- the A-ASSOCIATE-AC/RJ fields, the P-DATA-TF lengths -- as
well as what pynetdicom made of it and what our handlers were told
(:class:`~dicomnet.interfaces.AssociationInfo`, ``ctx``).

Covered: User Identity (PS3.7 D.3.3.7), SCP/SCU Role Selection (D.3.3.4) and
a C-GET that relies on it, SOP Class (Common) Extended Negotiation (D.3.3.5,
D.3.3.6), the Asynchronous Operations Window (D.3.3.3), presentation context
results (PS3.8 9.3.3.2), Maximum Length (PS3.8 D.1) and the implementation
identification (D.3.3.2).
"""
from __future__ import annotations

import time
import uuid
import zlib
from collections.abc import Iterator
from copy import deepcopy
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dicomnet import Dataset, Server, write_file
from dicomnet.dicom.writer import encode_dataset
from dicomnet.interfaces import AssociationInfo
from dicomnet.pdu.items import SOPClassExtendedNegotiation, UserIdentityRQ
from dicomnet.pdu.negotiation import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, default_supported
from dicomnet.samples.synthetic import generate
from dicomnet.types.sop_classes import is_storage_sop_class

from .peers import HOST, record_started, require

pytest.importorskip("pynetdicom")

from pydicom.dataset import Dataset as PyDataset  # noqa: E402
from pydicom.dataset import FileMetaDataset  # noqa: E402
from pydicom.filebase import DicomBytesIO  # noqa: E402
from pydicom.filereader import read_dataset as py_read_dataset  # noqa: E402
from pydicom.sequence import Sequence as PySequence  # noqa: E402
from pydicom.uid import UID  # noqa: E402
from pynetdicom import AE, build_context, build_role, evt  # noqa: E402
from pynetdicom.dsutils import encode as pynetdicom_encode  # noqa: E402
from pynetdicom.pdu_primitives import (  # noqa: E402
    AsynchronousOperationsWindowNegotiation,
    SOPClassCommonExtendedNegotiation,
    SOPClassExtendedNegotiation as PySOPClassExtendedNegotiation,
    UserIdentityNegotiation,
)

IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
DEFLATED = "1.2.840.10008.1.2.1.99"
BIG = "1.2.840.10008.1.2.2"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
VERIFICATION = "1.2.840.10008.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
MF_SC = "1.2.840.10008.5.1.4.1.1.7.3"        # Multi-frame Grayscale Word SC
STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
PATIENT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
STUDY_GET = "1.2.840.10008.5.1.4.1.2.2.3"
STORAGE_SERVICE_CLASS = "1.2.840.10008.4.2"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
UNKNOWN_CLASS = "1.2.826.0.1.3680043.9.9999.17"   # no SOP class of ours (nor anyone's)

#: pynetdicom's own default Maximum Length (its AE.associate(max_pdu=) default).
PYNETDICOM_MAX_PDU = 16382

# A-ASSOCIATE-AC/RJ, P-DATA-TF PDU types and User Information sub-item types.
ASSOCIATE_AC, ASSOCIATE_RJ, P_DATA_TF = 0x02, 0x03, 0x04
ASYNC_WINDOW, ROLE_SELECTION, SOP_EXTENDED, COMMON_EXTENDED, USER_IDENTITY_AC = 0x53, 0x54, 0x56, 0x57, 0x59


# ------------------------------------------------------------------ helpers
class Wire:
    """The raw PDUs pynetdicom received and sent on one association."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.sent: list[bytes] = []

    def handlers(self) -> list[Any]:
        return [(evt.EVT_DATA_RECV, lambda event: self.received.append(bytes(event.data))),
                (evt.EVT_DATA_SENT, lambda event: self.sent.append(bytes(event.data)))]

    def first(self, pdu_type: int) -> bytes:
        found = [pdu for pdu in self.received if pdu[0] == pdu_type]
        assert found, f"pynetdicom received no PDU of type {pdu_type:02X}H"
        return found[0]

    def pdata_lengths(self, *, sent: bool = False) -> list[int]:
        """The PDU-length field of every P-DATA-TF received (or sent)."""
        return [int.from_bytes(pdu[2:6], "big") for pdu in (self.sent if sent else self.received)
                if pdu[0] == P_DATA_TF]

    def ac_items(self) -> list[tuple[int, bytes]]:
        """The A-ASSOCIATE-AC's items (after its 68 fixed bytes) as (type, value)."""
        return _items(self.first(ASSOCIATE_AC)[74:])

    def ac_results(self) -> dict[int, int]:
        """Presentation context id -> result/reason, as the AC put them (PS3.8 Table 9-18)."""
        return {value[0]: value[2] for kind, value in self.ac_items() if kind == 0x21}

    def ac_user_items(self, kind: int | None = None) -> list[tuple[int, bytes]]:
        """The AC's User Information sub-items, all or those of ``kind``."""
        [user] = [value for k, value in self.ac_items() if k == 0x50]
        return [(k, v) for k, v in _items(user) if kind is None or k == kind]

    def ac_roles(self) -> dict[str, tuple[int, int]]:
        """SOP class -> (SCU role, SCP role) of the AC's Role Selection sub-items."""
        out = {}
        for _, value in self.ac_user_items(ROLE_SELECTION):
            n = int.from_bytes(value[:2], "big")
            out[value[2:2 + n].decode("ascii")] = (value[2 + n], value[3 + n])
        return out

    def ac_extended(self) -> dict[str, bytes]:
        """SOP class -> service-class-application-information of the AC's
        SOP Class Extended Negotiation sub-items."""
        out = {}
        for _, value in self.ac_user_items(SOP_EXTENDED):
            n = int.from_bytes(value[:2], "big")
            out[value[2:2 + n].decode("ascii")] = value[2 + n:]
        return out


def _items(data: bytes) -> list[tuple[int, bytes]]:
    """A run of PS3.8 items (type, reserved, 2-byte length, value) as (type, value)."""
    out, pos = [], 0
    while pos < len(data):
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        out.append((data[pos], data[pos + 4:pos + 4 + length]))
        pos += 4 + length
    assert pos == len(data), "item lengths do not add up"
    return out


class Recorder:
    """A handler that keeps what it is told: associations, C-ECHO and C-STORE contexts, data sets."""

    def __init__(self) -> None:
        self.associations: list[AssociationInfo] = []
        self.echoes: list[Any] = []
        self.stored: list[tuple[Any, Dataset]] = []

    def on_association(self, info: AssociationInfo) -> None:
        self.associations.append(info)

    def first_association(self, timeout: float = 5.0) -> AssociationInfo:
        """The first association's info. The Server calls ``on_association``
        after its A-ASSOCIATE-AC went out, so the requestor can be established
        a moment before the handler has run."""
        deadline = time.monotonic() + timeout
        while not self.associations and time.monotonic() < deadline:
            time.sleep(0.001)
        return self.associations[0]

    def on_echo(self, ctx: Any) -> None:
        self.echoes.append(ctx)

    def on_store(self, ctx: Any, ds: Dataset) -> None:
        self.stored.append((ctx, ds))


class GetSCP(Recorder):
    """A C-GET SCP with nothing to send: having ``on_get`` makes the Server
    accept the requestor's SCP role for the storage classes."""

    def on_get(self, ctx: Any, query: Dataset) -> list[Any]:
        return []


class Harness:
    """Our Servers and pynetdicom's associations for one test; all stopped at the end."""

    def __init__(self) -> None:
        self.servers: list[Server] = []
        self.associations: list[Any] = []

    def server(self, handler: Any = None, **kw: Any) -> Server:
        kw.setdefault("read_timeout", 10)
        kw.setdefault("dimse_timeout", 10)
        srv = Server("DICOMNET", handler, **kw).start(HOST, 0)
        self.servers.append(srv)
        return srv

    def associate(self, srv: Server, contexts: list[tuple[str, list[str]]], *, ext_neg: list[Any] | None = None,
                  max_pdu: int = PYNETDICOM_MAX_PDU, handlers: list[Any] | None = None,
                  implementation: tuple[str, str | None] | None = None) -> tuple[Any, Wire]:
        """pynetdicom (AE ``PYNETDICOM``) proposes ``contexts`` (abstract syntax,
        transfer syntaxes) to ``srv``; returns the association and its Wire."""
        ae = AE("PYNETDICOM")
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
        if implementation is not None:
            ae.implementation_class_uid, ae.implementation_version_name = implementation
        wire = Wire()
        assoc = ae.associate(HOST, srv.port, [build_context(a, list(ts)) for a, ts in contexts], ae_title="DICOMNET",
                             max_pdu=max_pdu, ext_neg=ext_neg or [], evt_handlers=wire.handlers() + (handlers or []))
        self.associations.append(assoc)
        if assoc.is_established:
            record_started("pynetdicom")
        return assoc, wire

    def close(self) -> None:
        try:
            for assoc in self.associations:
                if assoc.is_established:
                    assoc.release()
        finally:
            for srv in self.servers:
                srv.shutdown()


@pytest.fixture
def harness() -> Iterator[Harness]:
    require("pynetdicom")
    h = Harness()
    try:
        yield h
    finally:
        h.close()


def user_identity(kind: int, primary: bytes, secondary: bytes = b"", positive: bool = True) -> UserIdentityNegotiation:
    item = UserIdentityNegotiation()
    item.user_identity_type = kind
    item.positive_response_requested = positive
    item.primary_field = primary
    if kind == 2:
        item.secondary_field = secondary
    return item


def window(invoked: int, performed: int) -> AsynchronousOperationsWindowNegotiation:
    item = AsynchronousOperationsWindowNegotiation()
    item.maximum_number_operations_invoked = invoked
    item.maximum_number_operations_performed = performed
    return item


def uid() -> str:
    return f"2.25.{uuid.uuid4().int}"


def py_image(sop_class: str, ts: str, rows: int = 16, cols: int = 8) -> PyDataset:
    """A pydicom image data set for pynetdicom to send, with its pixels as a
    signed ramp stored in ``ts``'s byte order, and a few VRs that byte order
    and deflation touch (PN in Latin-1, DS/FD/SS/US/AT values, a sequence)."""
    ds = PyDataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID(ts)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = UID(sop_class)
    ds.SOPInstanceUID = UID(uid())
    ds.PatientName = "Müller^Jürgen"
    ds.PatientID = "PID-1"
    ds.StudyInstanceUID = UID(uid())
    ds.ImagePositionPatient = [-125.5, 0, 33.25]
    ds.InstanceNumber = 7
    ds.SliceThickness = "1.25"
    item = PyDataset()
    item.CodeValue = "113691"
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = "IHE Protocol"
    item.SingleCollimationWidth = 2.5        # FD, in a sequence item
    ds.ProcedureCodeSequence = PySequence([item])
    ds.add_new(0x00209165, "AT", [0x00100020, 0x0020000D])
    ds.add_new(0x00181310, "US", [0, rows, cols, 0])
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 1
    ds.add_new(0x00280106, "SS", -64)
    ds.PixelData = ramp(rows, cols).astype(">i2" if ts == BIG else "<i2").tobytes()
    return ds


def pydicom_dataset(raw: bytes) -> PyDataset:
    """An Explicit VR Little Endian data set as pydicom reads it."""
    return py_read_dataset(DicomBytesIO(raw), is_implicit_VR=False, is_little_endian=True)


def ramp(rows: int, cols: int) -> np.ndarray:
    return (np.arange(rows * cols) % 4096 - 64).astype(np.int16).reshape(rows, cols)


def explicit_le(ds: PyDataset) -> bytes:
    """``ds`` as pydicom writes it in Explicit VR Little Endian (pixels made little endian too)."""
    copy = deepcopy(ds)
    copy.PixelData = np.frombuffer(ds.PixelData, ">i2" if ds.file_meta.TransferSyntaxUID == BIG else "<i2"
                                   ).astype("<i2").tobytes()
    return pynetdicom_encode(copy, False, True)


# ------------------------------------------------------------ user identity
IDENTITIES = [
    pytest.param(1, b"alice", b"", id="username"),
    pytest.param(2, "jürgen".encode(), b"s3cr3t passcode", id="username+passcode"),
    pytest.param(3, bytes(range(256)) * 8, b"", id="kerberos"),
    pytest.param(4, b"<saml:Assertion>" + b"a" * 20000 + b"</saml:Assertion>", b"", id="saml"),
    pytest.param(5, b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl", b"", id="jwt"),
]
#: What our authenticate hook answers a token-based identity with (a Kerberos
#: server ticket, a SAML response, a JWT); usernames are just accepted.
SERVER_RESPONSES = {3: b"\x6f\x81\x90kerberos-server-ticket",
                    4: b"<samlp:Response>" + b"r" * 9000 + b"</samlp:Response>",
                    5: b"eyJhbGciOiJub25lIn0.eyJzZXJ2ZXIiOiJETkVUIn0."}


@pytest.mark.parametrize("positive", [True, False], ids=["response-requested", "no-response-requested"])
@pytest.mark.parametrize("kind, primary, secondary", IDENTITIES)
def test_user_identity_accepted(harness: Harness, kind: int, primary: bytes, secondary: bytes,
                                positive: bool) -> None:
    """Every identity type reaches ``authenticate`` intact (also a 20 KB SAML
    assertion); the AC carries a User Identity sub-item (59H) exactly when a
    positive response was requested (PS3.7 D.3.3.7), with the hook's server
    response for Kerberos/SAML/JWT and an empty one for usernames, and
    pynetdicom reads it back."""
    seen: list[UserIdentityRQ] = []

    def authenticate(identity: UserIdentityRQ) -> bool | bytes:
        seen.append(identity)
        return SERVER_RESPONSES.get(identity.identity_type, True)

    rec = Recorder()
    srv = harness.server(rec, authenticate=authenticate)
    assoc, wire = harness.associate(srv, [(VERIFICATION, [IMPLICIT])],
                                    ext_neg=[user_identity(kind, primary, secondary, positive)])
    assert assoc.is_established
    assert seen == [UserIdentityRQ(kind, positive, primary, secondary)]
    info = rec.first_association()
    assert len(rec.associations) == 1
    assert info.user_identity == seen[0]
    expected = SERVER_RESPONSES.get(kind, b"") if positive else None
    answered = wire.ac_user_items(USER_IDENTITY_AC)
    if expected is None:
        assert answered == []
        assert assoc.acceptor.user_identity is None
    else:
        assert answered == [(USER_IDENTITY_AC, len(expected).to_bytes(2, "big") + expected)]
        assert assoc.acceptor.user_identity.server_response == expected
    assert info.negotiated.user_identity_response == expected
    assert assoc.send_c_echo().Status == 0x0000


@pytest.mark.parametrize("kind", [1, 2], ids=["username", "username+passcode"])
def test_username_identity_gets_an_empty_server_response(harness: Harness, kind: int) -> None:
    """PS3.7 D.3.3.7.2 (Table D.3-15): the Server-response "shall be zero
    length" when the RQ's User-Identity-Type was 1 or 2. An authenticate hook
    that hands out one session token for every kind of identity must not put
    it into the AC for a username."""
    srv = harness.server(Recorder(), authenticate=lambda identity: b"session-token-42")
    assoc, wire = harness.associate(srv, [(VERIFICATION, [IMPLICIT])],
                                    ext_neg=[user_identity(kind, b"alice", b"passcode")])
    assert assoc.is_established
    assert wire.ac_user_items(USER_IDENTITY_AC) == [(USER_IDENTITY_AC, b"\x00\x00")]
    assert assoc.acceptor.user_identity.server_response == b""


def test_refused_user_identity_is_rejected(harness: Harness) -> None:
    """``authenticate`` returning False rejects the association before any
    handler sees it; the server goes on accepting good credentials. The
    A-ASSOCIATE-RJ is what PS3.7 D.3.3.7 prescribes for an authorization
    failure: rejected-permanent (1), source "DICOM UL service-provider (ACSE
    related function)" (2), and for that source no-reason-given (1) -- the
    only reason PS3.8 Table 9-21 leaves besides protocol-version."""
    rec = Recorder()
    srv = harness.server(rec, authenticate=lambda identity: identity.secondary_field == b"right")
    refused, wire = harness.associate(srv, [(VERIFICATION, [IMPLICIT])],
                                      ext_neg=[user_identity(2, b"mallory", b"wrong")])
    assert refused.is_rejected and not refused.is_established
    assert rec.associations == []
    accepted, _ = harness.associate(srv, [(VERIFICATION, [IMPLICIT])], ext_neg=[user_identity(2, b"alice", b"right")])
    assert accepted.is_established and rec.first_association() and len(rec.associations) == 1
    rj = wire.first(ASSOCIATE_RJ)
    result, source, reason = rj[7], rj[8], rj[9]
    assert (refused.acceptor.primitive.result, refused.acceptor.primitive.result_source,
            refused.acceptor.primitive.diagnostic) == (result, source, reason)
    assert (result, source, reason) == (1, 2, 1), f"A-ASSOCIATE-RJ result/source/reason {(result, source, reason)}"


def test_user_identity_ignored_without_authenticate(harness: Harness) -> None:
    """A Server without ``authenticate`` does not do user identity: it accepts
    and sends no 59H sub-item even when a response is requested (PS3.7
    D.3.3.7: the requestor then decides whether to go on); the handler still
    sees the identity the requestor sent."""
    rec = Recorder()
    srv = harness.server(rec)
    assoc, wire = harness.associate(srv, [(VERIFICATION, [IMPLICIT])], ext_neg=[user_identity(3, b"ticket")])
    assert assoc.is_established
    assert wire.ac_user_items(USER_IDENTITY_AC) == []
    assert assoc.acceptor.user_identity is None
    assert rec.first_association().user_identity == UserIdentityRQ(3, True, b"ticket")


# ---------------------------------------------------------- role selection
def test_role_selection_answers(harness: Harness) -> None:
    """As a C-GET SCP our Server accepts the requestor's SCP role for storage
    classes. The AC answers each proposal with only roles that were offered
    (PS3.7 D.3.3.4): SCP-only -> (0,1), both -> (1,1), SCU-only -> (1,0);
    for a class where we take no SCP role (a C-FIND model, or MR below when
    ``accept_scp_role`` lists only CT) SCP-only leaves no role, so that
    context is rejected (user-rejection), and both -> (1,0). pynetdicom's
    roles per context are the mirror image of ours."""
    handler = GetSCP()
    srv = harness.server(handler)
    contexts = [(CT, [EXPLICIT]), (MR, [EXPLICIT]), (MF_SC, [EXPLICIT]), (STUDY_FIND, [IMPLICIT]),
                (PATIENT_FIND, [IMPLICIT]), (STUDY_GET, [IMPLICIT])]
    roles = [build_role(CT, scp_role=True), build_role(MR, scu_role=True, scp_role=True),
             build_role(MF_SC, scu_role=True), build_role(STUDY_FIND, scp_role=True),
             build_role(PATIENT_FIND, scu_role=True, scp_role=True)]
    assoc, wire = harness.associate(srv, contexts, ext_neg=roles)
    assert assoc.is_established
    assert wire.ac_roles() == {CT: (0, 1), MR: (1, 1), MF_SC: (1, 0), PATIENT_FIND: (1, 0)}
    assert wire.ac_results() == {1: 0, 3: 0, 5: 0, 7: 1, 9: 0, 11: 0}
    theirs = {str(cx.abstract_syntax): (cx.as_scu, cx.as_scp) for cx in assoc.accepted_contexts}
    assert theirs == {CT: (False, True), MR: (True, True), MF_SC: (True, False), PATIENT_FIND: (True, False),
                      STUDY_GET: (True, False)}
    ours = {c.abstract_syntax: (c.as_scu, c.as_scp) for c in handler.associations[0].negotiated.contexts.values()}
    assert ours == {uid: (scp, scu) for uid, (scu, scp) in theirs.items()}

    only_ct = harness.server(GetSCP(), accept_scp_role=[CT])
    assoc, wire = harness.associate(only_ct, [(CT, [EXPLICIT]), (MR, [EXPLICIT]), (MF_SC, [EXPLICIT])],
                                    ext_neg=[build_role(CT, scu_role=True, scp_role=True),
                                             build_role(MR, scp_role=True),
                                             build_role(MF_SC, scu_role=True, scp_role=True)])
    assert assoc.is_established
    assert wire.ac_roles() == {CT: (1, 1), MF_SC: (1, 0)}
    assert wire.ac_results() == {1: 0, 3: 1, 5: 0}
    assert {str(cx.abstract_syntax): (cx.as_scu, cx.as_scp) for cx in assoc.accepted_contexts} == {
        CT: (True, True), MF_SC: (True, False)}


def test_get_uses_the_negotiated_roles(harness: Harness, tmp_path: Path) -> None:
    """A C-GET whose sub-operations follow the roles: CT (pynetdicom SCP only)
    and MR (both roles) come back as C-STORE sub-operations on those contexts,
    intact; a multi-frame SC instance, for which pynetdicom offered only the
    SCU role, is a failed sub-operation (0xB000, its UID in the Failed SOP
    Instance UID List). With both roles for MR pynetdicom also stores MR to us
    on the same association."""
    ct = next(generate(patients=1, studies=1, series=1, instances=1, rows=64, cols=64, seed=11))
    mr = next(generate(patients=1, studies=1, series=1, instances=1, rows=32, cols=48, modality="MR", seed=12))
    sc = next(generate(patients=1, studies=1, series=1, instances=1, rows=16, cols=16, frames=2, seed=13))
    mr_path = tmp_path / "mr.dcm"
    write_file(mr_path, mr, EXPLICIT)                   # one instance sent from a file, two from Datasets
    originals = {str(ds.SOPInstanceUID): ds for ds in (ct, mr, sc)}
    assert str(sc.SOPClassUID) == MF_SC

    class Source(Recorder):
        def on_get(self, ctx: Any, query: Dataset) -> list[Any]:
            return [ct, mr_path, sc]

    received: list[tuple[int, str, str, bytes]] = []

    def on_c_store(event: Any) -> int:
        received.append((event.context.context_id, str(event.context.abstract_syntax),
                         str(event.context.transfer_syntax), bytes(event.request.DataSet.getvalue())))
        return 0x0000

    source = Source()
    srv = harness.server(source)
    assoc, _ = harness.associate(
        srv, [(STUDY_GET, [IMPLICIT]), (CT, [EXPLICIT]), (MR, [EXPLICIT]), (MF_SC, [EXPLICIT])],
        ext_neg=[build_role(CT, scp_role=True), build_role(MR, scu_role=True, scp_role=True),
                 build_role(MF_SC, scu_role=True)],
        handlers=[(evt.EVT_C_STORE, on_c_store)])
    assert assoc.is_established
    query = PyDataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = str(ct.StudyInstanceUID)
    responses = list(assoc.send_c_get(query, STUDY_GET))
    final, identifier = responses[-1]
    assert [s.Status for s, _ in responses[:-1]] == [0xFF00, 0xFF00]
    assert final.Status == 0xB000
    assert (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations,
            final.NumberOfWarningSuboperations) == (2, 1, 0)
    assert identifier.FailedSOPInstanceUIDList == str(sc.SOPInstanceUID)
    assert [(cid, abstract) for cid, abstract, _, _ in received] == [(3, CT), (5, MR)]
    for _, abstract, ts, raw in received:
        assert ts == EXPLICIT
        got = pydicom_dataset(raw)
        original = originals[str(got.SOPInstanceUID)]
        assert str(got.SOPClassUID) == abstract
        assert raw == bytes(encode_dataset(original, EXPLICIT))
    # MR the other way: pynetdicom is SCU too for MR.
    mine = py_image(MR, EXPLICIT)
    assert assoc.send_c_store(mine).Status == 0x0000
    [(ctx, stored)] = source.stored
    assert bytes(encode_dataset(stored, EXPLICIT)) == explicit_le(mine)
    assert (ctx.context.context_id, ctx.sop_class_uid) == (5, MR)
    assert (ctx.context.as_scu, ctx.context.as_scp) == (True, True)


# ------------------------------------------------------- extended negotiation
def _extended(sop_class: str, info: bytes) -> PySOPClassExtendedNegotiation:
    item = PySOPClassExtendedNegotiation()
    item.sop_class_uid = sop_class
    item.service_class_application_information = info
    return item


def test_sop_class_extended_negotiation(harness: Harness) -> None:
    """The ``extended_negotiation`` hook is asked about each item of an
    accepted SOP class only -- not for a class that was never proposed as a
    context nor for one whose only context was rejected -- and the AC answers
    (56H) exactly the items it returned bytes for (PS3.7 D.3.3.5: at most one
    per SOP class). Without the hook the items are ignored. The handler sees
    every item the requestor sent."""
    asked: list[SOPClassExtendedNegotiation] = []
    replies = {STUDY_FIND: b"\x01\x00\x01", CT: b"\x02\x00\x00\x00\x01\x00"}

    def extended_negotiation(item: SOPClassExtendedNegotiation) -> bytes | None:
        asked.append(item)
        return replies.get(item.sop_class_uid)

    sent = [(STUDY_FIND, b"\x01\x01\x01"), (PATIENT_FIND, b"\x01"), (CT, b"\x02\x00\x00\x00\x01\x00"),
            (MR, b"\x02\x00\x02\x00\x00\x00"), (STUDY_GET, b"\x01")]
    contexts = [(STUDY_FIND, [IMPLICIT]), (PATIENT_FIND, [IMPLICIT]), (CT, [EXPLICIT]), (STUDY_GET, [JPEG_BASELINE])]
    for hook in (extended_negotiation, None):
        rec = Recorder()
        srv = harness.server(rec, extended_negotiation=hook)
        assoc, wire = harness.associate(srv, contexts, ext_neg=[_extended(u, i) for u, i in sent])
        assert assoc.is_established
        assert wire.ac_results() == {1: 0, 3: 0, 5: 0, 7: 4}
        answered = {str(i.sop_class_uid): i.service_class_application_information
                    for i in assoc.acceptor.extended_negotiation if isinstance(i, PySOPClassExtendedNegotiation)}
        raw = wire.ac_extended()
        assert rec.first_association().extended_negotiations == tuple(SOPClassExtendedNegotiation(u, i) for u, i in sent)
        if hook is None:
            assert answered == raw == {}
        else:
            assert asked == [SOPClassExtendedNegotiation(u, i) for u, i in sent[:3]]
            assert answered == raw == replies
            assert rec.first_association().negotiated.extended_negotiations == tuple(
                SOPClassExtendedNegotiation(u, r) for u, r in replies.items())
        assert assoc.send_c_store(py_image(CT, EXPLICIT)).Status == 0x0000


def test_common_extended_negotiation_is_accepted_not_answered(harness: Harness) -> None:
    """SOP Class Common Extended Negotiation items (57H) are RQ-only (PS3.7
    D.3.3.6): the association is accepted, the AC carries none, the handler
    gets them (with their related general SOP classes), and a C-STORE on
    the class they describe works."""
    items = []
    for sop_class, related in ((CT, [ENHANCED_CT]), (UNKNOWN_CLASS, [])):
        item = SOPClassCommonExtendedNegotiation()
        item.sop_class_uid = sop_class
        item.service_class_uid = STORAGE_SERVICE_CLASS
        item.related_general_sop_class_identification = related
        items.append(item)
    rec = Recorder()
    srv = harness.server(rec)
    assoc, wire = harness.associate(srv, [(CT, [EXPLICIT]), (UNKNOWN_CLASS, [EXPLICIT])], ext_neg=items)
    assert assoc.is_established
    assert wire.ac_user_items(COMMON_EXTENDED) == []
    assert wire.ac_results() == {1: 0, 3: 3}       # the unknown class stays unknown (abstract syntax not supported)
    common = rec.first_association().common_extended_negotiations
    assert [(c.sop_class_uid, c.service_class_uid, c.related_general_sop_classes) for c in common] == [
        (CT, STORAGE_SERVICE_CLASS, (ENHANCED_CT,)), (UNKNOWN_CLASS, STORAGE_SERVICE_CLASS, ())]
    assert assoc.send_c_store(py_image(CT, EXPLICIT)).Status == 0x0000
    assert len(rec.stored) == 1


# ------------------------------------------------------- asynchronous window
@pytest.mark.parametrize("invoked, performed", [(5, 3), (0, 0), (1, 4), (40, 0), (1, 1)])
def test_async_operations_window(harness: Harness, invoked: int, performed: int) -> None:
    """The AC's window (PS3.7 D.3.3.3): what we invoke is at most what the
    requestor performs, what we perform at most what it invokes (0 is
    unlimited), capped by our policy; (1, 1) -- fully synchronous -- needs no
    sub-item. pynetdicom reads the same numbers, our side keeps what we may
    invoke, and pynetdicom's C-STOREs all arrive, in order."""
    rec = Recorder()
    srv = harness.server(rec)
    policy = srv.policy

    def at_most(a: int, b: int) -> int:
        return b if a == 0 else a if b == 0 else min(a, b)

    ours = (at_most(policy.max_async_invoked, performed), at_most(invoked, policy.max_async_performed))
    assoc, wire = harness.associate(srv, [(CT, [EXPLICIT])], ext_neg=[window(invoked, performed)])
    assert assoc.is_established
    sub_items = wire.ac_user_items(ASYNC_WINDOW)
    if ours == (1, 1):
        assert sub_items == []
        assert assoc.acceptor.asynchronous_operations == (1, 1)
    else:
        assert sub_items == [(ASYNC_WINDOW, ours[0].to_bytes(2, "big") + ours[1].to_bytes(2, "big"))]
        assert assoc.acceptor.asynchronous_operations == ours
        assert performed == 0 or 0 < ours[0] <= performed
        assert invoked == 0 or 0 < ours[1] <= invoked
    assert rec.first_association().negotiated.max_invoked == ours[0]
    sent = [py_image(CT, EXPLICIT) for _ in range(5)]
    assert [assoc.send_c_store(ds).Status for ds in sent] == [0x0000] * 5
    assert [str(ds.SOPInstanceUID) for _, ds in rec.stored] == [str(ds.SOPInstanceUID) for ds in sent]


# ------------------------------------------------------ presentation contexts
def test_128_presentation_contexts(harness: Harness) -> None:
    """The PS3.8 maximum: 128 contexts with the odd ids 1..255, all accepted,
    each with pynetdicom's first proposed transfer syntax we support; C-ECHO
    on the first and a C-STORE on the last (id 255) arrive on those ids."""
    storage = [u for u in default_supported() if is_storage_sop_class(u) and u != CT]
    contexts = [(VERIFICATION, [IMPLICIT])] + [(u, [DEFLATED, EXPLICIT, IMPLICIT]) for u in storage[:126]]
    contexts.append((CT, [BIG, EXPLICIT]))
    assert len(contexts) == 128
    rec = Recorder()
    srv = harness.server(rec)
    assoc, wire = harness.associate(srv, contexts)
    assert assoc.is_established
    assert wire.ac_results() == {i: 0 for i in range(1, 256, 2)}
    accepted = {cx.context_id: str(cx.transfer_syntax[0]) for cx in assoc.accepted_contexts}
    assert accepted == {1: IMPLICIT, **{i: EXPLICIT for i in range(3, 256, 2)}}
    assert len(rec.first_association().negotiated.contexts) == 128
    assert assoc.send_c_echo().Status == 0x0000
    assert assoc.send_c_store(py_image(CT, EXPLICIT)).Status == 0x0000
    assert rec.echoes[0].context.context_id == 1
    assert (rec.stored[0][0].context.context_id, rec.stored[0][0].transfer_syntax) == (255, EXPLICIT)


def test_context_results(harness: Harness) -> None:
    """One abstract syntax proposed five times gets five answers (PS3.8
    9.3.3.2): each context its own transfer syntax -- the requestor's first
    one we support -- or reason 4 when we support none of its syntaxes; an
    abstract syntax we do not know gets reason 3, whatever its syntaxes. The
    accepted contexts carry C-STOREs in their own transfer syntax."""
    rec = Recorder()
    srv = harness.server(rec)
    contexts = [(CT, [EXPLICIT]), (CT, [IMPLICIT]), (CT, [JPEG_BASELINE]), (CT, [JPEG_BASELINE, IMPLICIT]),
                (CT, [IMPLICIT, EXPLICIT]), (UNKNOWN_CLASS, [EXPLICIT]), (UNKNOWN_CLASS, [JPEG_BASELINE]),
                (MR, [BIG, DEFLATED])]
    assoc, wire = harness.associate(srv, contexts)
    assert assoc.is_established
    assert wire.ac_results() == {1: 0, 3: 0, 5: 4, 7: 0, 9: 0, 11: 3, 13: 3, 15: 4}
    assert {cx.context_id: str(cx.transfer_syntax[0]) for cx in assoc.accepted_contexts} == {
        1: EXPLICIT, 3: IMPLICIT, 7: IMPLICIT, 9: IMPLICIT}
    assert {cx.context_id: cx.result for cx in assoc.rejected_contexts} == {5: 4, 11: 3, 13: 3, 15: 4}
    assert dict(rec.first_association().negotiated.rejected) == {5: 4, 11: 3, 13: 3, 15: 4}
    for ts in (EXPLICIT, IMPLICIT):
        ds = py_image(CT, ts)
        assert assoc.send_c_store(ds).Status == 0x0000
        ctx, got = rec.stored[-1]
        assert (ctx.context.context_id, ctx.transfer_syntax) == ((1, EXPLICIT) if ts == EXPLICIT else (3, IMPLICIT))
        assert bytes(encode_dataset(got, EXPLICIT)) == explicit_le(ds)


def _odd_deflate(ds: PyDataset) -> PyDataset:
    """``ds`` with a PatientID for which the raw deflate stream has an odd
    length, so that pynetdicom pads the data set with one byte."""
    for n in range(200):
        ds.PatientID = f"PID-{n}"
        squeeze = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -zlib.MAX_WBITS)
        raw = pynetdicom_encode(ds, False, True)
        if len(squeeze.compress(raw) + squeeze.flush()) % 2:
            return ds
    raise AssertionError("no odd-length deflate stream found")


@pytest.mark.parametrize("ts", [BIG, DEFLATED], ids=["big-endian", "deflated"])
def test_store_in_big_endian_and_deflated_contexts(harness: Harness, ts: str) -> None:
    """A context accepted with Explicit VR Big Endian or Deflated Explicit VR
    Little Endian carries pynetdicom's C-STORE in that syntax, and the data
    set we hand the handler decodes to what pynetdicom encoded: the same
    bytes once re-encoded in Explicit VR Little Endian, the same pixels (byte
    swapped for big endian; the deflated stream padded to even length)."""
    rec = Recorder()
    srv = harness.server(rec, contexts={CT: [EXPLICIT, BIG, DEFLATED]})
    assoc, wire = harness.associate(srv, [(CT, [ts])])
    assert assoc.is_established and wire.ac_results() == {1: 0}
    ds = py_image(CT, ts, rows=64, cols=32)
    if ts == DEFLATED:
        ds = _odd_deflate(ds)
    assert assoc.send_c_store(ds).Status == 0x0000
    [(ctx, got)] = rec.stored
    assert ctx.transfer_syntax == ts
    assert bytes(encode_dataset(got, EXPLICIT)) == explicit_le(ds)
    assert np.array_equal(got.pixel_array[0], ramp(64, 32))
    assert (str(got.PatientName), got.ImagePositionPatient, got[0x00209165].value) == (
        "Müller^Jürgen", [-125.5, 0.0, 33.25], [0x00100020, 0x0020000D])
    assert got.ProcedureCodeSequence[0].SingleCollimationWidth == 2.5


# ------------------------------------------------------------- maximum length
class Matches(Recorder):
    """C-FIND: ``count`` identifiers of about 3 KB each; C-GET: ``instances``."""

    def __init__(self, count: int, instances: list[Any]) -> None:
        super().__init__()
        self.count = count
        self.instances = instances

    def on_find(self, ctx: Any, query: Dataset) -> Iterator[Dataset]:
        for i in range(self.count):
            ds = Dataset()
            ds.QueryRetrieveLevel = "STUDY"
            ds.StudyInstanceUID = f"1.2.826.0.1.3680043.9.9999.{i}"
            ds.PatientComments = f"{i:05d}" + "c" * 3000
            yield ds

    def on_get(self, ctx: Any, query: Dataset) -> list[Any]:
        return self.instances


@pytest.mark.parametrize("ours, theirs", [(0, 0), (1024, 1024), (None, 1024), (1024, 0)],
                         ids=["unlimited-both", "1024-both", "default-vs-1024", "1024-vs-unlimited"])
def test_maximum_length(harness: Harness, tmp_path: Path, ours: int | None, theirs: int) -> None:
    """Each side's Maximum Length (PS3.8 D.1; 0 is no limit) bounds what the
    other sends: a 4 MiB C-STORE from pynetdicom arrives whole, in PDUs of
    our maximum; 300 C-FIND identifiers of 3 KB and a 0.5 MiB C-GET
    sub-operation (sent from a file) reach pynetdicom in P-DATA-TFs no
    longer than its maximum -- and unfragmented when it has none. pynetdicom
    takes its Maximum Length from ``associate(max_pdu=)``, not from
    ``AE.maximum_pdu_size`` (which is for its acceptor side)."""
    image = next(generate(patients=1, studies=1, series=1, instances=1, rows=512, cols=512, seed=21))
    path = tmp_path / "big.dcm"
    write_file(path, image, EXPLICIT)
    handler = Matches(300, [path])
    srv = harness.server(handler, **({} if ours is None else {"max_pdu": ours}))
    ours = srv.max_pdu
    received: list[bytes] = []

    def on_c_store(event: Any) -> int:
        received.append(bytes(event.request.DataSet.getvalue()))
        return 0x0000

    assoc, wire = harness.associate(srv, [(CT, [EXPLICIT]), (STUDY_FIND, [IMPLICIT]), (STUDY_GET, [IMPLICIT])],
                                    max_pdu=theirs, ext_neg=[build_role(CT, scu_role=True, scp_role=True)],
                                    handlers=[(evt.EVT_C_STORE, on_c_store)])
    assert assoc.is_established
    assert assoc.acceptor.maximum_length == ours
    assert handler.associations[0].negotiated.peer_max_pdu == theirs
    big = py_image(CT, EXPLICIT, rows=1024, cols=2048)
    assert assoc.send_c_store(big).Status == 0x0000
    [(_, stored)] = handler.stored
    assert bytes(stored.PixelData) == big.PixelData
    query = PyDataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = ""
    found = [(s.Status, i) for s, i in assoc.send_c_find(query, STUDY_FIND)]
    assert [s for s, _ in found] == [0xFF00] * 300 + [0x0000]
    assert [i.PatientComments[:5] for _, i in found[:-1]] == [f"{n:05d}" for n in range(300)]
    assert all(len(i.PatientComments) == 3005 for _, i in found[:-1])
    statuses = [s.Status for s, _ in assoc.send_c_get(query, STUDY_GET)]
    assert statuses == [0x0000]
    assert received == [bytes(encode_dataset(image, EXPLICIT))]
    lengths = wire.pdata_lengths()
    if theirs:
        assert max(lengths) == theirs           # fragments fill the peer's maximum, never more
    else:
        assert max(lengths) > len(received[0])  # the whole data set in one PDU
    sent = wire.pdata_lengths(sent=True)
    if ours:
        assert max(sent) == ours
    else:
        assert max(sent) > len(big.PixelData)   # our "no limit" let pynetdicom send the C-STORE whole


def test_smallest_maximum_length(harness: Harness) -> None:
    """7, the smallest Maximum Length that carries data (a 6-byte PDV header
    and one byte), on both sides: every message -- command sets included --
    goes one byte per P-DATA-TF, both ways, and arrives intact."""
    handler = Matches(3, [])
    srv = harness.server(handler, max_pdu=7)
    assoc, wire = harness.associate(srv, [(VERIFICATION, [IMPLICIT]), (CT, [EXPLICIT]), (STUDY_FIND, [IMPLICIT])],
                                    max_pdu=7)
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    ds = py_image(CT, EXPLICIT, rows=4, cols=4)
    assert assoc.send_c_store(ds).Status == 0x0000
    assert bytes(encode_dataset(handler.stored[0][1], EXPLICIT)) == explicit_le(ds)
    query = PyDataset()
    query.QueryRetrieveLevel = "STUDY"
    found = [(s.Status, i) for s, i in assoc.send_c_find(query, STUDY_FIND)]
    assert [s for s, _ in found] == [0xFF00] * 3 + [0x0000]
    assert [i.PatientComments for _, i in found[:-1]] == [f"{n:05d}" + "c" * 3000 for n in range(3)]
    assert set(wire.pdata_lengths()) == set(wire.pdata_lengths(sent=True)) == {7}


# ------------------------------------------------- implementation identity
@pytest.mark.parametrize("class_uid, version", [
    ("1.2.826.0.1.3680043.9.9999.42.7", "PYNET_TEST_16CHR"),
    ("1.2.826.0.1.3680043.9.9999." + "1" * 37, None),          # 64 characters, the most a UID has
], ids=["with-version-name", "64-char-uid-without-version-name"])
def test_implementation_identification(harness: Harness, class_uid: str, version: str | None) -> None:
    """The requestor's Implementation Class UID and Version Name (PS3.7
    D.3.3.2; the name is optional) reach the handler through ``ctx.association``
    as sent -- absent stays None -- and pynetdicom reads ours from the AC."""
    rec = Recorder()
    srv = harness.server(rec)
    assoc, _ = harness.associate(srv, [(VERIFICATION, [IMPLICIT])], implementation=(class_uid, version))
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    [ctx] = rec.echoes
    assert (ctx.calling_ae, ctx.called_ae) == ("PYNETDICOM", "DICOMNET")
    negotiated = ctx.association.negotiated
    assert (negotiated.peer_implementation_class_uid, negotiated.peer_implementation_version_name) == (
        class_uid, version)
    assert ctx.association.rq.user_information.implementation_version_name == version
    assert (assoc.acceptor.implementation_class_uid, assoc.acceptor.implementation_version_name) == (
        IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME)
