"""dicomnet.server: negotiation outcomes, limits, handlers, robustness, clean shutdown."""
from __future__ import annotations

import gc
import logging
import os
import socket
import threading
import time

import pytest

from dicomnet.client import Client
from dicomnet.dimse.commands import Command, CommandField, NO_DATASET
from dicomnet.errors import AssociationAborted, AssociationRejected, DimseStatusError
from dicomnet.interfaces import AssociationInfo, ServiceContext
from dicomnet.pdu.items import (
    RoleSelection,
    SOPClassCommonExtendedNegotiation,
    SOPClassExtendedNegotiation,
    UserIdentityRQ,
)
from dicomnet.server import Server
from dicomnet.transport import closer

VERIFICATION = "1.2.840.10008.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
EXPLICIT = "1.2.840.10008.1.2.1"


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def open_fds() -> set[tuple[int, str]]:
    """(descriptor, what it points to) of every open file descriptor."""
    out = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            out.add((int(name), os.readlink(f"/proc/self/fd/{name}")))
        except OSError:
            pass                        # the one listdir itself used
    return out


#: Counting open file descriptors needs Linux's /proc (the wheels are also tested elsewhere).
needs_proc_fd = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


@pytest.fixture(autouse=True)
def closer_idle():
    """Tests here count threads and descriptors: let the Sta13 closer of an
    earlier test (its thread, its sockets) finish first."""
    wait_for(closer.idle, 5.0)


class Recorder:
    def __init__(self) -> None:
        self.associations: list[AssociationInfo] = []
        self.echoes: list[ServiceContext] = []

    def on_association(self, info: AssociationInfo) -> None:
        self.associations.append(info)

    def on_echo(self, ctx: ServiceContext) -> int:
        self.echoes.append(ctx)
        return 0


def test_echo_reaches_handler_with_context():
    rec = Recorder()
    with Server("SCP", rec).start() as srv:
        with Client("SCU").associate("127.0.0.1", srv.port, "SCP", contexts=[VERIFICATION]) as assoc:
            assert assoc.echo() == 0
    (ctx,) = rec.echoes
    assert (ctx.calling_ae, ctx.called_ae) == ("SCU", "SCP")
    assert ctx.abstract_syntax == VERIFICATION and ctx.transfer_syntax == EXPLICIT
    assert ctx.message_id == 1 and ctx.command.command_field == CommandField.C_ECHO_RQ
    assert ctx.peer_address[0] == "127.0.0.1" and not ctx.cancelled
    assert ctx.association is rec.associations[0]


def test_handler_status_is_returned():
    class Busy:
        def on_echo(self, ctx):
            return 0xA700

    with Server("SCP", Busy()).start() as srv:
        with Client().associate("127.0.0.1", srv.port, "SCP", contexts=[VERIFICATION]) as assoc:
            with pytest.raises(DimseStatusError) as info:
                assoc.echo()
            assert info.value.status == 0xA700


def test_called_ae_check_can_be_disabled():
    with Server("SCP", require_called_ae=False).start() as srv:
        with Client().associate("127.0.0.1", srv.port, "WHATEVER", contexts=[VERIFICATION]) as assoc:
            assert assoc.echo() == 0


def test_allowed_calling_aes():
    with Server("SCP", allowed_calling_aes=["GOOD"]).start() as srv:
        with Client("GOOD").associate("127.0.0.1", srv.port, "SCP", contexts=[VERIFICATION]) as assoc:
            assert assoc.echo() == 0
        with pytest.raises(AssociationRejected) as info:
            Client("BAD").associate("127.0.0.1", srv.port, "SCP", contexts=[VERIFICATION])
        assert (info.value.result, info.value.source, info.value.reason) == (1, 1, 3)
        assert "calling-AE-title-not-recognized" in str(info.value)


def test_max_associations_rejects_transient_local_limit():
    with Server("SCP", max_associations=2).start() as srv:
        client = Client()
        a1 = client.associate("127.0.0.1", srv.port, "SCP", contexts=[VERIFICATION])
        a2 = client.associate("127.0.0.1", srv.port, "SCP", contexts=[VERIFICATION])
        with pytest.raises(AssociationRejected) as info:
            client.associate("127.0.0.1", srv.port, "SCP", contexts=[VERIFICATION])
        assert (info.value.result, info.value.source, info.value.reason) == (2, 3, 2)
        assert "local-limit-exceeded" in str(info.value)
        assert a1.echo() == 0 and a2.echo() == 0  # the open ones are undisturbed
        a1.release()
        assert wait_for(lambda: srv.active_associations == 1)
        with client.associate("127.0.0.1", srv.port, "SCP", contexts=[VERIFICATION]) as a3:
            assert a3.echo() == 0
        a2.release()


