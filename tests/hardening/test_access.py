"""Access control over real sockets: calling AE allow-list, peer address
allow-list, the user identity hook (username/passcode and JWT), no secrets in
the logs, and no path built from wire data without validation (store-scp)."""
from __future__ import annotations

import logging
import os
import struct

import pytest

from dicomnet.cli.store_scp import StoreSCPHandler
from dicomnet.client import Client
from dicomnet.dimse.commands import c_store_rq, encode_command
from dicomnet.errors import AssociationAborted, AssociationRejected, PDUError
from dicomnet.pdu.items import UserIdentityRQ
from dicomnet.server import Server

from .conftest import CT, EXPLICIT, VERIFICATION, converse, associate_rq_bytes, echo_ok, record, wait_for
from .test_load import templates

PASSCODE = b"s3cr3t-Passc0de-9431"
JWT = b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJkci5ob3VzZSJ9.c2lnbmF0dXJlLXNlY3JldC03NzE5"
USER_RESPONSE = b"welcome-token-server-side"


def rq_identity(kind: int, primary: bytes, secondary: bytes = b"", positive: bool = False) -> UserIdentityRQ:
    return UserIdentityRQ(kind, positive, primary, secondary)


def test_allowed_calling_aes():
    srv = Server("GUARDED", allowed_calling_aes=["FRIEND"], artim_timeout=0.5)
    srv.start("127.0.0.1", 0)
    try:
        with Client("FRIEND").associate("127.0.0.1", srv.port, "GUARDED", contexts=[VERIFICATION]) as assoc:
            assert assoc.echo() == 0
        for stranger in ("STRANGER", "FRIEND2", "friend"):
            with pytest.raises(AssociationRejected) as info:
                Client(stranger).associate("127.0.0.1", srv.port, "GUARDED", contexts=[VERIFICATION])
            assert (info.value.result, info.value.source, info.value.reason) == (1, 1, 3)
        with pytest.raises(AssociationRejected) as info:   # and the called AE is checked too
            Client("FRIEND").associate("127.0.0.1", srv.port, "SOMEONE", contexts=[VERIFICATION])
        assert (info.value.result, info.value.source, info.value.reason) == (1, 1, 7)
    finally:
        srv.shutdown(5.0)
    record("access", cases=5)


def test_allowed_peers_closes_other_addresses_at_once():
    blocked = Server("PEERS", allowed_peers=["10.0.0.0/8", "192.168.1.7"], artim_timeout=0.5)
    allowed = Server("PEERS", allowed_peers=["127.0.0.0/8"], artim_timeout=0.5)
    blocked.start("127.0.0.1", 0)
    allowed.start("127.0.0.1", 0)
    try:
        answer = converse(blocked.port, associate_rq_bytes(called="PEERS"), wait=3.0)
        assert answer.closed and answer.pdus == [] and answer.elapsed < 0.5, answer
        assert blocked.active_associations == 0
        assert echo_ok(allowed.port, "PEERS")
    finally:
        blocked.shutdown(5.0)
        allowed.shutdown(5.0)
    with pytest.raises(ValueError):
        Server("PEERS", allowed_peers=["not-an-address"])
    record("access", cases=3)


