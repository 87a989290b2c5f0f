"""TLS and the retrieve services: C-MOVE sub-associations over TLS
(``Server(move_tls=...)``), and a C-CANCEL that arrives over TLS while
C-FIND matches or C-GET sub-operations are being sent.

Certificates as in test_tls.py (made with the ``openssl`` command).
"""
from __future__ import annotations

import hashlib
import os
import subprocess

import pytest

from dicomnet.client import Client
from dicomnet.dicom.writer import encode_dataset
from dicomnet.dimse.commands import (
    CommandField,
    c_cancel_rq,
    c_find_rq,
    c_get_rq,
    c_store_rsp,
    encode_command,
)
from dicomnet.dimse.scu import query_dataset
from dicomnet.errors import DimseStatusError
from dicomnet.pdu.connection import Connection
from dicomnet.server import Server

from .conftest import CT, EXPLICIT, OPENSSL, record, wait_for
from .test_faults import StreamingStore, dataset_part, make_instance
from .test_tls import client_ctx, dcmtk_tls_storescp, needs_dcmtk_tls, server_ctx

pytestmark = pytest.mark.skipif(OPENSSL is None, reason="the openssl command is needed to make certificates")

STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_GET = "1.2.840.10008.5.1.4.1.2.2.3"
PENDING = (0xFF00, 0xFF01)


def _sha(path) -> bytes:
    return hashlib.sha256(dataset_part(path)).digest()


class Retrieve:
    """on_move / on_get returning Part 10 paths; on_find yielding many matches."""

    def __init__(self, paths: list[str], matches: int = 0) -> None:
        self.paths = paths
        self.matches = matches
        self.found = 0

    def on_move(self, ctx, query, destination_ae):
        return list(self.paths)

    def on_get(self, ctx, query):
        return list(self.paths)

    def on_find(self, ctx, query):
        for i in range(self.matches):
            self.found += 1
            yield {"PatientID": f"P{i:05d}", "StudyInstanceUID": f"1.2.3.{i}"}


@pytest.fixture
def instances(tmp_path):
    paths = []
    for i in range(3):
        path = tmp_path / f"src{i}.dcm"
        make_instance(path, 64, 64, seed=20 + i)
        paths.append(str(path))
    return paths