def test_negotiation_items_reach_the_acceptor():
    rec = Recorder()
    identity = UserIdentityRQ(UserIdentityRQ.USERNAME_PASSCODE, True, b"alice", b"s3cret")
    ext = SOPClassExtendedNegotiation(STUDY_FIND, b"\x01\x01")
    common = SOPClassCommonExtendedNegotiation(CT, "1.2.840.10008.4.2")
    seen_identities = []

    def authenticate(item):
        seen_identities.append(item)
        return b"welcome"

    with Server("SCP", rec, authenticate=authenticate, accept_scp_role=[CT],
                extended_negotiation=lambda item: item.info).start() as srv:
        with Client("SCU").associate(
            "127.0.0.1", srv.port, "SCP", contexts=[VERIFICATION, CT, STUDY_FIND],
            user_identity=identity, role_selections=[(CT, True, True)],
            extended_negotiations=[ext], common_extended_negotiations=[common],
        ) as assoc:
            # A username gets a zero-length server response whatever authenticate returned
            # (PS3.7 Table D.3-15); the bytes go to Kerberos, SAML and JWT requestors.
            assert assoc.negotiated.user_identity_response == b""
            ct = assoc.negotiated.context_for(CT)
            assert ct.as_scu and ct.as_scp
            assert assoc.negotiated.extended_negotiations == (ext,)
    (info,) = rec.associations
    assert info.role_selections == (RoleSelection(CT, True, True),)
    assert info.extended_negotiations == (ext,)
    assert info.common_extended_negotiations == (common,)
    assert info.user_identity == identity and seen_identities == [identity]
    acc_ct = info.negotiated.context_for(CT)
    assert acc_ct.as_scu and acc_ct.as_scp  # the acceptor sees the mirror image
    assert info.negotiated.peer_implementation_version_name == "DICOMNET_010"
    assert "s3cret" not in repr(info)


def test_authentication_refused_rejects():
    with Server("SCP", authenticate=lambda item: False).start() as srv:
        with pytest.raises(AssociationRejected) as info:
            Client().associate("127.0.0.1", srv.port, "SCP", contexts=[VERIFICATION],
                               user_identity=UserIdentityRQ(1, False, b"mallory"))
        # PS3.7 D.3.3.7: an authorization failure is rejected-permanent, service-provider (ACSE).
        assert (info.value.result, info.value.source, info.value.reason) == (1, 2, 1)


def test_require_user_identity_refuses_an_association_without_one():
    """With require_user_identity an RQ without a User Identity item is an
    authorization failure (PS3.7 D.3.3.7: permanent, service-provider ACSE);
    one with an accepted identity goes through."""
    with Server("SCP", authenticate=lambda item: item.primary_field == b"alice",
                require_user_identity=True).start() as srv:
        with pytest.raises(AssociationRejected) as info:
            Client().associate("127.0.0.1", srv.port, "SCP", contexts=[VERIFICATION])
        assert (info.value.result, info.value.source, info.value.reason) == (1, 2, 1)
        with Client().associate("127.0.0.1", srv.port, "SCP", contexts=[VERIFICATION],
                                user_identity=UserIdentityRQ(1, False, b"alice")) as assoc:
            assert assoc.echo() == 0
    with Server("SCP", authenticate=lambda item: False).start() as srv:   # not required: not asked
        with Client().associate("127.0.0.1", srv.port, "SCP", contexts=[VERIFICATION]) as assoc:
            assert assoc.echo() == 0


def test_passcode_is_never_logged(caplog):
    identity = UserIdentityRQ(UserIdentityRQ.USERNAME_PASSCODE, False, b"alice", b"hunter2-secret")
    caplog.set_level(logging.DEBUG, logger="dicomnet")
    with Server("SCP", authenticate=lambda item: True).start() as srv:
        with Client().associate("127.0.0.1", srv.port, "SCP", contexts=[VERIFICATION],
                                user_identity=identity) as assoc:
            assoc.echo()
    assert caplog.records  # logging is on ...
    assert "hunter2-secret" not in caplog.text  # ... without the passcode


