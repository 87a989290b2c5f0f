"""Resource leaks, server side: what a :class:`dicomnet.Server` does beyond
serving one association leaves nothing behind either.

A C-MOVE whose destination fails in every way (also with several C-STOREs
outstanding), a C-GET cut short, failed TLS handshakes, handler calls hung
and abandoned by the watchdog, an idle server after its last association, a
shutdown with associations open or that outwaits a handler, a mix of faults
soaked for traced memory, and real peers (dcmtk's storescu/echoscu,
pynetdicom) that abort or die.

dicomnet faults these tests found, all fixed: the handler watchdog's loop
variable kept the last finished association (and its buffers) alive on an
idle server; a shutdown() that gave up waiting for a handler left the wake-up
socket pair open.

What is counted and how: _resource_leaks.py. Associations that end in every
other way: test_resource_leaks_server.py; our Client:
test_resource_leaks_client.py.
"""
from __future__ import annotations

import collections
import contextlib
import gc
import os
import shutil
import ssl
import subprocess
import sys
import threading
import time
import tracemalloc

import pytest

from dicomnet.errors import DicomNetError

from ._resource_leaks import (ABORT_PDU, CT_CONTEXTS, MALFORMED, MID_STORE, QR, QUERY, FileHandler, Handler, census,
                              client, connect, drain, echo_promptly, holders, make_server, raw_established, reset,
                              store_start, uid, until_abort)
from ..conftest import CT, EXPLICIT, OPENSSL, PACKAGE_ROOT, VERIFICATION, associate_rq_bytes, free_port, wait_for
from ..proxy import FaultProxy, Plan



# ================================================== server: C-MOVE, C-GET
#: C-MOVE destination -> how it fails (the address is set in the test)
DESTINATIONS = ["REFUSER", "NO-CONTEXT", "UNREACHABLE", "ABORT-AT-RQ", "SILENT-AT-RQ", "ABORT-65536",
                "RST-65536", "ABORT-2500000+window", "RST-2200000+window", "REL-SILENT"]


@pytest.mark.parametrize("destination", DESTINATIONS)
def test_c_move_whose_destination_fails(servers, leaks, quiet, instances, peer, destination):
    """C-MOVE of memory-mapped files to a destination that rejects the
    association, accepts no context, cannot be reached, aborts or resets at
    the RQ or mid-file (also with several C-STOREs outstanding: an
    Asynchronous Operations Window), never answers the RQ, or never answers
    the release: the sub-association and the files are closed, the requestor
    answered."""
    destination, window = destination.partition("+")[::2]
    refuser = servers(Handler([]))                              # AE LEAKS: "REFUSER" is rejected
    verification_only = servers(Handler([]), contexts=[VERIFICATION])
    address = {"REFUSER": refuser.port, "NO-CONTEXT": verification_only.port, "UNREACHABLE": free_port()}
    srv = servers(Handler([instances["big"], instances["small"], instances["big"]] * (2 if window else 1)),
                  destinations={destination: ("127.0.0.1", address.get(destination, peer))},
                  artim_timeout=0.3, read_timeout=0.5, dimse_timeout=0.5, move_async_operations=8 if window else 1)
    if destination == "NO-CONTEXT":
        srv.destinations[destination] = ("127.0.0.1", verification_only.port)
        verification_only.policy.require_called_ae = False
    leaks.watch(srv, refuser, verification_only)

    def once() -> None:
        with client(quiet).associate("127.0.0.1", srv.port, "LEAKS", contexts=QR) as assoc:
            result = assoc.move(QUERY, destination)
            try:
                result.result()
            except DicomNetError:
                pass
            assert result.status is not None and (result.failed or destination == "REL-SILENT"), result

    once()
    leaks.baseline()
    for _ in range(3 if "SILENT" in destination else 10):
        once()
    leaks.check()
    echo_promptly(srv.port, "LEAKS", quiet)


