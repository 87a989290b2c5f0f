"""DICOM over TLS (PS3.15 B.1) with real peers: dcmtk's ``+tls`` SCUs and
Orthanc's DICOM TLS against our Server and Client, both directions.

What ``tests/hardening/test_tls.py`` leaves out: storage, query and retrieval
(C-STORE, C-FIND, C-GET, C-MOVE with ``move_tls``) over TLS with foreign
peers, with and without client certificates, dcmtk's TLS profiles against a
TLS 1.2-only and a TLS 1.3-only server, and untrusted certificates on either
side failing cleanly while the server keeps serving. The certificates come
from the ``pki`` fixture of ``tests/hardening`` (one CA, server, client and a
"node" certificate usable both ways, plus a rogue CA's client and node ones).
"""
from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dicomnet.client import Client
from dicomnet.dicom import read_dataset, read_file
from dicomnet.errors import DicomNetError, DimseStatusError
from dicomnet.server import Server
from dicomnet.transport.tls import make_context

from .peers import HOST, Orthanc, PeerError, _Process, free_port, require, run_tool
from .test_move_get_interop import Sink, Source, assert_same, by_uid, make_study, study_key

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="the openssl command is needed to make certificates")

PKI = dict[str, str]
CT = "1.2.840.10008.5.1.4.1.1.2"
VERIFICATION = "1.2.840.10008.1.1"
#: Anything a failed TLS association may raise on our side (never a hang).
TLS_FAILURE = (ssl.SSLError, DicomNetError, OSError)