def test_unknown_command_gets_unrecognized_operation_status():
    with Server("SCP").start() as srv:
        with Client().associate("127.0.0.1", srv.port, "SCP", contexts=[VERIFICATION]) as assoc:
            # N-GET is not served here: PS3.7 C.5.5 "unrecognized operation".
            cmd = Command(CommandField=CommandField.N_GET_RQ, MessageID=7,
                          RequestedSOPClassUID=VERIFICATION, RequestedSOPInstanceUID="1.2.3",
                          CommandDataSetType=NO_DATASET)
            assoc._send_message(1, cmd)
            rsp = assoc._receive_message(5).command
            assert rsp.command_field == CommandField.N_GET_RSP
            assert rsp.status == 0x0211 and rsp.message_id == 7
            assert assoc.echo() == 0  # still usable


class Calls:
    """Handlers that only note that they were called."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def on_find(self, ctx, query):
        self.calls.append("find")
        return []

    def on_get(self, ctx, query):
        self.calls.append("get")
        return []

    def on_store(self, ctx, ds):
        self.calls.append("store")
        return 0


STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_GET = "1.2.840.10008.5.1.4.1.2.2.3"
CT = "1.2.840.10008.5.1.4.1.1.2"


def test_an_unreadable_data_set_is_the_peers_fault_not_a_handler_failure(caplog):
    """A C-FIND-RQ without Identifier, or whose Identifier or data set cannot be
    framed: a failure status (0xA900 for an Identifier, as C-GET and C-MOVE
    answer; 0xC000 "cannot understand" for a C-STORE data set), the handler is
    never called, and the server logs a warning naming the peer's fault -- no
    error, no traceback. The association goes on."""
    handler = Calls()
    # (0010,0020) Patient ID claiming 8 bytes where 2 follow.
    truncated = (0x0010).to_bytes(2, "little") + (0x0020).to_bytes(2, "little") + (8).to_bytes(4, "little") + b"AB"
    cases = [
        (STUDY_FIND, CommandField.C_FIND_RQ, None, 0xA900),
        (STUDY_FIND, CommandField.C_FIND_RQ, truncated, 0xA900),
        (STUDY_GET, CommandField.C_GET_RQ, truncated, 0xA900),
        (CT, CommandField.C_STORE_RQ, truncated, 0xC000),
    ]
    implicit = "1.2.840.10008.1.2"
    with caplog.at_level(logging.DEBUG, logger="dicomnet"), Server("SCP", handler).start() as srv:
        contexts = [(STUDY_FIND, [implicit]), (STUDY_GET, [implicit]), (CT, [implicit]), (VERIFICATION, [implicit])]
        with Client().associate("127.0.0.1", srv.port, "SCP", contexts=contexts) as assoc:
            for n, (sop_class, field, data, status) in enumerate(cases, 1):
                fields = {"CommandField": field, "MessageID": n, "AffectedSOPClassUID": sop_class, "Priority": 0,
                          "CommandDataSetType": NO_DATASET if data is None else 0}
                if field == CommandField.C_STORE_RQ:
                    fields["AffectedSOPInstanceUID"] = "1.2.3.4"
                context_id = assoc.negotiated.context_for(sop_class).context_id
                assoc._send_message(context_id, Command(**fields), data)
                rsp = assoc._receive_message(5).command
                assert (rsp.message_id, rsp.status) == (n, status), sop_class
            assert assoc.echo() == 0
    assert handler.calls == []
    records = [r for r in caplog.records if r.name.startswith("dicomnet")]
    assert not [r for r in records if r.levelno >= logging.ERROR or r.exc_info]
    warned = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert sum("unreadable Identifier" in m for m in warned) == 2, warned
    assert sum("unreadable data set" in m for m in warned) == 1, warned


def test_release_and_abort_from_the_client_side():
    rec = Recorder()
    with Server("SCP", rec).start() as srv:
        a = Client().associate("127.0.0.1", srv.port, "SCP", contexts=[VERIFICATION])
        a.release()
        assert a.is_closed
        b = Client().associate("127.0.0.1", srv.port, "SCP", contexts=[VERIFICATION])
        b.abort()
        assert b.is_closed
        assert wait_for(lambda: srv.active_associations == 0)
        assert len(rec.associations) == 2


def test_server_shutdown_aborts_open_associations_and_joins_threads():
    before_threads = threading.active_count()
    srv = Server("SCP").start()
    assoc = Client(dimse_timeout=5).associate("127.0.0.1", srv.port, "SCP", contexts=[VERIFICATION])
    assert assoc.echo() == 0
    t0 = time.monotonic()
    srv.shutdown()
    assert time.monotonic() - t0 < 2.0
    assert threading.active_count() == before_threads
    with pytest.raises(AssociationAborted) as info:
        assoc.echo()
    assert "service-user" in str(info.value)  # the server's A-ABORT arrived
    assert assoc.is_closed


def test_server_release_answers_and_closes():
    # The server's side: a release answered with A-RELEASE-RP, then its thread ends.
    with Server("SCP").start() as srv:
        with Client().associate("127.0.0.1", srv.port, "SCP", contexts=[VERIFICATION]) as assoc:
            assoc.echo()
            assert srv.active_associations == 1
        assert wait_for(lambda: srv.active_associations == 0)


@needs_proc_fd
def test_peer_vanishing_leaves_no_thread_or_fd():
    with Server("SCP").start() as srv:
        Client().associate("127.0.0.1", srv.port, "SCP", contexts=[VERIFICATION]).release()
        assert wait_for(lambda: srv.active_associations == 0)
        # Sets, not counts: a thread or descriptor an earlier test left to
        # finish may end meanwhile, and must not hide a new one.
        threads, fds = set(threading.enumerate()), open_fds()
        for _ in range(5):
            assoc = Client().associate("127.0.0.1", srv.port, "SCP", contexts=[VERIFICATION])
            assoc.echo()
            assoc._driver.sock.close()  # vanish: no release, no abort
            assoc._driver.sock = None
        assert wait_for(lambda: srv.active_associations == 0)
        assert wait_for(lambda: set(threading.enumerate()) <= threads), set(threading.enumerate()) - threads
        assert open_fds() <= fds, open_fds() - fds


def test_garbage_bytes_closed_and_server_still_answers():
    with Server("SCP", artim_timeout=0.3).start() as srv:
        with socket.create_connection(("127.0.0.1", srv.port)) as s:
            s.sendall(b"\xff\x00\x00\x00\x00\x10" + b"garbage!" * 2)
            s.settimeout(5)
            data = b""
            while chunk := s.recv(100):
                data += chunk
            # An A-ABORT (07H, 10 bytes), then the server closed the connection.
            assert data[:1] == b"\x07" and len(data) == 10
        with Client().associate("127.0.0.1", srv.port, "SCP", contexts=[VERIFICATION]) as assoc:
            assert assoc.echo() == 0


def test_silent_connection_closed_after_artim():
    with Server("SCP", artim_timeout=0.3).start() as srv:
        with socket.create_connection(("127.0.0.1", srv.port)) as s:
            s.settimeout(5)
            t0 = time.monotonic()
            assert s.recv(100) == b""  # the server closed after ARTIM
            assert 0.2 < time.monotonic() - t0 < 3
        with Client().associate("127.0.0.1", srv.port, "SCP", contexts=[VERIFICATION]) as assoc:
            assert assoc.echo() == 0


def test_idle_association_aborted_after_read_timeout():
    with Server("SCP", read_timeout=0.3).start() as srv:
        assoc = Client().associate("127.0.0.1", srv.port, "SCP", contexts=[VERIFICATION])
        time.sleep(0.6)
        with pytest.raises(AssociationAborted):
            assoc.echo()


def test_one_bad_association_does_not_disturb_another():
    with Server("SCP").start() as srv:
        good = Client().associate("127.0.0.1", srv.port, "SCP", contexts=[VERIFICATION])
        bad = Client().associate("127.0.0.1", srv.port, "SCP", contexts=[VERIFICATION])
        # A P-DATA-TF whose PDV claims an unaccepted context: the server aborts that one only.
        bad._driver.sock.sendall(b"\x04\x00\x00\x00\x00\x08\x00\x00\x00\x04\x09\x03\x00\x00")
        with pytest.raises(AssociationAborted):
            bad.echo()
        assert good.echo() == 0
        good.release()


def test_listen_and_serve_blocks_until_shutdown():
    srv = Server("SCP")
    thread = threading.Thread(target=srv.listen_and_serve, args=("127.0.0.1", 0))
    thread.start()
    assert wait_for(lambda: srv.port is not None)
    with Client().associate("127.0.0.1", srv.port, "SCP", contexts=[VERIFICATION]) as assoc:
        assert assoc.echo() == 0
    srv.shutdown()
    thread.join(5)
    assert not thread.is_alive()


def test_server_validates_arguments():
    with pytest.raises(ValueError):
        Server(max_associations=0)
    with pytest.raises(ValueError):
        Server(read_timeout=-1)
    with pytest.raises(ValueError):
        Server(handler_timeout=0)
    with pytest.raises(ValueError):
        Server(max_dataset_bytes=-1)
    assert Server(dimse_timeout=7).handler_timeout == 7.0      # the documented default
    # A Maximum Length no association could use fails here, not at each association
    # (max_pdu=-1 used to leave every requestor waiting for an answer until ARTIM).
    for bad in (-1, 1, 6, 1 << 32):
        with pytest.raises(ValueError, match="max_pdu"):
            Server(max_pdu=bad)
    with pytest.raises(TypeError):
        Server(max_pdu=4096.0)
    with pytest.raises(TypeError, match="write_timeout must be a number of seconds"):
        Server(write_timeout=None)
    with pytest.raises(TypeError, match="handler_timeout"):
        Server(handler_timeout="30")
    assert Server(max_pdu=0).max_pdu == 0 and Server(max_pdu=7).max_pdu == 7


def test_a_handler_timeout_of_centuries_keeps_the_watchdog_running():
    """A finite handler_timeout past threading.TIMEOUT_MAX (the watchdog's
    sleep used to raise OverflowError and end its thread)."""
    with Server("SCP", Recorder(), handler_timeout=1e12).start("127.0.0.1", 0) as srv:
        with Client("SCU").associate("127.0.0.1", srv.port, "SCP", contexts=["1.2.840.10008.1.1"]) as assoc:
            assert assoc.echo() == 0             # a guarded handler call: the watchdog has a deadline to wait for
        time.sleep(0.1)
        thread = srv._watchdog._thread
        assert thread is not None and thread.is_alive()


def test_handler_is_proxied_for_timing_but_its_attributes_pass_through():
    rec = Recorder()
    srv = Server("SCP", rec)
    assert srv.handler.__wrapped__ is rec
    assert srv.handler.echoes is rec.echoes
    assert Server("SCP").handler is None


def test_handler_methods_are_looked_up_once_per_association():
    # Through the watchdog's proxy a lookup costs as much as a small message's
    # handling, so on_echo and on_store are fetched when the association
    # starts, not for every message.
    from dicomnet.dicom import Dataset

    class Counting:
        def __init__(self) -> None:
            self.lookups = {"on_echo": 0, "on_store": 0}
            self.stored: list[str] = []

        @property
        def on_echo(self):
            self.lookups["on_echo"] += 1
            return lambda ctx: 0

        @property
        def on_store(self):
            self.lookups["on_store"] += 1

            def store(ctx, ds):
                self.stored.append(ds.SOPInstanceUID)
                return 0
            return store

    handler = Counting()
    with Server("SCP", handler).start() as srv:
        for round_ in (1, 2):
            with Client().associate("127.0.0.1", srv.port, "SCP", contexts=[VERIFICATION, CT]) as assoc:
                for _ in range(3):
                    assert assoc.echo() == 0
                for i in range(2):
                    ds = Dataset()
                    ds.SOPClassUID, ds.SOPInstanceUID, ds.PatientName = CT, f"1.2.3.{round_}.{i}", "A^B"
                    assert assoc.store(ds) == 0
            assert wait_for(lambda: handler.lookups == {"on_echo": round_, "on_store": round_})
    assert handler.stored == ["1.2.3.1.0", "1.2.3.1.1", "1.2.3.2.0", "1.2.3.2.1"]


def test_shutdown_lets_a_running_handler_finish_then_aborts():
    entered, release = threading.Event(), threading.Event()

    class Slow:
        def on_echo(self, ctx):
            entered.set()
            release.wait(5)
            return 0

    srv = Server("SCP", Slow()).start()
    assoc = Client(dimse_timeout=5).associate("127.0.0.1", srv.port, "SCP", contexts=[VERIFICATION])
    result = []
    echo = threading.Thread(target=lambda: result.append(assoc.echo()))
    echo.start()
    assert entered.wait(5)
    stopper = threading.Thread(target=srv.shutdown)
    stopper.start()
    time.sleep(0.1)
    assert stopper.is_alive()  # waiting for the handler
    release.set()
    stopper.join(5)
    echo.join(5)
    assert result == [0]  # the running request was answered ...
    with pytest.raises(AssociationAborted):
        assoc.echo()  # ... then the association was aborted


@needs_proc_fd
def test_unstarted_server_shuts_down_at_once_and_holds_no_fd():
    gc.collect()
    fds = fd_count()
    t0 = time.monotonic()
    with Server("SCP") as srv:
        assert srv.port is None
    assert time.monotonic() - t0 < 0.5
    assert fd_count() == fds


@needs_proc_fd
def test_started_server_releases_every_fd():
    gc.collect()  # a socket an earlier test left to the cycle collector must not close mid-count
    fds = fd_count()
    with Server("SCP").start() as srv:
        with Client().associate("127.0.0.1", srv.port, "SCP", contexts=[VERIFICATION]) as assoc:
            assoc.echo()
    assert fd_count() == fds
    with pytest.raises(ConnectionRefusedError):
        Client().associate("127.0.0.1", srv.port, "SCP")