@pytest.mark.parametrize("how", ["cancel", "cancel-store-to", "exception", "abort", "reset"])
def test_c_get_cut_short(stores, leaks, quiet, instances, tmp_path, how):
    """A C-GET of memory-mapped files left early: the loop broken (C-CANCEL;
    the association goes on), an exception in the ``with`` block, an A-ABORT,
    a TCP reset from a proxy mid-file."""
    srv = stores["file"]
    out = tmp_path / "got"
    out.mkdir()
    leaks.folders.append(out)
    contexts = [VERIFICATION, *QR, (CT, (EXPLICIT,))]

    def once() -> None:
        port, proxy = srv.port, None
        if how == "reset":
            proxy = FaultProxy(("127.0.0.1", srv.port), down=Plan(cut_at=3_000_000))
            port = proxy.port
        try:
            with client(quiet).associate("127.0.0.1", port, "LEAKS", contexts=contexts, for_get=True) as assoc:
                for item in assoc.get(QUERY, store_to=out if how == "cancel-store-to" else None):
                    if how.startswith("cancel"):
                        break
                    if how == "exception":
                        raise KeyError("leaving the block")
                    if how == "abort":
                        assoc.abort()
                if how.startswith("cancel"):
                    assert assoc.echo() == 0
        except (KeyError, DicomNetError, OSError):
            pass
        finally:
            if proxy is not None:
                proxy.close()
        for name in os.listdir(out):     # whole files are fine (and removed); partial ones are not
            assert not name.endswith(".part"), name
            os.unlink(out / name)

    once()
    leaks.baseline()
    for _ in range(10):
        once()
    leaks.check()
    echo_promptly(srv.port, "LEAKS", quiet)


# =========================================================== server: TLS
@pytest.mark.skipif(OPENSSL is None, reason="the openssl command is needed to make certificates")
def test_tls_handshakes_that_fail(servers, leaks, quiet, pki, instances):
    """Over TLS (client certificates required): a plain DICOM peer, a peer
    that says nothing (ARTIM bounds the handshake), one that hangs up or
    resets mid-handshake, a client that does not trust the server, one
    without a certificate, one with a certificate from another CA -- and,
    from our Client, a TLS handshake with a plain server; then a good TLS
    association aborted, and one reset in the middle of a memory-mapped file."""
    from dicomnet.transport.tls import make_context

    def ctx(ca: str, cert: str | None = None) -> ssl.SSLContext:
        return make_context(server_side=False, ca=pki[ca] + ".crt", cert=cert and pki[cert] + ".crt",
                            key=cert and pki[cert] + ".key")

    server_ctx = make_context(server_side=True, cert=pki["server"] + ".crt", key=pki["server"] + ".key",
                              ca=pki["ca"] + ".crt", require_client_cert=True)
    srv = servers(Handler([]), tls=server_ctx, artim_timeout=0.3)
    plain = servers(Handler([]))
    leaks.watch(srv, plain)
    bio_out = ssl.MemoryBIO()           # a real ClientHello, to stop half-way through
    tls_obj = ssl.create_default_context().wrap_bio(ssl.MemoryBIO(), bio_out)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls_obj.do_handshake()
    client_hello = bio_out.read()
    refusing = [ctx("otherca", "client"), ctx("ca"), ctx("ca", "rogue")]

    def once() -> None:
        for data, end in ((associate_rq_bytes(called="LEAKS"), "drain"), (b"", "drain"),
                          (client_hello[:40], "close"), (client_hello, "reset")):
            sock = connect(srv.port)
            sock.sendall(data)
            if end == "drain":
                drain(sock)
                sock.close()
            elif end == "close":
                sock.close()
            else:
                reset(sock)
        for bad in refusing:
            with pytest.raises((DicomNetError, OSError)):
                with client(quiet, tls=bad).associate("127.0.0.1", srv.port, "LEAKS",
                                                      contexts=[VERIFICATION]) as assoc:
                    assoc.echo()
        with pytest.raises((DicomNetError, OSError)):
            client(quiet, tls=ctx("ca", "client")).associate("127.0.0.1", plain.port, "LEAKS",
                                                              contexts=[VERIFICATION])
        assoc = client(quiet, tls=ctx("ca", "client")).associate("127.0.0.1", srv.port, "LEAKS",
                                                                  contexts=[VERIFICATION])
        assert assoc.echo() == 0
        assoc.abort()
        with FaultProxy(("127.0.0.1", srv.port), up=Plan(cut_at=700_000)) as proxy:   # reset mid-file
            with pytest.raises((DicomNetError, OSError)):
                with client(quiet, tls=ctx("ca", "client")).associate(
                        "127.0.0.1", proxy.port, "LEAKS", contexts=CT_CONTEXTS) as assoc:
                    assoc.store(instances["big"])

    once()
    leaks.baseline()
    for _ in range(5):
        once()
    leaks.check()
    echo_promptly(srv.port, "LEAKS", quiet, tls=ctx("ca", "client"))