def _move(port: int, ctx, destination: str):
    client = Client("MOVER", tls=ctx, dimse_timeout=10.0, artim_timeout=5.0)
    with client.associate("127.0.0.1", port, "TLSSRC", contexts=[(STUDY_MOVE, EXPLICIT)]) as assoc:
        result = assoc.move({"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "1.2.3"}, destination)
        try:
            list(result)
        except DimseStatusError as exc:
            return exc.status, result
        return result.status, result


# ------------------------------------------------------------- C-MOVE over TLS
def test_move_sub_association_uses_move_tls(pki, tmp_path, instances):
    """Our TLS Server moves into our TLS store SCP (client certificates
    required there) with ``move_tls``; a destination left out of a ``move_tls``
    mapping is reached in plain TCP; without ``move_tls`` the TLS destination
    cannot be reached and every sub-operation fails."""
    tls_in, plain_in = tmp_path / "tls_in", tmp_path / "plain_in"
    tls_in.mkdir()
    plain_in.mkdir()
    tls_dest = Server("DEST", StreamingStore(str(tls_in)), tls=server_ctx(pki, require_client_cert=True),
                      artim_timeout=2.0).start("127.0.0.1", 0)
    plain_dest = Server("PLAIN", StreamingStore(str(plain_in)), artim_timeout=2.0).start("127.0.0.1", 0)
    destinations = {"DEST": ("127.0.0.1", tls_dest.port), "PLAIN": ("127.0.0.1", plain_dest.port)}
    mover_ctx = client_ctx(pki, cert="client")
    servers = [tls_dest, plain_dest]
    try:
        # One context for every destination.
        src = Server("TLSSRC", Retrieve(instances), tls=server_ctx(pki), move_tls=mover_ctx,
                     destinations=destinations, artim_timeout=2.0).start("127.0.0.1", 0)
        servers.append(src)
        status, result = _move(src.port, client_ctx(pki), "DEST")
        assert status == 0x0000 and result.completed == 3 and result.failed == 0
        got = sorted(_sha(tls_in / name) for name in os.listdir(tls_in))
        assert got == sorted(_sha(p) for p in instances)
        # A mapping: DEST over TLS, PLAIN (not in it) over plain TCP.
        src2 = Server("TLSSRC", Retrieve(instances), tls=server_ctx(pki), move_tls={"DEST": mover_ctx},
                      destinations=destinations, artim_timeout=2.0).start("127.0.0.1", 0)
        servers.append(src2)
        for name in os.listdir(tls_in):
            os.unlink(tls_in / name)
        assert _move(src2.port, client_ctx(pki), "DEST")[0] == 0x0000
        assert _move(src2.port, client_ctx(pki), "PLAIN")[0] == 0x0000
        assert len(os.listdir(tls_in)) == 3 and len(os.listdir(plain_in)) == 3
        # No move_tls: plain TCP to a TLS port fails, and the C-MOVE says so.
        src3 = Server("TLSSRC", Retrieve(instances), tls=server_ctx(pki), destinations=destinations,
                      artim_timeout=2.0, read_timeout=3.0).start("127.0.0.1", 0)
        servers.append(src3)
        status, result = _move(src3.port, client_ctx(pki), "DEST")
        assert status == 0xA702 and result.failed == 3
    finally:
        for srv in servers:
            srv.shutdown(5.0)
    record("tls", cases=3, move_over_tls=2)


def test_move_tls_is_checked(pki):
    with pytest.raises(TypeError):
        Server("TLSSRC", move_tls="not a context")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Server("TLSSRC", move_tls={"DEST": 5})      # type: ignore[dict-item]
    with pytest.raises(ValueError, match="server-side"):
        Server("TLSSRC", move_tls=server_ctx(pki))  # cannot open connections
    srv = Server("TLSSRC", move_tls={" DEST ": client_ctx(pki), "PLAIN": None})
    assert srv.move_tls_context("DEST") is not None and srv.move_tls_context("PLAIN") is None
    assert srv.move_tls_context("OTHER") is None


def test_sample_server_move_tls_flag(pki, tmp_path):
    """``dicomnet sample-server`` with TLS and ``--move-tls`` (a subprocess)
    moves a study into our TLS store SCP that requires client certificates."""
    import json
    import sys

    folder = tmp_path / "in"
    folder.mkdir()
    dest = Server("DEST", StreamingStore(str(folder)), tls=server_ctx(pki, require_client_cert=True),
                  artim_timeout=2.0).start("127.0.0.1", 0)
    cmd = [sys.executable, "-m", "dicomnet", "sample-server", "--synthetic", "--aet", "TLSSRC", "--port", "0",
           "--json", "--tls-cert", pki["node"] + ".crt", "--tls-key", pki["node"] + ".key",
           "--tls-ca", pki["ca"] + ".crt", "--move-tls", "--destination", f"DEST=127.0.0.1:{dest.port}"]
    # One certificate (serverAuth and clientAuth) for the sample server: requestors verify it, and it
    # is presented to DEST, which requires a client certificate.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert first.get("event") == "listening", first
        client = Client("MOVER", tls=client_ctx(pki, cert="client"), dimse_timeout=10.0)
        with client.associate("127.0.0.1", int(first["port"]), "TLSSRC",
                              contexts=[(STUDY_FIND, EXPLICIT), (STUDY_MOVE, EXPLICIT)]) as assoc:
            study = next(iter(assoc.find({"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": None})))
            result = assoc.move({"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study.StudyInstanceUID},
                                "DEST")
            list(result)
        assert result.status == 0x0000 and result.completed and result.failed == 0
        assert len(os.listdir(folder)) == result.completed
    finally:
        proc.terminate()
        proc.communicate(timeout=15)
        dest.shutdown(5.0)
    record("tls", cases=1, move_over_tls=1)


@needs_dcmtk_tls
def test_move_over_tls_into_dcmtk_storescp(pki, tmp_path, instances):
    out = tmp_path / "dcmtk"
    out.mkdir()
    with dcmtk_tls_storescp(pki, out) as port:
        src = Server("TLSSRC", Retrieve(instances), tls=server_ctx(pki), move_tls=client_ctx(pki, cert="client"),
                     destinations={"STORESCP": ("127.0.0.1", port)}, artim_timeout=2.0)
        try:
            src.start("127.0.0.1", 0)
            status, result = _move(src.port, client_ctx(pki), "STORESCP")
            assert status == 0x0000 and result.completed == 3
            assert wait_for(lambda: len(os.listdir(out)) == 3, 5.0)
            assert sorted(_sha(out / n) for n in os.listdir(out)) == sorted(_sha(p) for p in instances)
        finally:
            src.shutdown(5.0)
    record("tls", cases=1, dcmtk_interop=1, move_over_tls=1)


# ------------------------------------------------------- C-CANCEL over TLS
@pytest.fixture
def small_server_reads(monkeypatch):
    """The server's reads take at most 40 bytes from the TLS socket, so most of
    each TLS record the requestor sends stays decrypted inside OpenSSL
    (``SSLSocket.pending()``) where poll() on the socket cannot see it -- the
    condition a cancel watch must not miss. (With the driver's 16 KiB read
    window one read takes a whole record; this makes the case certain.)"""
    original = Connection.get_buffer

    def small(self, sizehint=-1):
        view = original(self, sizehint)
        return view[:40] if self.role == "acceptor" else view

    monkeypatch.setattr(Connection, "get_buffer", small)


def _send_with_cancel(assoc, context_id: int, rq, identifier: bytes) -> None:
    """The request and its C-CANCEL-RQ in one write (one TLS record)."""
    conn = assoc._conn
    conn.send_pdata(context_id, True, encode_command(rq))
    conn.send_pdata(context_id, False, identifier)
    conn.send_pdata(context_id, True, encode_command(c_cancel_rq(rq.message_id)))
    assoc._driver.flush()


def test_cancel_over_tls_stops_a_find_promptly(pki, small_server_reads):
    handler = Retrieve([], matches=400)
    srv = Server("TLSSRC", handler, tls=server_ctx(pki), artim_timeout=2.0).start("127.0.0.1", 0)
    try:
        client = Client("CANCELLER", tls=client_ctx(pki), dimse_timeout=10.0)
        with client.associate("127.0.0.1", srv.port, "TLSSRC", contexts=[(STUDY_FIND, EXPLICIT)]) as assoc:
            ctx = assoc.context_for(STUDY_FIND)
            identifier = encode_dataset(query_dataset({"QueryRetrieveLevel": "STUDY", "PatientID": None}),
                                        ctx.transfer_syntax)
            _send_with_cancel(assoc, ctx.context_id, c_find_rq(assoc._next_message_id(), STUDY_FIND), identifier)
            pending = 0
            while True:
                status = assoc._receive_message().command.status
                if status not in PENDING:
                    break
                pending += 1
            assert status == 0xFE00, hex(status)      # Cancel
            assert pending <= 2, pending               # not the 400 matches
            assert handler.found <= 3
    finally:
        srv.shutdown(5.0)
    record("tls", cases=1, cancels_over_tls=1, max_responses_after_cancel=pending)


def test_cancel_over_tls_stops_a_get_before_its_sub_operations(pki, small_server_reads, instances):
    srv = Server("TLSSRC", Retrieve(instances), tls=server_ctx(pki), artim_timeout=2.0).start("127.0.0.1", 0)
    try:
        client = Client("CANCELLER", tls=client_ctx(pki), dimse_timeout=10.0)
        with client.associate("127.0.0.1", srv.port, "TLSSRC", contexts=[(STUDY_GET, EXPLICIT), (CT, EXPLICIT)],
                              for_get=True) as assoc:
            ctx = assoc.context_for(STUDY_GET)
            identifier = encode_dataset(query_dataset({"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "1.2.3"}),
                                        ctx.transfer_syntax)
            _send_with_cancel(assoc, ctx.context_id, c_get_rq(assoc._next_message_id(), STUDY_GET), identifier)
            stores = 0
            while True:
                message = assoc._receive_message()
                command = message.command
                if command.get("CommandField") == CommandField.C_STORE_RQ:
                    stores += 1
                    assoc._send_message(message.context_id, c_store_rsp(
                        command.message_id, command.get("AffectedSOPClassUID"),
                        command.get("AffectedSOPInstanceUID"), 0))
                    continue
                if command.status not in PENDING:
                    break
            assert command.status == 0xFE00, hex(command.status)
            assert stores == 0                                   # cancelled before the first sub-operation
            assert command.get("NumberOfRemainingSuboperations") == 3
    finally:
        srv.shutdown(5.0)
    record("tls", cases=1, cancels_over_tls=1)
