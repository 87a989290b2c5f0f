"""TLS secure transport (PS3.15 Annex B): Client(tls=...) and Server(tls=...),
with and without client certificates, handshake failures, and dcmtk interop.

Certificates are made in the test with the ``openssl`` command (a CA, a server
certificate for 127.0.0.1/localhost, a client certificate, and an unrelated CA).
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dicomnet.client import Client
from dicomnet.errors import AssociationAborted, ConnectTimeout, DicomNetError
from dicomnet.server import Server
from dicomnet.transport.tls import make_context

from .conftest import CT, EXPLICIT, OPENSSL, VERIFICATION, record, wait_for
from .test_faults import StreamingStore, dataset_part, make_instance

pytestmark = pytest.mark.skipif(OPENSSL is None, reason="the openssl command is needed to make certificates")


def server_ctx(pki, *, require_client_cert: bool = False) -> ssl.SSLContext:
    return make_context(server_side=True, cert=pki["server"] + ".crt", key=pki["server"] + ".key",
                        ca=pki["ca"] + ".crt", require_client_cert=require_client_cert)


def client_ctx(pki, *, cert: str | None = None, ca: str = "ca") -> ssl.SSLContext:
    return make_context(server_side=False, ca=pki[ca] + ".crt",
                        cert=pki[cert] + ".crt" if cert else None, key=pki[cert] + ".key" if cert else None)


@pytest.fixture
def tls_server(pki, tmp_path, request):
    require = getattr(request, "param", False)
    folder = tmp_path / "in"
    folder.mkdir()
    srv = Server("TLSSCP", StreamingStore(str(folder)), tls=server_ctx(pki, require_client_cert=require),
                 artim_timeout=1.0, read_timeout=5.0, dimse_timeout=5.0)
    srv.start("127.0.0.1", 0)
    yield srv, folder
    srv.shutdown(5.0)


def tls_echo(port: int, ctx: ssl.SSLContext) -> int:
    client = Client("TLSSCU", tls=ctx, connect_timeout=3.0, artim_timeout=3.0, dimse_timeout=3.0)
    with client.associate("127.0.0.1", port, "TLSSCP", contexts=[VERIFICATION]) as assoc:
        return assoc.echo()


def test_echo_and_store_over_tls_without_client_certificate(pki, tls_server, tmp_path):
    srv, folder = tls_server
    assert tls_echo(srv.port, client_ctx(pki)) == 0
    path = tmp_path / "big.dcm"
    uid = make_instance(path, 512, 512, seed=5)   # ~512 KiB: many TLS records, partial reads
    client = Client("TLSSCU", tls=client_ctx(pki), dimse_timeout=10.0)
    with client.associate("127.0.0.1", srv.port, "TLSSCP", contexts=[(CT, EXPLICIT), VERIFICATION]) as assoc:
        assert assoc.store(str(path)) == 0
        assert assoc.echo() == 0
    got = dataset_part(folder / f"{uid}.dcm")
    assert hashlib.sha256(got).digest() == hashlib.sha256(dataset_part(path)).digest()
    record("tls", cases=2)


def test_tls_through_a_fragmenting_and_cutting_proxy(pki, tls_server, tmp_path):
    """TLS records split at every possible point (and a reset mid-transfer)."""
    from .proxy import FaultProxy, Plan

    srv, folder = tls_server
    path = tmp_path / "mid.dcm"
    uid = make_instance(path, 256, 256, seed=6)
    with FaultProxy(("127.0.0.1", srv.port), up=Plan(chunk=(1, 700), seed=7), down=Plan(chunk=(1, 9), seed=8)) as p:
        client = Client("TLSSCU", tls=client_ctx(pki), dimse_timeout=10.0)
        with client.associate("127.0.0.1", p.port, "TLSSCP", contexts=[(CT, EXPLICIT)]) as assoc:
            assert assoc.store(str(path)) == 0
    got = dataset_part(folder / f"{uid}.dcm")
    assert hashlib.sha256(got).digest() == hashlib.sha256(dataset_part(path)).digest()
    os.unlink(folder / f"{uid}.dcm")
    with FaultProxy(("127.0.0.1", srv.port), up=Plan(cut_at=40_000)) as p:
        t0 = time.monotonic()
        with pytest.raises((DicomNetError, OSError)):
            Client("TLSSCU", tls=client_ctx(pki), dimse_timeout=3.0).associate(
                "127.0.0.1", p.port, "TLSSCP", contexts=[(CT, EXPLICIT)]).store(str(path))
        assert time.monotonic() - t0 < 2.0
    assert wait_for(lambda: srv.active_associations == 0, 2.0)
    assert os.listdir(folder) == []
    record("tls", cases=2)


def test_in_memory_store_over_tls_through_a_fragmenting_proxy(pki, tmp_path):
    """Data set PDVs received into the data set's own buffer arrive whole
    over TLS too, with records split everywhere."""
    from dicomnet.dicom.reader import read_file

    from .proxy import FaultProxy, Plan
    from .test_faults import InMemoryStore, sha

    path = tmp_path / "mem.dcm"
    uid = make_instance(path, 512, 512, seed=9)
    handler = InMemoryStore()
    with Server("TLSSCP", handler, tls=server_ctx(pki), artim_timeout=1.0, read_timeout=5.0,
                dimse_timeout=5.0).start("127.0.0.1", 0) as srv:
        with FaultProxy(("127.0.0.1", srv.port), up=Plan(chunk=(1, 3000), seed=11),
                        down=Plan(chunk=(1, 9), seed=12)) as p:
            client = Client("TLSSCU", tls=client_ctx(pki), dimse_timeout=10.0)
            with client.associate("127.0.0.1", p.port, "TLSSCP", contexts=[(CT, EXPLICIT)]) as assoc:
                assert assoc.store(str(path)) == 0
    assert handler.got == {uid: sha(bytes(read_file(str(path)).PixelData))}
    record("tls", cases=1)


@pytest.mark.parametrize("tls_server", [True], indirect=True)
def test_client_certificate_required(pki, tls_server):
    srv, _ = tls_server
    assert tls_echo(srv.port, client_ctx(pki, cert="client")) == 0
    for cert in (None, "rogue"):  # no certificate, or one from another CA
        with pytest.raises((ssl.SSLError, DicomNetError, OSError)):
            tls_echo(srv.port, client_ctx(pki, cert=cert))
    assert tls_echo(srv.port, client_ctx(pki, cert="client")) == 0
    assert wait_for(lambda: srv.active_associations == 0, 3.0)
    record("tls", cases=3)


def test_server_certificate_is_verified(pki, tls_server):
    srv, _ = tls_server
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_echo(srv.port, client_ctx(pki, ca="otherca"))
    wrong_name = make_context(server_side=False, ca=pki["ca"] + ".crt")
    client = Client("TLSSCU", tls=wrong_name, tls_server_hostname="pacs.example.org")
    with pytest.raises(ssl.SSLCertVerificationError):
        client.associate("127.0.0.1", srv.port, "TLSSCP", contexts=[VERIFICATION])
    assert tls_echo(srv.port, client_ctx(pki)) == 0
    record("tls", cases=2)


def test_plain_dicom_to_a_tls_port_and_tls_to_a_plain_port(pki, tls_server):
    srv, _ = tls_server
    t0 = time.monotonic()
    with pytest.raises((AssociationAborted, DicomNetError, OSError)):
        Client("PLAIN", artim_timeout=3.0).associate("127.0.0.1", srv.port, "TLSSCP", contexts=[VERIFICATION])
    assert time.monotonic() - t0 < 2.0
    plain = Server("PLAINSCP", artim_timeout=0.5)
    plain.start("127.0.0.1", 0)
    try:
        t0 = time.monotonic()
        with pytest.raises((ssl.SSLError, ConnectTimeout, OSError)):
            Client("TLSSCU", tls=client_ctx(pki), connect_timeout=3.0).associate(
                "127.0.0.1", plain.port, "PLAINSCP", contexts=[VERIFICATION])
        assert time.monotonic() - t0 < 2.0
    finally:
        plain.shutdown(5.0)
    assert tls_echo(srv.port, client_ctx(pki)) == 0
    record("tls", cases=2)


def test_stalled_handshakes_never_block_the_accept_loop(pki, tls_server):
    srv, _ = tls_server
    idle = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(5)]
    try:
        t0 = time.monotonic()
        assert tls_echo(srv.port, client_ctx(pki)) == 0
        assert time.monotonic() - t0 < 1.0
        # Each stalled handshake ends at ARTIM: the server closes the socket.
        for sock in idle:
            sock.settimeout(srv.artim_timeout + 2.0)
            assert sock.recv(10) == b""
    finally:
        for sock in idle:
            sock.close()
    assert wait_for(lambda: srv.active_associations == 0, 2.0)
    record("tls", cases=1, stalled_handshakes=len(idle))


def test_make_context_and_driver_refuse_misuse(pki):
    from dicomnet.pdu.connection import Connection
    from dicomnet.transport.tls import TLSSyncDriver

    with pytest.raises(ValueError):
        make_context(server_side=True)                       # a server needs a certificate
    with pytest.raises(ValueError):
        make_context(server_side=True, cert=pki["server"] + ".crt", key=pki["server"] + ".key",
                     require_client_cert=True)               # ... and a CA to check clients
    ctx = client_ctx(pki)
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2 and ctx.verify_mode == ssl.CERT_REQUIRED
    a, b = socket.socketpair()
    try:
        with pytest.raises(TypeError):
            TLSSyncDriver(a, Connection("requestor"))        # not an SSLSocket
    finally:
        a.close()
        b.close()
    record("tls", cases=3)


def test_make_context_takes_the_same_suites_whatever_python_was_built_with(pki):
    """TLS 1.2: forward-secret key exchange and no SHA-1 MAC on both sides, also
    with a Python whose default is OpenSSL's list (Debian's python3), which
    would take the retired AES profile's suites (TLS_RSA_WITH_AES_128_CBC_SHA)."""
    for ctx in (server_ctx(pki), client_ctx(pki)):
        tls12 = [c for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"]
        assert tls12
        names = [c["name"] for c in tls12]
        assert all(c["kea"] in ("kx-ecdhe", "kx-dhe") for c in tls12), names
        assert all(c["digest"] != "sha1" for c in tls12), names
    record("tls", cases=2)


# --------------------------------------------------------------- pynetdicom
@pytest.mark.parametrize("tls_server", [True], indirect=True)
def test_pynetdicom_over_tls_both_ways(pki, tls_server):
    pynetdicom = pytest.importorskip("pynetdicom")
    srv, _ = tls_server
    logging.getLogger("pynetdicom").setLevel(logging.ERROR)
    # pynetdicom as the requestor, with a client certificate, to our Server.
    ae = pynetdicom.AE(ae_title="PYNET")
    ae.add_requested_context(VERIFICATION)
    assoc = ae.associate("127.0.0.1", srv.port, ae_title="TLSSCP",
                         tls_args=(client_ctx(pki, cert="client"), "127.0.0.1"))
    try:
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0
    finally:
        assoc.release()
    # Our Client to a pynetdicom acceptor over TLS.
    scp = pynetdicom.AE(ae_title="PYSCP")
    scp.add_supported_context(VERIFICATION)
    server = scp.start_server(("127.0.0.1", 0), block=False, ssl_context=server_ctx(pki))
    try:
        port = server.server_address[1]
        client = Client("TLSSCU", tls=client_ctx(pki), dimse_timeout=5.0)
        with client.associate("127.0.0.1", port, "PYSCP", contexts=[VERIFICATION]) as ours:
            assert ours.echo() == 0
    finally:
        server.shutdown()
    record("tls", cases=2, pynetdicom_interop=2)


# -------------------------------------------------------------------- dcmtk
def _dcmtk_has_tls() -> bool:
    exe = shutil.which("echoscu")
    if exe is None:
        return False
    out = subprocess.run([exe, "--help"], capture_output=True, text=True).stdout
    return "+tls" in out


needs_dcmtk_tls = pytest.mark.skipif(not _dcmtk_has_tls(), reason="dcmtk with TLS (echoscu +tls) is not installed")


@needs_dcmtk_tls
@pytest.mark.parametrize("tls_server", [True], indirect=True)
def test_dcmtk_echoscu_over_tls_to_our_server(pki, tls_server):
    srv, _ = tls_server
    proc = subprocess.run(
        ["echoscu", "-aet", "DCMTK", "-aec", "TLSSCP", "+tls", pki["client"] + ".key", pki["client"] + ".crt",
         "+cf", pki["ca"] + ".crt", "127.0.0.1", str(srv.port)],
        capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    record("tls", cases=1, dcmtk_interop=1)


@needs_dcmtk_tls
def test_our_client_stores_into_dcmtk_storescp_over_tls(pki, tmp_path):
    out = tmp_path / "dcmtk"
    out.mkdir()
    with dcmtk_tls_storescp(pki, out) as port:
        path = tmp_path / "one.dcm"
        make_instance(path, 64, 64, seed=9)
        client = Client("TLSSCU", tls=client_ctx(pki, cert="client"), dimse_timeout=10.0)
        with client.associate("127.0.0.1", port, "STORESCP", contexts=[(CT, EXPLICIT)]) as assoc:
            assert assoc.store(str(path)) == 0
        assert wait_for(lambda: len(os.listdir(out)) == 1, 5.0)
        received = out / os.listdir(out)[0]
        assert hashlib.sha256(dataset_part(received)).digest() == hashlib.sha256(dataset_part(path)).digest()
    record("tls", cases=1, dcmtk_interop=1)


@contextlib.contextmanager
def dcmtk_tls_storescp(pki: dict[str, str], out: Path) -> Iterator[int]:
    """dcmtk ``storescp +tls`` (AE STORESCP, the test CA's server certificate,
    client certificates required) writing into ``out``; yields its port."""
    from .conftest import free_port

    port = free_port()
    proc = subprocess.Popen(
        ["storescp", "-aet", "STORESCP", "-od", str(out), "+tls", pki["server"] + ".key", pki["server"] + ".crt",
         "+cf", pki["ca"] + ".crt", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert wait_for(lambda: _listening(port), 10.0), "storescp did not start"
        yield port
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False