# ====================================================== server: watchdog
class Hanging(Handler):
    """on_echo blocks (until ``release``) for a calling AE title HANG."""

    def __init__(self) -> None:
        super().__init__([])
        self.release = threading.Event()

    def on_echo(self, ctx):
        if ctx.calling_ae == "HANG":
            self.release.wait(30)
        return 0

    def on_find(self, ctx, query):
        yield {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "1.2.3"}
        if ctx.calling_ae == "HANG":
            self.release.wait(30)        # a lazy match that takes for ever
        yield {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "1.2.4"}


def test_hung_handlers_abandoned_by_the_watchdog(servers, leaks, quiet):
    """handler_timeout (0.2 s) gives up on hung handler calls (C-ECHO, and a
    C-FIND between two matches): each such association is aborted, and once
    the handlers return their threads end and the aborting threads are gone.
    (Objects are not counted here: the watchdog keeps its last guard, see
    test_an_idle_server_keeps_nothing_of_its_last_association.)"""
    handler = Hanging()
    srv = servers(handler, handler_timeout=0.2)
    leaks.watch(srv)

    def batch(n: int) -> None:
        assocs = [client(quiet, "HANG").associate("127.0.0.1", srv.port, "LEAKS", contexts=[VERIFICATION, *QR])
                  for _ in range(n)]
        for i, assoc in enumerate(assocs):
            with pytest.raises(DicomNetError):
                assoc.echo() if i % 2 else list(assoc.find(QUERY))
        assert srv.abandoned_threads == n
        echo_promptly(srv.port, "LEAKS", quiet)     # while they hang
        handler.release.set()
        assert wait_for(lambda: srv.abandoned_threads == 0, 5.0)
        handler.release.clear()

    batch(1)
    leaks.baseline()
    for _ in range(2):
        batch(5)
    leaks.check(objects=False)


def test_an_idle_server_keeps_nothing_of_its_last_association(servers, leaks, quiet, instances):
    """Once its associations are over, a server whose handler watchdog runs
    holds none of their objects (the last one held a 2 MiB data set buffer)."""
    warm = servers(Handler([]))
    with client(quiet).associate("127.0.0.1", warm.port, "LEAKS", contexts=CT_CONTEXTS) as assoc:
        assoc.store(instances["big"])   # (imports and caches made before the baseline)
    srv = servers(Handler([]), handler_timeout=0.2)   # the watchdog looks at its guards every 0.2 s
    leaks.watch(warm, srv)
    leaks.baseline()
    with client(quiet).associate("127.0.0.1", srv.port, "LEAKS", contexts=CT_CONTEXTS) as assoc:
        assert assoc.store(instances["big"]) == 0
        time.sleep(0.5)                  # long enough to be seen by the watchdog
    time.sleep(0.5)
    leaks.check(objects=False)
    # dicomnet's objects only: the accept loop's last (closed) socket object stays, harmlessly.
    grown = collections.Counter({name: n for name, n in (census() - leaks._base["objects"]).items()
                                 if name.startswith("dicomnet.")})
    assert not grown, f"objects left alive: {dict(grown)}; {holders(grown, leaks._base['ids'])}"


