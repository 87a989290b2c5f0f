"""The seven PDUs: hand-built vectors, round trips, permissive/strict rules, malformed input."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dicomnet.errors import PDUError
from dicomnet.pdu import (
    PDV,
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    AReleaseRQ,
    PDataTF,
    PDUReader,
    PresentationContextRQ,
    UserIdentityAC,
    UserIdentityRQ,
    UserInformation,
    decode_pdu,
    encode_pdu,
    validate_ae_title,
)
from dicomnet.pdu import pdus

try:
    from tests.pdu import vectors as V
except ImportError:  # pytest run from outside the project root
    import vectors as V  # type: ignore[no-redef]

E = V.expected()
VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT = "1.2.840.10008.1.2"


def split(raw: bytes) -> tuple[int, memoryview]:
    """PDU type and body of one whole PDU, checking the vector's length field."""
    pdu_type, _, length = struct.unpack(">BBL", raw[:6])
    assert length == len(raw) - 6, "vector length field disagrees with its bytes"
    return pdu_type, memoryview(raw)[6:]


def rq(contexts=None, **kw) -> AAssociateRQ:
    contexts = contexts if contexts is not None else (PresentationContextRQ(1, VERIFICATION, (IMPLICIT,)),)
    return AAssociateRQ("ANY-SCP", "ECHOSCU", contexts, UserInformation(16384, "1.2.3"), **kw)


# ------------------------------------------------------------ vectors
@pytest.mark.parametrize("name", list(V.ALL_PDUS))
def test_vector_decodes_to_expected(name):
    assert decode_pdu(*split(V.ALL_PDUS[name])) == E[name]


@pytest.mark.parametrize("name", [n for n in V.ALL_PDUS if n != "P-DATA-TF"])
def test_expected_encodes_to_vector(name):
    assert encode_pdu(E[name]) == V.ALL_PDUS[name]


def test_pdata_decodes_to_views_into_the_body():
    body = bytearray(split(V.P_DATA_TF)[1])
    pdu = decode_pdu(4, memoryview(body))
    assert isinstance(pdu, PDataTF)
    assert [(p.context_id, p.is_command, p.is_last, bytes(p.data)) for p in pdu.pdvs] == [
        (1, True, True, b"ABCD"),
        (1, False, False, b"xyz"),
    ]
    body[6] = ord("Z")  # no copy: the PDV sees the change
    assert bytes(pdu.pdvs[0].data) == b"ZBCD"


def test_pdata_cannot_be_encoded_with_encode_pdu():
    with pytest.raises(TypeError, match="fragment"):
        encode_pdu(E["P-DATA-TF"])


def test_descriptions():
    assert E["A-ASSOCIATE-RJ"].description == (
        "rejected-permanent by the DICOM UL service-user: called-AE-title-not-recognized"
    )
    rj = AAssociateRJ(AAssociateRJ.RESULT_REJECTED_TRANSIENT, 3, AAssociateRJ.REASON_LOCAL_LIMIT_EXCEEDED)
    assert rj.description == (
        "rejected-transient by the DICOM UL service-provider (Presentation related function): local-limit-exceeded"
    )
    assert "protocol-version-not-supported" in AAssociateRJ(1, 2, 2).description
    assert "reserved" in AAssociateRJ(1, 1, 5).description
    assert E["A-ABORT"].description == "aborted by the DICOM UL service-provider: invalid-PDU-parameter value"
    assert AAbort().description == "aborted by the DICOM UL service-user"
    assert pdus.RJ_REASON_CALLED_AE_NOT_RECOGNIZED == 7 and pdus.ABORT_REASON_UNEXPECTED_PDU == 2


def test_ac_round_trip_and_reserved_ae_titles_not_tested():
    raw = bytearray(V.ASSOCIATE_AC)
    raw[10:42] = b"\x01" * 32  # junk in the reserved (echo) fields
    ac = decode_pdu(*split(bytes(raw)))
    assert isinstance(ac, AAssociateAC)
    assert ac.presentation_contexts == E["A-ASSOCIATE-AC"].presentation_contexts


def test_ae_titles_stripped_on_decode():
    raw = bytearray(V.ASSOCIATE_RQ)
    raw[10:26] = b"  PACS\x00         "
    assert decode_pdu(*split(bytes(raw))).called_ae == "PACS"


@pytest.mark.parametrize("title", ["", "    ", "SEVENTEEN_CHARS__", "BACK\\SLASH", "TAB\tTAB", "CAF\u00c9"])
def test_bad_ae_titles_refused_on_encode(title):
    with pytest.raises(PDUError):
        encode_pdu(AAssociateRQ(title, "ME", rq().presentation_contexts, UserInformation()))
    with pytest.raises(PDUError):
        validate_ae_title(title)


def test_ae_title_padding():
    raw = encode_pdu(AAssociateRQ(" A ", "B" * 16, rq().presentation_contexts, UserInformation()))
    assert raw[10:26] == b"A" + b" " * 15 and raw[26:42] == b"B" * 16