# ------------------------------------------------------------- certificates
# A copy of tests/hardening/conftest.py's ``pki`` fixture: a conftest of
# another test package cannot be imported from here (--import-mode=importlib).
def _openssl(*args: str, cwd: str) -> None:
    subprocess.run([OPENSSL or "openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(d: str, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt",
             "-days", "2", "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def _leaf(d: str, name: str, ca: str, ext: str) -> None:
    with open(os.path.join(d, f"{name}.ext"), "w") as f:
        f.write(ext)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN={name}", cwd=d)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
             "-out", f"{name}.crt", "-days", "2", "-sha256", "-extfile", f"{name}.ext", cwd=d)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    """A CA, a server certificate for 127.0.0.1/localhost, a client one, a
    "node" one for both ends, and a rogue client certificate from another CA."""
    d = str(tmp_path_factory.mktemp("pki"))
    _ca(d, "ca")
    _ca(d, "otherca")
    _leaf(d, "server", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    _leaf(d, "client", "ca", "extendedKeyUsage=clientAuth\n")
    _leaf(d, "rogue", "otherca", "extendedKeyUsage=clientAuth\n")
    both = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n"
    _leaf(d, "node", "ca", both)
    _leaf(d, "roguenode", "otherca", both)
    names = ("ca", "otherca", "server", "client", "rogue", "node", "roguenode")
    return {name: os.path.join(d, name) for name in names}


def server_ctx(pki: PKI, *, cert: str = "server", require_client_cert: bool = False,
               ca: str = "ca", version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """Our server side: ``cert`` from the pki; ``version`` pins min and max."""
    ctx = make_context(server_side=True, cert=pki[cert] + ".crt", key=pki[cert] + ".key",
                       ca=pki[ca] + ".crt", require_client_cert=require_client_cert)
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    return ctx


def client_ctx(pki: PKI, *, cert: str | None = "node", ca: str = "ca") -> ssl.SSLContext:
    return make_context(server_side=False, ca=pki[ca] + ".crt",
                        cert=pki[cert] + ".crt" if cert else None, key=pki[cert] + ".key" if cert else None)


def dcmtk_tls(pki: PKI, cert: str | None = "client", ca: str = "ca") -> list[str]:
    """dcmtk TLS options: ``+tls key crt`` (or anonymous ``+tla``), trusting ``ca``."""
    who = ["+tls", pki[cert] + ".key", pki[cert] + ".crt"] if cert else ["+tla"]
    return [*who, "+cf", pki[ca] + ".crt"]


def dcmtk_has_tls() -> bool:
    require("echoscu")
    return "+tls" in run_tool("echoscu", "--help").output


def tls_echo(port: int, ctx: ssl.SSLContext, called: str) -> int:
    client = Client("DNTLS", tls=ctx, connect_timeout=5.0, artim_timeout=5.0, dimse_timeout=5.0)
    with client.associate(HOST, port, called, contexts=[VERIFICATION]) as assoc:
        return assoc.echo()


def uids(datasets: Any) -> list[str]:
    return sorted(str(ds.SOPInstanceUID) for ds in datasets)


@pytest.fixture
def our_tls_server() -> Iterator[Callable[..., Server]]:
    """Factory for our Servers (TLS or not, on 127.0.0.1:0), all shut down at the end."""
    servers: list[Server] = []

    def start(ae: str, handler: Any, **kw: Any) -> Server:
        kw.setdefault("read_timeout", 10.0)
        kw.setdefault("artim_timeout", 5.0)
        srv = Server(ae, handler, **kw).start(HOST, 0)
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.shutdown(5.0)


class TlsStorescp(_Process):
    """dcmtk ``storescp +tls`` (client certificates required) writing to ``out_dir``."""

    name = "storescp-tls"

    def __init__(self, pki: PKI, aet: str = "TLSSTORE") -> None:
        super().__init__()
        self.pki, self.aet, self.port = pki, aet, 0
        self.out_dir = Path()

    def start(self) -> None:
        require("storescp")
        d = self._mkdir()
        self.out_dir = d / "received"
        self.out_dir.mkdir()
        self.port = free_port()
        self._spawn(["storescp", "-aet", self.aet, "-od", str(self.out_dir),
                     "+tls", self.pki["server"] + ".key", self.pki["server"] + ".crt",
                     "+cf", self.pki["ca"] + ".crt", str(self.port)])
        self._wait_until(self._ready, 20.0)

    def _ready(self) -> bool:
        res = run_tool("echoscu", "-to", "2", "-aec", self.aet, *dcmtk_tls(self.pki),
                       HOST, str(self.port), timeout=10)
        return res.ok

    def wait_for_files(self, count: int, timeout: float = 10.0) -> list[Path]:
        """Wait until at least ``count`` files arrived; returns them."""
        self._wait_until(lambda: len(list(self.out_dir.iterdir())) >= count, timeout)
        return sorted(self.out_dir.iterdir())


# ------------------------------------------------------ dcmtk SCUs -> our Server
def pynetdicom_retrieve(pki: PKI, port: int, called: str, key: dict[str, str], cert: str | None,
                        move_to: str) -> tuple[list[Any], list[Any], list[Any]]:
    """pynetdicom over TLS: a study-root C-GET (returns the C-STORE data sets
    received, as (transfer syntax, bytes)) and a C-MOVE to ``move_to``; the
    final status data sets of both."""
    from pydicom.dataset import Dataset as PyDataset
    from pynetdicom import AE, build_role, evt
    from pynetdicom.sop_class import (
        CTImageStorage,
        StudyRootQueryRetrieveInformationModelGet,
        StudyRootQueryRetrieveInformationModelMove,
    )

    received: list[Any] = []

    def on_store(event: Any) -> int:
        received.append((str(event.context.transfer_syntax), bytes(event.request.DataSet.getvalue())))
        return 0

    ae = AE(ae_title="PYNETTLS")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    ae.add_requested_context(CTImageStorage)
    query = PyDataset()
    for k, v in key.items():
        setattr(query, k, v)
    assoc = ae.associate(HOST, port, ae_title=called, ext_neg=[build_role(CTImageStorage, scp_role=True)],
                         evt_handlers=[(evt.EVT_C_STORE, on_store)],
                         tls_args=(client_ctx(pki, cert=cert), HOST))
    assert assoc.is_established
    try:
        got = [s for s, _ in assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet)]
        moved = [s for s, _ in assoc.send_c_move(query, move_to, StudyRootQueryRetrieveInformationModelMove)]
    finally:
        assoc.release()
    return received, got, moved


@pytest.mark.parametrize("client_cert", [False, True], ids=["anonymous-client", "client-cert-required"])
def test_store_find_get_move_over_tls_to_our_server(
        pki: PKI, our_tls_server: Callable[..., Server], tmp_path: Path, client_cert: bool) -> None:
    """dcmtk storescu/findscu ``+tls`` against our TLS Server: what is stored
    equals what was sent, C-FIND answers the study. dcmtk 3.6.7's getscu and
    movescu have no TLS options, so pynetdicom (over TLS) does the C-GET
    (every instance comes back equal) and the C-MOVE, whose sub-association our
    server opens over TLS (``move_tls``) to dcmtk's ``storescp +tls``. Without
    a required client certificate the requestors present none (``+tla``)."""
    if not dcmtk_has_tls():
        pytest.skip("dcmtk is built without TLS")
    require("pynetdicom")
    files = make_study(tmp_path)
    originals = by_uid(files)
    cert = "client" if client_cert else None
    tls = dcmtk_tls(pki, cert)
    with TlsStorescp(pki) as dest:
        sink = Sink()
        store_srv = our_tls_server("TLSSTORE", sink, tls=server_ctx(pki, require_client_cert=client_cert))
        res = run_tool("storescu", "-aet", "DCMTK", "-aec", "TLSSTORE", *tls, HOST, str(store_srv.port),
                       *(str(p) for p, _ in files))
        assert res.ok, res.output
        assert uids(ds for _, ds, _ in sink.received) == sorted(originals)
        for ts, ds, _ in sink.received:
            assert_same(ds, originals[str(ds.SOPInstanceUID)], ts)

        qr = our_tls_server("TLSQR", Source(files), tls=server_ctx(pki, require_client_cert=client_cert),
                            destinations={"TLSSTORE": (HOST, dest.port)},
                            move_tls=client_ctx(pki, cert="client"))
        key = study_key(files)
        keys = [a for k, v in key.items() for a in ("-k", f"{k}={v}")]
        found = tmp_path / "found"
        found.mkdir()
        res = run_tool("findscu", "-aet", "DCMTK", "-aec", "TLSQR", "-S", *keys, "-k", "PatientID",
                       "-X", *tls, HOST, str(qr.port), cwd=found)
        assert res.ok, res.output
        answers = [read_file(p) for p in sorted(found.iterdir())]
        assert [str(a.StudyInstanceUID) for a in answers] == [key["StudyInstanceUID"]]
        assert str(answers[0].PatientID) == str(files[0][1].PatientID)

        received, get_status, move_status = pynetdicom_retrieve(pki, qr.port, "TLSQR", key, cert, "TLSSTORE")
        assert get_status[-1].Status == 0 and get_status[-1].NumberOfCompletedSuboperations == len(files)
        assert len(received) == len(files)
        for ts, raw in received:
            ds = read_dataset(raw, transfer_syntax=ts)
            assert_same(ds, originals[str(ds.SOPInstanceUID)], ts)
        assert move_status[-1].Status == 0 and move_status[-1].NumberOfCompletedSuboperations == len(files)
        moved = [read_file(p) for p in dest.wait_for_files(len(files))]
        assert uids(moved) == sorted(originals)
        for ds in moved:
            assert_same(ds, originals[str(ds.SOPInstanceUID)])


def test_dcmtk_getscu_and_movescu_over_tls_to_our_server(
        pki: PKI, our_tls_server: Callable[..., Server], tmp_path: Path) -> None:
    """getscu/movescu ``+tls`` against our TLS Server (client certificates
    required): C-GET returns every instance unchanged, C-MOVE delivers them to
    our TLS destination over ``move_tls``. Only where dcmtk gives these tools
    TLS options (3.6.7 does not)."""
    for tool in ("getscu", "movescu"):
        require(tool)
        if "+tls" not in run_tool(tool, "--help").output:
            pytest.skip(f"this dcmtk's {tool} has no TLS options (dcmtk 3.6.7 gives them only to "
                        "echoscu/storescu/storescp/findscu)")
    files = make_study(tmp_path)
    originals = by_uid(files)
    sink = Sink()
    dest = our_tls_server("TLSDEST", sink, tls=server_ctx(pki, require_client_cert=True))
    qr = our_tls_server("TLSQR", Source(files), tls=server_ctx(pki, require_client_cert=True),
                        destinations={"TLSDEST": (HOST, dest.port)}, move_tls=client_ctx(pki))
    keys = [a for k, v in study_key(files).items() for a in ("-k", f"{k}={v}")]
    got = tmp_path / "got"
    got.mkdir()
    res = run_tool("getscu", "-aet", "DCMTK", "-aec", "TLSQR", "-S", *keys, "-od", str(got), *dcmtk_tls(pki),
                   HOST, str(qr.port))
    assert res.ok and "Failed" not in res.output, res.output
    received = [read_file(p) for p in sorted(got.iterdir())]
    assert uids(received) == sorted(originals)
    for ds in received:
        assert_same(ds, originals[str(ds.SOPInstanceUID)])
    res = run_tool("movescu", "-aet", "DCMTK", "-aec", "TLSQR", "-aem", "TLSDEST", "-S", *keys, *dcmtk_tls(pki),
                   HOST, str(qr.port))
    assert res.ok, res.output
    assert uids(ds for _, ds, _ in sink.received) == sorted(originals)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls1.2", "tls1.3"])
def test_dcmtk_tls_profiles_against_pinned_tls_versions(
        pki: PKI, our_tls_server: Callable[..., Server], tmp_path: Path, version: ssl.TLSVersion) -> None:
    """dcmtk's BCP 195 profiles (non-downgrading, plain, extended) each store an
    instance into a server pinned to exactly TLS 1.2 or exactly TLS 1.3 (dcmtk
    has no ``--tls-version``; pinning our side proves which version ran), except
    the extended profile, TLS 1.2 only in dcmtk 3.6.7, which a TLS 1.3 server
    must refuse. The
    retired AES profile offers only SHA-1 CBC suites our TLS 1.2+ context does
    not take: the handshake fails, nothing is stored, the server keeps serving."""
    if not dcmtk_has_tls():
        pytest.skip("dcmtk is built without TLS")
    files = make_study(tmp_path, instances=1, series=1)
    path, original = files[0]
    sink = Sink()
    srv = our_tls_server("TLSPIN", sink, tls=server_ctx(pki, require_client_cert=True, version=version))
    stored = 0
    for profile in ("+py", "+px", "+pz"):
        res = run_tool("storescu", "-aet", "DCMTK", "-aec", "TLSPIN", profile, *dcmtk_tls(pki),
                       HOST, str(srv.port), str(path))
        if profile == "+pz" and version == ssl.TLSVersion.TLSv1_3:
            # dcmtk 3.6.7's extended BCP 195 profile is TLS 1.2 only.
            assert res.returncode != 0 and "protocol version" in res.output, res.output
            continue
        assert res.ok, f"{profile}:\n{res.output}"
        stored += 1
    assert len(sink.received) == stored
    for ts, ds, _ in sink.received:
        assert_same(ds, original, ts)
    res = run_tool("storescu", "-aet", "DCMTK", "-aec", "TLSPIN", "+pa", *dcmtk_tls(pki),
                   HOST, str(srv.port), str(path))
    assert res.returncode != 0 and "TLS" in res.output, res.output
    assert len(sink.received) == stored
    assert tls_echo(srv.port, client_ctx(pki), "TLSPIN") == 0


def test_dcmtk_with_untrusted_certificates_fails_cleanly(
        pki: PKI, our_tls_server: Callable[..., Server], tmp_path: Path) -> None:
    """A dcmtk client with a rogue CA's certificate is refused by our server; a
    dcmtk client that does not trust our server's CA refuses it. Both end at
    once, store nothing, and the server then serves a good client."""
    if not dcmtk_has_tls():
        pytest.skip("dcmtk is built without TLS")
    path, _ = make_study(tmp_path, instances=1, series=1)[0]
    sink = Sink()
    srv = our_tls_server("TLSSTRICT", sink, tls=server_ctx(pki, require_client_cert=True))
    for cert, ca in (("rogue", "ca"), ("client", "otherca"), (None, "ca")):
        res = run_tool("storescu", "-aet", "DCMTK", "-aec", "TLSSTRICT", *dcmtk_tls(pki, cert, ca),
                       HOST, str(srv.port), str(path), timeout=20)
        assert res.returncode != 0, f"{cert}/{ca}:\n{res.output}"
    assert sink.received == []
    res = run_tool("storescu", "-aet", "DCMTK", "-aec", "TLSSTRICT", *dcmtk_tls(pki), HOST, str(srv.port), str(path))
    assert res.ok, res.output
    assert len(sink.received) == 1


# ------------------------------------------------------------ Orthanc over TLS
@pytest.fixture(scope="module")
def tls_orthanc(pki: PKI) -> Iterator[Orthanc]:
    """One Orthanc with DICOM TLS on (the "node" certificate both ways: it
    serves TLS and opens TLS associations), client certificates required."""
    config = {
        "DicomTlsEnabled": True,
        "DicomTlsCertificate": pki["node"] + ".crt",
        "DicomTlsPrivateKey": pki["node"] + ".key",
        "DicomTlsTrustedCertificates": pki["ca"] + ".crt",
        "DicomTlsRemoteCertificateRequired": True,
    }
    require("Orthanc")
    try:
        with Orthanc(aet="TLSORTHANC", config=config) as peer:
            yield peer
    except PeerError as e:
        if "TLS" not in str(e):
            raise
        pytest.skip(f"this Orthanc cannot do DICOM TLS: {e}")


def add_tls_modality(orthanc: Orthanc, aet: str, port: int) -> None:
    orthanc.put(f"/modalities/{aet}", {"AET": aet, "Host": HOST, "Port": port, "UseDicomTls": True})


def test_client_echo_store_find_get_with_orthanc_over_tls(tls_orthanc: Orthanc, pki: PKI, tmp_path: Path) -> None:
    """Our Client (with a client certificate) to Orthanc's DICOM TLS port:
    echo, store (Orthanc's copy equals ours), study C-FIND, and C-GET of the
    study back on the same association (equal to the originals)."""
    files = make_study(tmp_path)
    originals = by_uid(files)
    client = Client("DNTLS", tls=client_ctx(pki), dimse_timeout=10.0)
    with client.associate(HOST, tls_orthanc.dicom_port, tls_orthanc.aet) as assoc:
        assert assoc.echo() == 0
        for path, _ in files:
            assert assoc.store(str(path)) == 0
    with client.associate(HOST, tls_orthanc.dicom_port, tls_orthanc.aet, for_get=True) as assoc:
        key = study_key(files)
        matches = list(assoc.find({**key, "PatientID": None, "NumberOfStudyRelatedInstances": None}))
        assert [str(m.StudyInstanceUID) for m in matches] == [key["StudyInstanceUID"]]
        assert int(matches[0].NumberOfStudyRelatedInstances) == len(files)
        result = assoc.get(key)
        got = list(result)
        assert result.status == 0 and result.completed == len(files) and result.failed == 0
        assert uids(got) == sorted(originals)
        for ds in got:
            assert_same(ds, originals[str(ds.SOPInstanceUID)])
    stored = {}
    for oid in tls_orthanc.instances():
        sop = tls_orthanc.instance_tags(oid)["SOPInstanceUID"]
        if sop in originals:
            stored[sop] = oid
    assert sorted(stored) == sorted(originals)
    for sop, oid in stored.items():
        raw = tmp_path / f"orthanc-{sop}.dcm"
        raw.write_bytes(tls_orthanc.instance_file(oid))
        assert_same(read_file(raw), originals[sop])


def test_orthanc_stores_queries_and_moves_over_tls_with_our_server(
        tls_orthanc: Orthanc, pki: PKI, our_tls_server: Callable[..., Server], tmp_path: Path) -> None:
    """Orthanc as the TLS requestor (modality with ``UseDicomTls``): echo and
    C-STORE into our Server (bytes equal to Orthanc's upload); C-FIND of our
    archive; and a C-MOVE Orthanc asks of our server toward Orthanc itself,
    whose sub-association our server opens over TLS through ``move_tls``."""
    (tmp_path / "ours").mkdir()
    (tmp_path / "theirs").mkdir()
    ours = make_study(tmp_path / "ours")
    theirs = make_study(tmp_path / "theirs")
    for path, _ in theirs:
        assert tls_orthanc.upload(path)["Status"] in ("Success", "AlreadyStored")
    sink = Sink()

    class Both(Source):
        on_store = sink.on_store

    ae = f"DN{uuid.uuid4().hex[:8].upper()}"
    srv = our_tls_server(ae, Both(ours), tls=server_ctx(pki, require_client_cert=True),
                         destinations={tls_orthanc.aet: (HOST, tls_orthanc.dicom_port)},
                         move_tls={tls_orthanc.aet: client_ctx(pki)})
    add_tls_modality(tls_orthanc, ae, srv.port)
    assert tls_orthanc.echo(ae)

    study = study_key(theirs)["StudyInstanceUID"]
    tls_orthanc.store(ae, [tls_orthanc.post("/tools/lookup", raw=study.encode())[0]["ID"]])
    assert uids(ds for _, ds, _ in sink.received) == sorted(by_uid(theirs))
    for ts, ds, _ in sink.received:
        assert_same(ds, by_uid(theirs)[str(ds.SOPInstanceUID)], ts)

    answers = tls_orthanc.query(ae, "Study", {"StudyInstanceUID": study_key(ours)["StudyInstanceUID"]})
    assert [a["StudyInstanceUID"] for a in answers] == [study_key(ours)["StudyInstanceUID"]]

    tls_orthanc.move(ae, "Study", [{"StudyInstanceUID": study_key(ours)["StudyInstanceUID"]}])
    arrived = {}
    for oid in tls_orthanc.instances():
        sop = tls_orthanc.instance_tags(oid)["SOPInstanceUID"]
        if sop in by_uid(ours):
            arrived[sop] = oid
    assert sorted(arrived) == sorted(by_uid(ours))
    for sop, oid in arrived.items():
        raw = tmp_path / f"moved-{sop}.dcm"
        raw.write_bytes(tls_orthanc.instance_file(oid))
        assert_same(read_file(raw), by_uid(ours)[sop])


def test_untrusted_certificates_with_orthanc_fail_cleanly(
        tls_orthanc: Orthanc, pki: PKI, our_tls_server: Callable[..., Server], tmp_path: Path) -> None:
    """Our Client that does not trust Orthanc's CA raises
    ``SSLCertVerificationError``; without a client certificate, or with a rogue
    CA's, Orthanc refuses and our Client raises promptly. Orthanc refuses our
    server's rogue certificate (its echo fails); our server refuses Orthanc's
    certificate when it trusts another CA; a C-MOVE whose TLS sub-association
    cannot verify Orthanc ends with 0xA702 naming the certificate error, nothing
    sent, and the association goes on. Each
    server answers a good peer afterwards."""
    port, aet = tls_orthanc.dicom_port, tls_orthanc.aet
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_echo(port, client_ctx(pki, ca="otherca"), aet)
    for cert in (None, "rogue"):
        with pytest.raises(TLS_FAILURE):
            tls_echo(port, client_ctx(pki, cert=cert), aet)
    assert tls_echo(port, client_ctx(pki), aet) == 0

    rogue_ae = f"RG{uuid.uuid4().hex[:8].upper()}"
    rogue = our_tls_server(rogue_ae, Sink(), tls=server_ctx(pki, cert="roguenode"))
    add_tls_modality(tls_orthanc, rogue_ae, rogue.port)
    assert not tls_orthanc.echo(rogue_ae)
    assert tls_echo(rogue.port, client_ctx(pki, ca="otherca"), rogue_ae) == 0

    files = make_study(tmp_path, instances=2, series=1)
    strict_ae = f"ST{uuid.uuid4().hex[:8].upper()}"
    strict = our_tls_server(strict_ae, Source(files), tls=server_ctx(pki, require_client_cert=True, ca="otherca"),
                            destinations={aet: (HOST, port)}, move_tls={aet: client_ctx(pki, ca="otherca")})
    add_tls_modality(tls_orthanc, strict_ae, strict.port)
    assert not tls_orthanc.echo(strict_ae)
    assert tls_echo(strict.port, client_ctx(pki, cert="rogue", ca="ca"), strict_ae) == 0
    client = Client("DNTLS", tls=client_ctx(pki, cert="rogue"), dimse_timeout=10.0)
    with client.associate(HOST, strict.port, strict_ae) as assoc:
        result = assoc.move(study_key(files), aet)
        with pytest.raises(DimseStatusError) as failure:
            list(result)
        assert failure.value.status == result.status == 0xA702
        assert "CERTIFICATE_VERIFY_FAILED" in (failure.value.comment or "")
        assert result.completed == 0 and result.failed == len(files)
        assert assoc.echo() == 0
    known = {tls_orthanc.instance_tags(oid)["SOPInstanceUID"] for oid in tls_orthanc.instances()}
    assert not known & set(by_uid(files))