# ====================================================== server: shutdown
def test_server_shutdown_with_associations_open(leaks, quiet, instances, tmp_path):
    """Start a server, open associations of every kind (established, half-way
    through a streamed data set, not yet associated), shut it down: back to
    what the process held before the server existed."""
    folder = tmp_path / "in"
    folder.mkdir()
    leaks.folders.append(folder)

    def once() -> None:
        srv = make_server(quiet, FileHandler([], folder), handler_timeout=5.0)
        try:
            held = client(quiet).associate("127.0.0.1", srv.port, "LEAKS", contexts=CT_CONTEXTS)
            streaming = raw_established(srv.port, CT_CONTEXTS)
            store_start(streaming, uid(7), MID_STORE)
            silent = connect(srv.port)
            assert wait_for(lambda: srv.active_associations == 3, 5.0)
        finally:
            srv.shutdown(5.0)
        with pytest.raises(DicomNetError):
            held.echo()
        assert until_abort(streaming)
        for sock in (streaming, silent):
            sock.close()

    once()
    leaks.baseline()
    for _ in range(8):
        once()
    leaks.check()


def test_a_shutdown_that_outwaits_a_handler_still_releases_everything(leaks, quiet):
    """shutdown(timeout) shorter than a running handler call: once the handler
    returns and its thread ends, the server holds nothing (the application
    still holds the Server object)."""
    class Slow(Handler):
        def on_echo(self, ctx):
            time.sleep(0.5)
            return 0

    warm = make_server(quiet, Slow([]))
    warm.shutdown(5.0)
    leaks.baseline()
    srv = make_server(quiet, Slow([]))
    assoc = client(quiet).associate("127.0.0.1", srv.port, "LEAKS", contexts=[VERIFICATION])
    def echo_once() -> None:
        with contextlib.suppress(DicomNetError):
            assoc.echo()

    echo = threading.Thread(target=echo_once, name="echoing")
    echo.start()
    assert wait_for(lambda: srv.active_associations == 1)
    time.sleep(0.1)                      # the handler is running
    srv.shutdown(0.1)                    # gives up waiting for it
    echo.join(5.0)
    assoc.abort()
    # descriptors, threads and maps: the test still holds the Server (and its objects)
    leaks.check(timeout=1.0, objects=False)
    srv.shutdown(5.0)


# =========================================================== memory
def test_faults_leave_no_memory_behind(stores, leaks, quiet, instances, peer):
    """A mix of the faults above, on both sides, 40 times: traced Python
    memory back within 256 KiB (a leak of 1 KiB per fault would show)."""
    contexts = [VERIFICATION, *QR, (CT, (EXPLICIT,))]

    def once(n: int) -> None:
        with raw_established(stores["mem"].port, CT_CONTEXTS) as sock:
            store_start(sock, uid(n), MID_STORE)
            sock.sendall(ABORT_PDU)
            drain(sock)
        with raw_established(stores["file"].port, CT_CONTEXTS) as sock:
            store_start(sock, uid(n), MID_STORE)
            sock.sendall(MALFORMED["pdv-overruns-pdu"])
            assert until_abort(sock)
        with raw_established(stores["mem"].port, CT_CONTEXTS) as sock:
            store_start(sock, uid(n), MID_STORE)
            reset(sock)
        with client(quiet).associate("127.0.0.1", stores["file"].port, "LEAKS", contexts=contexts,
                                     for_get=True) as assoc:
            for _ in assoc.get(QUERY):
                break
        for mode, work in (("ABORT-65536", lambda a: a.store(instances["big"])),
                           ("FIND-ABORT", lambda a: list(a.find(QUERY)))):
            with pytest.raises(DicomNetError):
                with client(quiet).associate("127.0.0.1", peer, mode, contexts=contexts) as assoc:
                    work(assoc)

    once(0)
    once(1)
    tracemalloc.start()
    try:
        leaks.baseline()
        traced = tracemalloc.get_traced_memory()[0]
        for n in range(40):
            once(n)
        leaks.check()
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - traced
    finally:
        tracemalloc.stop()
    assert grown < 256 << 10, f"traced memory grew by {grown} bytes over 40 rounds of faults"