def test_unknown_variable_items_are_skipped():
    pdu_type, body = split(V.ASSOCIATE_RQ)
    extra = b"\x60\x00\x00\x02\xab\xcd"  # an item type PS3.8 does not define
    body = bytes(body[:68]) + extra + bytes(body[68:])
    assert decode_pdu(pdu_type, body) == E["A-ASSOCIATE-RQ"]


def test_protocol_version_is_exposed_not_refused():
    raw = bytearray(V.ASSOCIATE_RQ)
    raw[6:8] = b"\x00\x02"
    assert decode_pdu(*split(bytes(raw))).protocol_version == 2


def test_context_id_problems_decoded_and_refused_on_encode():
    ts = (IMPLICIT,)
    bad = rq((PresentationContextRQ(2, VERIFICATION, ts), PresentationContextRQ(3, VERIFICATION, ts),
              PresentationContextRQ(3, VERIFICATION, ts)))
    # Build the wire bytes by hand with the good encoder and patch the ids.
    good = encode_pdu(rq(tuple(PresentationContextRQ(i, VERIFICATION, ts) for i in (1, 3, 5))))
    raw = bytearray(good)
    offsets = [i for i in range(74, len(raw)) if raw[i] == 0x20 and raw[i + 4] in (1, 3, 5) and raw[i + 1] == 0]
    for off, new in zip(offsets, (2, 3, 3)):
        raw[off + 4] = new
    decoded = decode_pdu(*split(bytes(raw)))
    assert decoded == bad
    assert decoded.context_id_problems() == ["context id 2 is even", "context id 3 used 2 times"]
    with pytest.raises(PDUError, match="even"):
        encode_pdu(bad)
    many = rq(tuple(PresentationContextRQ(1, VERIFICATION, ts) for _ in range(129)))
    assert "129 presentation contexts, at most 128 allowed" in many.context_id_problems()
    assert rq(()).context_id_problems() == ["no presentation context"]
    assert rq().context_id_problems() == []


def test_user_identity_side_is_checked():
    with pytest.raises(PDUError):
        AAssociateRQ("A", "B", (), UserInformation(user_identity=UserIdentityAC(b"x")))
    with pytest.raises(PDUError):
        AAssociateAC("A", "B", (), UserInformation(user_identity=UserIdentityRQ(1, False, b"x")))


def test_pdv_wraps_any_buffer():
    pdv = PDV(1, False, True, b"abc")
    assert isinstance(pdv.data, memoryview) and bytes(pdv.data) == b"abc"
    with pytest.raises(PDUError):
        PDV(300, False, True, b"")


# ------------------------------------------------------------ malformed PDUs
def _rq_body() -> bytes:
    return bytes(split(V.ASSOCIATE_RQ)[1])


MALFORMED = {
    "unknown type 0": (0x00, b"\x00\x00\x00\x00"),
    "unknown type 8": (0x08, b"\x00\x00\x00\x00"),
    "RJ too short": (0x03, b"\x00\x01\x01"),
    "RJ too long": (0x03, b"\x00\x01\x01\x07\x00"),
    "release RQ empty": (0x05, b""),
    "release RP too long": (0x06, b"\x00" * 5),
    "abort too short": (0x07, b"\x00\x00"),
    "P-DATA empty": (0x04, b""),
    "P-DATA PDV length 1": (0x04, b"\x00\x00\x00\x01\x01"),
    "P-DATA PDV length 0": (0x04, b"\x00\x00\x00\x00"),
    "P-DATA PDV overruns": (0x04, b"\x00\x00\x00\x09\x01\x00abc"),
    "P-DATA truncated PDV header": (0x04, b"\x00\x00\x00\x03\x01\x00a\x00\x00"),
    "RQ fixed fields truncated": (0x01, _rq_body()[:67]),
    "RQ item truncated": (0x01, _rq_body()[:-1]),
    "RQ stray bytes": (0x01, _rq_body() + b"\x50\x00"),
    "RQ without application context": (0x01, _rq_body()[:68] + _rq_body()[93:]),
    "RQ two user informations": (0x01, _rq_body() + V.USER_INFORMATION_RQ_ITEM),
    "RQ two application contexts": (0x01, _rq_body()[:93] + V.APPLICATION_CONTEXT_ITEM + _rq_body()[93:]),
    "RQ zero-length application context": (0x01, _rq_body()[:68] + b"\x10\x00\x00\x00" + _rq_body()[93:]),
    "RQ non-ASCII AE title": (0x01, _rq_body()[:4] + b"\xff" * 16 + _rq_body()[20:]),
    "AC with RQ presentation context": (0x02, _rq_body()),
}