class Identities:
    """authenticate(): user 'alice' with PASSCODE, or the JWT; records the calls."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def __call__(self, identity: UserIdentityRQ) -> bool | bytes:
        self.seen.append(identity.identity_type)
        if identity.identity_type == UserIdentityRQ.USERNAME_PASSCODE:
            ok = identity.primary_field == b"alice" and identity.secondary_field == PASSCODE
        elif identity.identity_type == UserIdentityRQ.JWT:
            ok = identity.primary_field == JWT
        else:
            ok = False
        return USER_RESPONSE if ok else False


@pytest.fixture
def auth_server(caplog):
    caplog.set_level(logging.DEBUG, logger="dicomnet")
    checker = Identities()
    srv = Server("AUTH", authenticate=checker, artim_timeout=0.5)
    srv.start("127.0.0.1", 0)
    yield srv, checker, caplog
    srv.shutdown(5.0)


def _associate(port: int, identity: UserIdentityRQ):
    return Client("SCU").associate("127.0.0.1", port, "AUTH", contexts=[VERIFICATION], user_identity=identity)


def test_user_identity_hook_and_no_secrets_in_logs(auth_server):
    srv, checker, caplog = auth_server
    good = [rq_identity(2, b"alice", PASSCODE, positive=True), rq_identity(5, JWT, positive=True),
            rq_identity(2, b"alice", PASSCODE, positive=False)]
    for identity in good:
        with _associate(srv.port, identity) as assoc:
            assert assoc.echo() == 0
            # Usernames (types 1 and 2) get a zero-length response (PS3.7 Table D.3-15).
            expected = None if not identity.positive_response_requested else (
                b"" if identity.identity_type in (1, 2) else USER_RESPONSE)
            assert assoc.negotiated.user_identity_response == expected
    bad = [rq_identity(2, b"alice", b"wrong" + PASSCODE), rq_identity(2, b"mallory", PASSCODE),
           rq_identity(5, JWT[:-3] + b"xyz", positive=True), rq_identity(1, b"alice"),
           rq_identity(4, b"<saml>" + PASSCODE + b"</saml>")]
    for identity in bad:
        with pytest.raises(AssociationRejected) as info:
            _associate(srv.port, identity)
        # PS3.7 D.3.3.7: a refused identity is rejected-permanent, service-provider (ACSE), no-reason-given.
        assert (info.value.result, info.value.source, info.value.reason) == (1, 2, 1)
    assert len(checker.seen) == len(good) + len(bad)
    # Everything logged at DEBUG by client and server (messages, arguments,
    # exception text) is free of the passcode and the tokens.
    text = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert len(caplog.records) > 20
    for secret in (PASSCODE, JWT, JWT[:-3] + b"xyz", USER_RESPONSE, b"<saml>"):
        for form in (secret.decode(), repr(secret), secret.hex()):
            assert form not in text, form
    record("access", cases=len(good) + len(bad), log_records_checked=len(caplog.records))


def test_failing_authenticate_callback_rejects_without_leaking():
    def explode(identity: UserIdentityRQ) -> bool:
        raise RuntimeError("directory unreachable")

    srv = Server("AUTH", authenticate=explode, artim_timeout=0.5)
    srv.start("127.0.0.1", 0)
    try:
        with pytest.raises(AssociationRejected) as info:
            _associate(srv.port, rq_identity(2, b"alice", PASSCODE))
        assert info.value.result == 1
        assert echo_ok(srv.port, "AUTH")
    finally:
        srv.shutdown(5.0)
    record("access", cases=1)


# ------------------------------------------------------ paths from the wire
def raw_store_command(uid: bytes) -> bytes:
    """A C-STORE-RQ command set whose Affected SOP Instance UID is ``uid`` as is
    (any bytes, any length): encoded with a placeholder, then patched."""
    placeholder = "9" * 64
    encoded = bytes(encode_command(c_store_rq(1, CT, placeholder)))
    out, pos = bytearray(), 12  # skip (0000,0000) UL: tag 4 + length 4 + value 4
    while pos < len(encoded):
        group, elem, length = struct.unpack_from("<HHL", encoded, pos)
        value = encoded[pos + 8:pos + 8 + length]
        if (group, elem) == (0x0000, 0x1000):
            value = uid + (b"\0" if len(uid) % 2 else b"")
        out += struct.pack("<HHL", group, elem, len(value)) + value
        pos += 8 + length
    return struct.pack("<HHLL", 0, 0, 4, len(out)) + bytes(out)


HOSTILE_UIDS = {
    "dotdot": b"../../../../tmp/evil",
    "dotdot-uid-like": b"1.2.3/../../4",
    "absolute": b"/etc/cron.d/evil",
    "nul": b"1.2.3\x00/../../evil",
    "backslash": b"..\\..\\evil",
    "empty": b"",
    "dot": b".",
    "newline": b"1.2.3\n4",
}


@pytest.mark.parametrize("layout", ["flat", "study"])
def test_store_scp_never_turns_wire_data_into_an_unvalidated_path(tmp_path, layout):
    out = tmp_path / "out"
    handler = StoreSCPHandler(str(out), layout=layout)
    srv = Server("STORESCP", handler, artim_timeout=0.5, dimse_timeout=5.0)
    srv.start("127.0.0.1", 0)
    _, body = templates()[0]
    refused = 0
    try:
        client = Client("../../EVIL/AE", dimse_timeout=5.0)  # an AE title that looks like a path
        with client.associate("127.0.0.1", srv.port, "STORESCP", contexts=[(CT, EXPLICIT), VERIFICATION]) as assoc:
            ctx = assoc.context_for(CT)
            for name, uid in HOSTILE_UIDS.items():
                assoc._conn.send_pdata(ctx.context_id, True, raw_store_command(uid))
                assoc._conn.send_pdata(ctx.context_id, False, body)
                assoc._driver.flush()
                rsp = assoc._receive_response(1)
                assert rsp.get("Status") != 0, name
                refused += 1
            if layout == "study":
                # The data set's Study/Series UIDs name folders in this layout.
                for bad in (b"../../escape", b"/abs", b"1.2\x003"):
                    data = body.replace(b"1.2.826.0.1.3680043.9.7777.2.100000", b"1.2.826.0.1.3680043.9.7777.2.100001")
                    data = _replace_uid(data, 0x0020000D, bad)
                    assoc._conn.send_pdata(ctx.context_id, True, raw_store_command(b"1.2.826.0.1.3680043.9.7777.3.1"))
                    assoc._conn.send_pdata(ctx.context_id, False, data)
                    assoc._driver.flush()
                    rsp = assoc._receive_response(1)
                    assert rsp.get("Status") != 0, bad
                    refused += 1
            assert assoc.echo() == 0
    finally:
        srv.shutdown(5.0)
    # Nothing was written anywhere: not in out/, not next to it, not in /tmp.
    written = [os.path.join(d, f) for d, _, files in os.walk(tmp_path) for f in files]
    assert written == [], written
    assert not os.path.exists("/tmp/evil") and not os.path.exists("/etc/cron.d/evil")
    record("access", cases=refused, hostile_paths_refused=refused)


def _replace_uid(data: bytes, tag: int, value: bytes) -> bytes:
    """Explicit VR LE: replace the value of the UI element ``tag`` (top level)."""
    key = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + b"UI"
    pos = data.index(key)
    length = struct.unpack_from("<H", data, pos + 6)[0]
    padded = value + (b"\0" if len(value) % 2 else b"")
    return data[:pos + 6] + struct.pack("<H", len(padded)) + padded + data[pos + 8 + length:]


@pytest.mark.parametrize("uid", [b"1." + b"2" * 200, b"1." + b"2" * 63])
def test_overlong_uid_in_a_command_set_aborts_the_association(tmp_path, uid):
    """A UI value over 64 characters breaks PS3.5: the command set cannot be
    decoded (nor its UID echoed), so the association is aborted; nothing is
    written and the server goes on."""
    out = tmp_path / "out"
    srv = Server("STORESCP", StoreSCPHandler(str(out)), artim_timeout=0.5, dimse_timeout=5.0)
    srv.start("127.0.0.1", 0)
    _, body = templates()[0]
    try:
        assoc = Client("SCU", dimse_timeout=5.0).associate("127.0.0.1", srv.port, "STORESCP",
                                                          contexts=[(CT, EXPLICIT)])
        ctx = assoc.context_for(CT)
        assoc._conn.send_pdata(ctx.context_id, True, raw_store_command(uid))
        assoc._conn.send_pdata(ctx.context_id, False, body)
        assoc._driver.flush()
        with pytest.raises((AssociationAborted, PDUError)):
            assoc._receive_response(1)
        assoc.abort()
        assert wait_for(lambda: srv.active_associations == 0, 3.0)
        assert echo_ok(srv.port, "STORESCP")
    finally:
        srv.shutdown(5.0)
    assert [f for _, _, files in os.walk(tmp_path) for f in files] == []
    record("access", cases=1, hostile_paths_refused=1)