def test_the_memory_measure_sees_a_leak_of_a_few_kib_per_round():
    """What the two memory soaks measure would show 40 rounds that each keep 8 KiB."""
    kept = []
    tracemalloc.start()
    try:
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0]
        for _ in range(40):
            kept.append(bytearray(8192))
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - traced
    finally:
        tracemalloc.stop()
    assert grown >= 256 << 10, grown


# ============================================================ real peers
PYNETDICOM_SCU = r'''
import sys
from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, Verification
port, path, rounds = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
ae = AE(ae_title="PYNETDICOM")
ae.add_requested_context(Verification)
ae.add_requested_context(CTImageStorage)
ds = dcmread(path)
for i in range(rounds):
    assoc = ae.associate("127.0.0.1", port, ae_title="LEAKS")
    assert assoc.is_established
    assoc.send_c_echo()
    assoc.send_c_store(ds)
    assoc.abort() if i % 2 else assoc.release()
print("done", flush=True)
'''


@pytest.mark.peers
def test_real_peers_that_abort_or_die(stores, leaks, quiet, instances, tmp_path):
    """dcmtk's storescu and echoscu ending with --abort, storescu killed in the
    middle of a file (SIGKILL), and pynetdicom releasing and aborting, against
    both servers."""
    storescu, echoscu = shutil.which("storescu"), shutil.which("echoscu")
    if not (storescu and echoscu):
        pytest.skip("dcmtk's storescu/echoscu not installed (apt-get install dcmtk)")
    pynetdicom = subprocess.run([sys.executable, "-c", "import pynetdicom, pydicom"], capture_output=True).returncode == 0
    folder = leaks.folders[0]

    def dcmtk(*args: str) -> None:
        subprocess.run(list(args), capture_output=True, timeout=60, check=False)

    def once() -> None:
        for srv in stores.values():
            port = str(srv.port)
            dcmtk(echoscu, "--abort", "-aec", "LEAKS", "127.0.0.1", port)
            dcmtk(storescu, "--abort", "-aec", "LEAKS", "127.0.0.1", port, instances["big"], instances["small"])
        # Killed while streaming a 2 MiB instance into a file (slowed down by a proxy).
        with FaultProxy(("127.0.0.1", stores["file"].port), up=Plan(chunk=16384, gap=0.002)) as proxy:
            proc = subprocess.Popen([storescu, "-aec", "LEAKS", "127.0.0.1", str(proxy.port), instances["big"]],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                assert wait_for(lambda: any(n.endswith(".part") for n in os.listdir(folder)), 5.0)
            finally:
                proc.kill()
                proc.wait(10)

    once()
    leaks.baseline()
    for _ in range(3):
        once()
    if pynetdicom:
        done = subprocess.run([sys.executable, "-c", PYNETDICOM_SCU, str(stores["file"].port), instances["big"], "6"],
                              capture_output=True, text=True, timeout=120, cwd=PACKAGE_ROOT)
        assert "done" in done.stdout, done.stderr[-2000:]
    leaks.check()
    for srv in stores.values():
        echo_promptly(srv.port, "LEAKS", quiet)
    if not pynetdicom:
        # Said, not silent: the dcmtk part passed, the pynetdicom part did not run.
        pytest.skip("dcmtk part passed; pynetdicom part not run (pynetdicom or pydicom not installed)")