@pytest.mark.parametrize("pdu_type, body", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_pdus_raise_pdu_error(pdu_type, body):
    with pytest.raises(PDUError):
        decode_pdu(pdu_type, body)


def test_rq_without_user_information_is_taken_as_an_empty_one():
    # Required by PS3.8 9.3.2, but an empty one is taken, so none is too (dcmtk, pynetdicom).
    rq = decode_pdu(0x01, _rq_body()[:-42])
    assert rq.user_information == UserInformation()
    assert rq.presentation_contexts


def test_item_length_overrun_names_the_item():
    body = bytearray(_rq_body())
    body[68 + 2 : 68 + 4] = b"\x00\xff"  # application context item claims 255 bytes
    # The claim fits inside the PDU, so it now swallows the following items.
    with pytest.raises(PDUError):
        decode_pdu(1, bytes(body))
    body[68 + 2 : 68 + 4] = b"\xff\xff"
    with pytest.raises(PDUError, match="item 10H at offset 0 claims 65535 bytes"):
        decode_pdu(1, bytes(body))


# ------------------------------------------------------------ round trips and fuzzing
uids = st.lists(st.integers(0, 99999), min_size=2, max_size=6).map(lambda xs: ".".join(map(str, xs)))
ae = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="\\"),
             min_size=1, max_size=16)


@settings(max_examples=200, deadline=None)
@given(
    called=ae,
    calling=ae,
    ids=st.lists(st.integers(0, 127), min_size=1, max_size=10, unique=True),
    abstract=uids,
    ts=st.lists(uids, min_size=1, max_size=3).map(tuple),
    max_length=st.integers(0, 2**32 - 1),
    name=st.none() | st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789", min_size=1, max_size=16),
    identity=st.none() | st.builds(UserIdentityRQ, st.integers(1, 5), st.booleans(), st.binary(max_size=40),
                                   st.binary(max_size=40)),
)
def test_rq_round_trip(called, calling, ids, abstract, ts, max_length, name, identity):
    pcs = tuple(PresentationContextRQ(2 * i + 1, abstract, ts) for i in ids)
    ui = UserInformation(max_length, "1.2.3", name, user_identity=identity)
    pdu = AAssociateRQ(called, calling, pcs, ui)
    raw = encode_pdu(pdu)
    assert decode_pdu(*split(raw)) == pdu


@settings(max_examples=500, deadline=None)
@given(pdu_type=st.integers(0, 9), body=st.binary(max_size=300))
def test_random_bodies_only_raise_pdu_error(pdu_type, body):
    try:
        decode_pdu(pdu_type, body)
    except PDUError:
        pass


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_mutated_vectors_only_raise_pdu_error(data):
    raw = bytearray(data.draw(st.sampled_from([V.ASSOCIATE_RQ, V.ASSOCIATE_AC])))
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(6, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(6, len(raw)))
    try:
        decode_pdu(raw[0], memoryview(raw)[6:cut])
    except PDUError:
        pass


def test_whole_vectors_through_the_reader():
    reader = PDUReader()
    reader.feed(b"".join(V.ALL_PDUS.values()))
    decoded = []
    while (item := reader.next_pdu()) is not None:
        decoded.append(decode_pdu(*item))
    assert decoded == [E[n] for n in V.ALL_PDUS]
    assert isinstance(decoded[4], AReleaseRQ)


@settings(max_examples=200, deadline=None)
@given(
    results=st.lists(st.integers(0, 4), min_size=0, max_size=8),
    ts=uids,
    roles=st.lists(st.tuples(uids, st.booleans(), st.booleans()), max_size=3),
    async_ops=st.none() | st.builds(pdus._it.AsyncOperationsWindow, st.integers(0, 65535), st.integers(0, 65535)),
    response=st.none() | st.binary(max_size=50).map(UserIdentityAC),
    version=st.integers(0, 65535),
)
def test_ac_round_trip(results, ts, roles, async_ops, response, version):
    pcs = tuple(
        pdus._it.PresentationContextAC(2 * i + 1, r, ts if r == 0 else None) for i, r in enumerate(results)
    )
    ui = UserInformation(
        0, "1.2.3", async_ops=async_ops, role_selections=tuple(pdus._it.RoleSelection(*r) for r in roles),
        user_identity=response,
    )
    pdu = AAssociateAC("CALLED", "CALLING", pcs, ui, protocol_version=version)
    assert decode_pdu(*split(encode_pdu(pdu))) == pdu


def test_pynetdicom_reads_our_pdus_the_same_way():
    """An independent implementation agrees with our bytes (pynetdicom, test-only dependency)."""
    pn = pytest.importorskip("pynetdicom.pdu")
    raw = encode_pdu(
        AAssociateRQ("ANY-SCP", "ECHOSCU", E["A-ASSOCIATE-RQ"].presentation_contexts, E["user_information_rq_all"])
    )
    theirs = pn.A_ASSOCIATE_RQ()
    theirs.decode(raw)
    assert (theirs.called_ae_title, theirs.calling_ae_title) == ("ANY-SCP", "ECHOSCU")
    assert theirs.encode() == raw  # their re-encoding is byte-identical to ours
    ac = pn.A_ASSOCIATE_AC()
    ac.decode(V.ASSOCIATE_AC)
    contexts = ac.presentation_context
    assert [(c.context_id, c.result, c.transfer_syntax) for c in contexts][:1] == [(1, 0, IMPLICIT)]
    assert contexts[1].result == 3
