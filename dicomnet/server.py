"""The DICOM server (association acceptor, usually the SCP).

>>> from dicomnet import Server
>>> with Server("MY_SCP").start("127.0.0.1", 0) as server:   # doctest: +SKIP
...     print(server.port)

Threads: one accepts connections; each association is served on its own
thread by the blocking driver (:mod:`dicomnet.transport.sync`). Every wait is
bounded (``artim_timeout`` for the A-ASSOCIATE-RQ and for the peer to close
after a release or rejection, ``read_timeout`` for each PDU (so an idle
association or a trickled PDU ends, while a big data set on a slow link is
served), ``write_timeout`` for a peer that stops reading). :meth:`Server.shutdown`
wakes every thread through one socketpair, aborts the open associations and
joins all threads.
"""
from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

from ._watchdog import GuardedHandler, HandlerAbandoned, HandlerGuard, HandlerWatchdog
from .association import Association
from .dimse import scp as _scp
from .dimse.assembler import Message
from .dimse.commands import NO_DATASET, Command, CommandField, c_echo_rsp
from .errors import DicomNetError, PDUError
from .interfaces.handlers import AssociationInfo, ServiceContext
from .pdu import events as ev
from .pdu.connection import Connection
from .pdu.items import SOPClassExtendedNegotiation, UserIdentityRQ
from .pdu.negotiation import (
    DEFAULT_MAX_PDU,
    UNCOMPRESSED_TRANSFER_SYNTAXES,
    AcceptorPolicy,
    IdentityVerdict,
    check_max_pdu,
    negotiate,
)
from .pdu.pdus import AAssociateRJ, validate_ae_title
from .transport.sync import DEFAULT_BUSY_POLL, Interrupted, SyncDriver, check_timeout, prepare_socket

__all__ = ["Server"]

#: Status codes the server itself answers with (PS3.7 C.4, C.5).
STATUS_SUCCESS = 0x0000
STATUS_PROCESSING_FAILURE = 0x0110
STATUS_UNRECOGNIZED_OPERATION = 0x0211
_MAX_ERROR_COMMENT = 64  # ErrorComment is LO: 64 characters at most (PS3.5 6.2)

# How many connections beyond max_associations may wait at once for their
# A-ASSOCIATE-RJ (local limit exceeded); past that a connection is just closed.
_MAX_REJECTORS = 16

#: Default ``max_dataset_bytes``: the largest data set one association may
#: hold in memory (2 GiB). Data sets streamed to files are not capped by it.
DEFAULT_MAX_DATASET_BYTES = 2 << 30

# How long an abandoned association's thread waits for the watchdog's abort
# to finish before it closes what is left (the abort itself is bounded by
# _ABORT_WRITE_TIMEOUT for the A-ABORT; the wait for the peer to close is the
# background closer's).
_ABORT_WRITE_TIMEOUT = 2.0
_ABORT_JOIN = 5.0


def _supported(contexts: Mapping[str, Sequence[str]] | Iterable[Any] | None) -> Mapping[str, Sequence[str]] | None:
    """``contexts`` as the acceptor policy's ``supported`` mapping."""
    if contexts is None:
        return None
    specs = contexts.items() if isinstance(contexts, Mapping) else contexts
    out: dict[str, Sequence[str]] = {}
    for spec in specs:
        if isinstance(spec, str):
            out[spec] = UNCOMPRESSED_TRANSFER_SYNTAXES
        else:
            syntaxes = spec[1]
            out[str(spec[0])] = (syntaxes,) if isinstance(syntaxes, str) else tuple(syntaxes)
    return out


class Server:
    """Accepts associations and serves DIMSE requests through ``handler``.

    ``handler`` is any object with some of the ``on_*`` methods of
    :class:`dicomnet.interfaces.Handler`; without one the server still answers
    C-ECHO. Negotiation: ``ae_title`` (checked against the called AE when
    ``require_called_ae``), ``allowed_calling_aes`` (None: any), ``contexts``
    (abstract syntax -> transfer syntaxes, or a list of abstract syntaxes or
    ``(abstract, [syntaxes])``; None: every storage and Q/R class plus
    Verification, uncompressed), ``max_pdu`` (largest P-DATA-TF we receive),
    ``authenticate(UserIdentityRQ) -> bool | bytes`` (False rejects; bytes is
    the server response, sent for Kerberos, SAML and JWT identities when the
    requestor asked for one; an association without a User Identity item is
    not asked about, and accepted unless ``require_user_identity``),
    ``accept_scp_role`` and ``extended_negotiation`` as in
    :class:`dicomnet.pdu.negotiation.AcceptorPolicy`. More than
    ``max_associations`` open at once are rejected (transient, local limit
    exceeded).

    C-MOVE/C-GET (see :mod:`dicomnet.dimse.retrieve_scp`): ``destinations``
    maps a move destination AE title to ``(host, port)`` for a handler whose
    ``on_move`` returns only the instances. A handler with ``on_get`` makes
    the default ``accept_scp_role`` accept the requestor's SCP role for every
    storage SOP class (the C-STORE sub-operations need it).

    ``allowed_peers`` (None: any) lists the IP addresses or networks
    (``"10.0.0.0/8"``) that may connect; any other connection is closed as soon
    as it is accepted, before a byte is read or a thread is started.

    ``tls`` (an ``ssl.SSLContext``; :func:`dicomnet.transport.tls.make_context`)
    serves every connection over TLS (PS3.15 Annex B): the handshake runs on the
    association's thread within ``artim_timeout``, never in the accept loop.
    ``move_tls`` makes the C-MOVE sub-associations TLS too (as dcmtk's
    dcmqrscp does with its TLS settings): a client-side ``ssl.SSLContext`` for
    every move destination, or a mapping of destination AE title -> context (a
    destination missing from it, or mapped to None, is reached in plain TCP).
    The server-side ``tls`` context cannot open connections, so it is not
    reused for them. ``move_async_operations`` (default 1: not proposed) > 1
    proposes an Asynchronous Operations Window (PS3.7 D.3.3.3) on those
    sub-associations: a destination that accepts it gets up to that many
    C-STORE-RQs before the first response is awaited. Off by default because
    a destination that mishandles the item would fail the whole C-MOVE.

    ``handler_timeout`` (default: ``dimse_timeout``; ``math.inf`` turns it off)
    bounds each call into the handler (each step of an iterator it returns
    counts as one call; so does negotiation, which runs the ``authenticate``
    and ``extended_negotiation`` callbacks). A call that runs longer is given
    up: the association is aborted (A-ABORT, socket closed), its
    ``max_associations`` slot is released and a warning logged. Python cannot kill the stuck thread: it is
    *abandoned* (counted in :attr:`abandoned_threads` while it runs, in
    :attr:`handler_timeouts` for ever), and whatever the handler returns when
    it finally does is dropped. ``server.handler`` is a thin proxy that times
    these calls; the handler itself is ``server.handler.__wrapped__``.

    ``max_dataset_bytes`` (default 2 GiB, None: no cap) caps the data set an
    association holds in memory; a peer that sends a bigger one is aborted
    (A-ABORT) as soon as the cap is crossed, before more is allocated. Data
    sets the handler streams to files (``store_destination``) are not capped.

    ``busy_poll`` (seconds, default 50 us; 0: off): how long an association's
    wait for the peer first looks for input without sleeping (adaptive; see
    :mod:`dicomnet.transport.sync`). The C-MOVE sub-associations use it too.
    """

    def __init__(
        self,
        ae_title: str = "DICOMNET",
        handler: object | None = None,
        *,
        logger: logging.Logger | None = None,
        read_timeout: float = 30.0,
        write_timeout: float = 30.0,
        artim_timeout: float = 30.0,
        dimse_timeout: float = 30.0,
        max_associations: int = 64,
        require_called_ae: bool = True,
        allowed_calling_aes: Collection[str] | None = None,
        max_pdu: int = DEFAULT_MAX_PDU,
        contexts: Mapping[str, Sequence[str]] | Iterable[Any] | None = None,
        authenticate: Callable[[UserIdentityRQ], IdentityVerdict] | None = None,
        require_user_identity: bool = False,
        accept_scp_role: Collection[str] | Callable[[str], bool] = (),
        extended_negotiation: Callable[[SOPClassExtendedNegotiation], bytes | None] | None = None,
        destinations: Mapping[str, tuple[str, int]] | None = None,
        tls: ssl.SSLContext | None = None,
        allowed_peers: Iterable[str] | None = None,
        handler_timeout: float | None = None,
        max_dataset_bytes: int | None = DEFAULT_MAX_DATASET_BYTES,
        move_tls: ssl.SSLContext | Mapping[str, ssl.SSLContext | None] | None = None,
        move_async_operations: int = 1,
        busy_poll: float = DEFAULT_BUSY_POLL,
    ) -> None:
        self.ae_title = validate_ae_title(ae_title, "ae_title")
        for name, value in (("read_timeout", read_timeout), ("write_timeout", write_timeout),
                            ("artim_timeout", artim_timeout), ("dimse_timeout", dimse_timeout)):
            check_timeout(name, value)
        if max_associations < 1:
            raise ValueError("max_associations must be at least 1")
        if handler_timeout is None:
            handler_timeout = dimse_timeout
        check_timeout("handler_timeout", handler_timeout)
        if max_dataset_bytes is not None and max_dataset_bytes < 0:
            raise ValueError(f"max_dataset_bytes must be >= 0 or None, got {max_dataset_bytes!r}")
        if not busy_poll >= 0:
            raise ValueError(f"busy_poll must be >= 0 seconds, got {busy_poll!r}")
        self.busy_poll = float(busy_poll)
        self.logger = logger or logging.getLogger("dicomnet")
        self.handler_timeout = float(handler_timeout)
        self.max_dataset_bytes = max_dataset_bytes
        self.move_tls = _check_move_tls(move_tls)
        if not 0 <= move_async_operations <= 0xFFFF:
            raise ValueError(f"move_async_operations must be 0..65535 (0: no limit), got {move_async_operations}")
        self.move_async_operations = move_async_operations
        self._watchdog = HandlerWatchdog(self.handler_timeout, self._abandon, logger=self.logger)
        #: The application's handler behind a proxy that times its calls (see above).
        self.handler: Any = None if handler is None else GuardedHandler(handler, self._watchdog)
        #: How many handler calls the watchdog gave up on since the server started.
        self.handler_timeouts = 0
        self.read_timeout = float(read_timeout)
        self.write_timeout = float(write_timeout)
        self.artim_timeout = float(artim_timeout)
        self.dimse_timeout = float(dimse_timeout)
        self.max_associations = max_associations
        self.max_pdu = check_max_pdu(max_pdu)
        self.destinations: dict[str, tuple[str, int]] = dict(destinations or {})
        self.tls = tls
        self.allowed_peers: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None = (
            None if allowed_peers is None else tuple(ipaddress.ip_network(p, strict=False) for p in allowed_peers))
        if not accept_scp_role and callable(getattr(handler, "on_get", None)):
            from .types.sop_classes import is_storage_sop_class

            accept_scp_role = is_storage_sop_class
        self.policy = AcceptorPolicy(
            self.ae_title,
            require_called_ae=require_called_ae,
            allowed_calling_aes=allowed_calling_aes,
            supported=_supported(contexts),
            max_pdu=max_pdu,
            accept_scp_role=accept_scp_role,
            authenticate=authenticate,
            require_user_identity=require_user_identity,
            extended_negotiation=extended_negotiation,
        )
        self.host: str | None = None
        self.port: int | None = None
        self._listener: socket.socket | None = None
        # Made readable by shutdown() to wake every waiting thread; created by _bind().
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._serving: set[threading.Thread] = set()     # association threads
        self._rejecting: set[threading.Thread] = set()   # over-limit connections being refused
        self._abandoned: set[threading.Thread] = set()   # stuck in a handler the watchdog gave up on
        self._accept_thread: threading.Thread | None = None
        self._accept_done = threading.Event()

    def __repr__(self) -> str:
        where = f" on {self.host}:{self.port}" if self.port is not None else ""
        return f"<Server {self.ae_title!r}{where}, {self.active_associations} association(s)>"

    # --------------------------------------------------------------- control
    @property
    def active_associations(self) -> int:
        """How many associations are being served right now."""
        with self._lock:
            return len(self._serving)

    @property
    def abandoned_threads(self) -> int:
        """Association threads still stuck in a handler call the watchdog gave
        up on (their associations are aborted; see ``handler_timeout``)."""
        with self._lock:
            return sum(1 for t in self._abandoned if t.is_alive())

    def start(self, host: str = "127.0.0.1", port: int = 0) -> Server:
        """Listen on ``host:port`` (0: any free port, then see :attr:`port`) and
        serve on a background thread. Returns the server (a context manager)."""
        self._bind(host, port)
        self._accept_thread = threading.Thread(target=self._accept_loop, name=f"dicomnet-accept-{self.port}",
                                               daemon=True)
        self._accept_thread.start()
        return self

    def listen_and_serve(self, host: str = "127.0.0.1", port: int = 11112) -> None:
        """Listen on ``host:port`` and serve on this thread until :meth:`shutdown`
        (from another thread) or KeyboardInterrupt."""
        self._bind(host, port)
        try:
            self._accept_loop()
        finally:
            self.shutdown()

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop accepting, abort the open associations (a handler that is running
        finishes first), and join every thread, waiting at most ``timeout`` s
        per thread. Idempotent."""
        if not self._stopping.is_set():
            self._stopping.set()
            if self._wake_w is not None:
                try:
                    self._wake_w.send(b"x")  # stays readable: wakes every waiting thread
                except OSError:
                    pass
        if self._accept_thread is not None and self._accept_thread is not threading.current_thread():
            self._accept_thread.join(timeout)
        elif self._listener is not None:  # listen_and_serve() on another thread
            self._accept_done.wait(timeout)
        if self._listener is not None:
            self._listener.close()  # new connections are refused from now on
            self._listener = None
        with self._lock:
            # A handler may call shutdown() from its own association thread.
            threads = [t for t in self._serving | self._rejecting if t is not threading.current_thread()]
        for thread in threads:
            thread.join(timeout)
            if thread.is_alive():
                self.logger.warning("%s did not stop within %.1f s", thread.name, timeout)
        self._watchdog.stop(timeout)
        stuck = self.abandoned_threads
        if stuck:
            self.logger.warning("%d abandoned handler thread(s) still running at shutdown "
                                "(Python threads cannot be killed)", stuck)
        with self._lock:
            self._close_wake_if_done()

    def _close_wake_if_done(self) -> None:
        """Under ``_lock``: once shut down and no other thread of ours runs, close
        the wake-up socket pair. Whichever comes last calls it -- shutdown(), or
        an association thread that outlived shutdown's wait -- so nothing is
        left open behind a shutdown that returned early."""
        if not self._stopping.is_set() or self._wake_r is None:
            return
        me = threading.current_thread()
        others = self._serving | self._rejecting | self._abandoned
        accept = self._accept_thread
        if accept is not None:
            others = others | {accept}
        if any(t is not me and t.is_alive() for t in others):
            return
        for sock in (self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self._wake_r = self._wake_w = None

    def __enter__(self) -> Server:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.shutdown()

    # -------------------------------------------------------------- accepting
    def _bind(self, host: str, port: int) -> None:
        if self._listener is not None:
            raise RuntimeError("the server is already listening")
        if self._stopping.is_set():
            raise RuntimeError("the server was shut down; create a new one")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((host, port))
            listener.listen(128)
            listener.setblocking(False)
        except BaseException:
            listener.close()
            raise
        self._wake_r, self._wake_w = socket.socketpair()
        self._listener = listener
        self._watchdog.start()
        self.host, self.port = listener.getsockname()[:2]
        self.logger.info("%s listening on %s:%d", self.ae_title, self.host, self.port)

    def _accept_loop(self) -> None:
        import selectors

        listener, wake = self._listener, self._wake_r
        assert listener is not None and wake is not None
        selector = selectors.DefaultSelector()
        selector.register(listener, selectors.EVENT_READ)
        selector.register(wake, selectors.EVENT_READ)
        try:
            while not self._stopping.is_set():
                for key, _ in selector.select():
                    if key.fileobj is wake or self._stopping.is_set():
                        return
                    try:
                        sock, address = listener.accept()
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError as exc:  # e.g. EMFILE: back off a little, keep serving
                        self.logger.warning("accept failed: %s", exc)
                        time.sleep(0.05)
                        continue
                    self._dispatch_connection(sock, address)
        finally:
            selector.close()
            self._accept_done.set()
            self.logger.info("%s stopped accepting connections", self.ae_title)

    def _dispatch_connection(self, sock: socket.socket, address: Any) -> None:
        prepare_socket(sock)
        peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
        if self.allowed_peers is not None and not _peer_allowed(address, self.allowed_peers):
            self.logger.warning("connection from %s closed: not in allowed_peers", peer)
            sock.close()
            return
        with self._lock:
            over_limit = len(self._serving) >= self.max_associations
            pool = self._rejecting if over_limit else self._serving
            if over_limit and len(self._rejecting) >= _MAX_REJECTORS:
                self.logger.warning("connection from %s closed: too many associations", peer)
                sock.close()
                return
            thread = threading.Thread(target=self._run_connection, args=(sock, peer, over_limit),
                                      name=f"dicomnet-assoc-{peer}", daemon=True)
            pool.add(thread)
        thread.start()

    # ------------------------------------------------------- one association
    def _run_connection(self, sock: socket.socket, peer: str, over_limit: bool) -> None:
        log = self.logger
        assert self._wake_r is not None
        driver_class: type[SyncDriver] = SyncDriver
        if self.tls is not None:
            from .transport.tls import TLSSyncDriver, server_handshake

            try:
                sock = server_handshake(sock, self.tls, self.artim_timeout, self._wake_r.fileno())
            except (OSError, DicomNetError, Interrupted) as exc:  # the socket is closed
                log.warning("TLS handshake with %s failed: %s: %s", peer, type(exc).__name__, exc)
                with self._lock:
                    self._serving.discard(threading.current_thread())
                    self._rejecting.discard(threading.current_thread())
                    self._close_wake_if_done()
                return
            driver_class = TLSSyncDriver
        conn = Connection("acceptor", max_pdu=self.max_pdu, artim_timeout=self.artim_timeout, logger=log)
        driver = driver_class(sock, conn, read_timeout=self.read_timeout, write_timeout=self.write_timeout,
                              logger=log, interrupt_fd=self._wake_r.fileno(), busy_poll=self.busy_poll)
        assoc: Association | None = None
        guard = self._watchdog.register(peer)
        guard.driver = driver
        try:
            conn.transport_connected(time.monotonic())
            event = driver.receive_event(self.artim_timeout + 1.0)  # ARTIM (Sta2) fires first
            if not isinstance(event, ev.AssociateRequest):
                log.info("connection from %s ended before an A-ASSOCIATE-RQ (%s)", peer,
                         "ARTIM expired" if driver.timer_expired else type(event).__name__)
                return
            rq = event.rq
            if conn.state != "Sta3":
                # More arrived with the RQ (a second RQ, garbage): the state
                # machine has already aborted (AA-8); nothing left to answer.
                log.info("association request from %s aborted before our answer (%s)", peer, conn.state)
                self._wait_closed(driver)
                return
            if over_limit:
                self._reject(driver, AAssociateRJ(AAssociateRJ.RESULT_REJECTED_TRANSIENT,
                                                  AAssociateRJ.SOURCE_SERVICE_PROVIDER_PRESENTATION,
                                                  AAssociateRJ.REASON_LOCAL_LIMIT_EXCEEDED), rq.calling_ae, peer)
                return
            try:
                # Timed like a handler call: authenticate / extended_negotiation are the application's code.
                answer = guard.call("authenticate/negotiation", negotiate, rq, self.policy)
            except Exception:  # an authenticate / extended_negotiation callback failed
                log.exception("negotiating with %s failed; rejecting", peer)
                answer = AAssociateRJ(AAssociateRJ.RESULT_REJECTED_PERMANENT, AAssociateRJ.SOURCE_SERVICE_USER,
                                      AAssociateRJ.REASON_NO_REASON_GIVEN)
            if isinstance(answer, AAssociateRJ):
                self._reject(driver, answer, rq.calling_ae, peer)
                return
            negotiated = conn.accept(answer)
            driver.flush()
            log.info("association accepted: %s -> %s from %s (%d of %d context(s))", rq.calling_ae,
                     rq.called_ae, peer, len(negotiated.contexts), len(rq.presentation_contexts))
            assoc = Association(driver, negotiated, rq=rq, ac=answer, dimse_timeout=self.dimse_timeout,
                                logger=log)
            # Over the cap the assembler raises PDUError as the cap is crossed: the association is aborted.
            assoc._assembler.max_dataset_bytes = self.max_dataset_bytes
            guard.assoc = assoc
            info = AssociationInfo(rq.calling_ae, rq.called_ae, driver.peer_address, negotiated, rq, answer)
            hook = getattr(self.handler, "on_association", None)
            if hook is not None:
                try:
                    hook(info)
                except Exception:
                    log.exception("on_association handler failed (the association goes on)")
            self._serve(assoc, info)
        except HandlerAbandoned:
            # The watchdog aborted this association (see _abandon); wait for
            # that to finish, then close what is left. The late result is dropped.
            log.warning("handler %s for %s returned after %.1f s, long after the watchdog gave up on it; "
                        "its result is dropped", guard.name, peer, time.monotonic() - guard.started)
            if guard.aborter is not None:
                guard.aborter.join(_ABORT_JOIN)
        except Interrupted:
            log.info("server shutting down: aborting the association with %s", peer)
            driver.await_peer_close = False         # shutting down: no waiting for peers
            if assoc is not None:
                assoc.abort()
            elif not driver.closed and conn.state not in ("Sta1", "Sta13"):
                try:
                    conn.abort(now=time.monotonic())
                    driver.flush()
                except (Interrupted, DicomNetError, OSError):
                    pass  # closing below is all that is left to do
        except (DicomNetError, OSError) as exc:
            log.warning("association with %s ended: %s: %s", peer, type(exc).__name__, exc)
            if assoc is not None:
                assoc.abort()
        except Exception:
            log.exception("unexpected error serving %s; aborting", peer)
            if assoc is not None:
                assoc.abort()
        finally:
            self._watchdog.unregister(guard)
            if guard.abandoned and guard.aborter is not None:
                guard.aborter.join(_ABORT_JOIN)  # never close under the aborting thread's feet
            driver.close()
            if assoc is not None and assoc._assembler.in_progress:
                # Ended mid-message: a half-streamed C-STORE leaves no temporary
                # file or fd behind (not even while a traceback holds assoc).
                assoc._assembler.reset()
            with self._lock:
                self._serving.discard(threading.current_thread())
                self._rejecting.discard(threading.current_thread())
                self._abandoned.discard(threading.current_thread())
                self._close_wake_if_done()

    def move_tls_context(self, destination_ae: str) -> ssl.SSLContext | None:
        """The TLS context for a C-MOVE sub-association to ``destination_ae``
        (None: plain TCP); see ``move_tls``."""
        tls = self.move_tls
        if tls is None or isinstance(tls, ssl.SSLContext):
            return tls
        return tls.get(destination_ae.strip())

    # --------------------------------------------------------- the watchdog
    def _abandon(self, guard: HandlerGuard) -> None:
        """On the watchdog thread: ``guard``'s handler call ran past
        ``handler_timeout``. Release the slot and abort the association on a
        short-lived thread (the A-ABORT write can take up to a few seconds;
        the watchdog must not wait for it)."""
        thread = guard.thread
        with self._lock:
            self._serving.discard(thread)
            self._abandoned.add(thread)
            self.handler_timeouts += 1
            stuck = sum(1 for t in self._abandoned if t.is_alive())
        self.logger.warning(
            "handler %s for %s still running after %.1f s (handler_timeout): aborting the association and "
            "releasing its slot; the thread cannot be killed and is abandoned (%d abandoned handler "
            "thread(s) running)", guard.name, guard.peer, time.monotonic() - guard.started, stuck)
        aborter = threading.Thread(target=self._abort_abandoned, args=(guard,), daemon=True,
                                   name=f"dicomnet-abort-{guard.peer}")
        guard.aborter = aborter
        aborter.start()

    def _abort_abandoned(self, guard: HandlerGuard) -> None:
        """A-ABORT (PS3.8 7.3.1, source service-user) and close, for an
        association whose own thread is stuck in its handler. That thread
        touches the association again only after this finishes (it joins us)."""
        assoc = guard.assoc
        if assoc is None:
            self._abort_unestablished(guard.driver)
            return
        try:
            driver = assoc._driver
            driver.write_timeout = min(driver.write_timeout, _ABORT_WRITE_TIMEOUT)
            assoc.abort()
        except Exception:  # noqa: BLE001 - whatever happens, the socket gets closed
            self.logger.exception("aborting the association with %s failed", guard.peer)
            try:
                assoc._driver.close()
            except Exception:  # noqa: BLE001
                pass

    def _abort_unestablished(self, driver: SyncDriver) -> None:
        """A-ABORT while the A-ASSOCIATE-RQ waits for our answer (Sta3; PS3.8 AA-1), then close."""
        driver.write_timeout = min(driver.write_timeout, _ABORT_WRITE_TIMEOUT)
        try:
            if driver.conn.state not in ("Sta1", "Sta13"):
                driver.conn.abort(now=time.monotonic())
            driver.flush()
        except (DicomNetError, OSError, Interrupted) as exc:
            self.logger.debug("while aborting: %s", exc)
        except Exception:  # noqa: BLE001 - whatever happens, the socket gets closed
            self.logger.exception("aborting the unestablished association failed")
        finally:
            driver.close()

    def _reject(self, driver: SyncDriver, rj: AAssociateRJ, calling_ae: str, peer: str) -> None:
        """Send A-ASSOCIATE-RJ and wait (ARTIM) for the requestor to close (PS3.8 AE-8, Sta13)."""
        self.logger.info("association from %r at %s rejected: %s", calling_ae, peer, rj.description)
        driver.conn.reject(rj, time.monotonic())
        driver.flush()
        self._wait_closed(driver)

    def _wait_closed(self, driver: SyncDriver) -> None:
        """In Sta13: read until the peer closes or ARTIM expires (then we close)."""
        while not driver.closed:
            event = driver.receive_event(self.artim_timeout + 1.0)
            if isinstance(event, ev.ConnectionClosed):
                break
        driver.close()

    def _serve(self, assoc: Association, info: AssociationInfo) -> None:
        """The data-transfer loop: answer each message until release or abort."""
        # The handler's methods, C-STORE streaming sinks, and the compiled
        # lane (None where there is none: not POSIX).
        lane = _scp.attach(self, assoc, info)
        # The lane takes the P-DATA from the reader itself; what it leaves
        # goes the general way (Association._lane_next). Each PDU gets
        # read_timeout however many reads it takes, or a trickling peer would
        # never time out.
        assoc._lane = lane if lane is not None else False
        log = self.logger
        driver = assoc._driver
        conn = driver.conn
        while True:
            try:
                item = assoc._lane_next(self.read_timeout)
            except PDUError as exc:  # a PDV sequence or command set that breaks PS3.7/PS3.8
                log.warning("invalid DIMSE message from %s: %s; aborting", info.calling_ae, exc)
                assoc.abort()
                return
            if isinstance(item, Message):
                self._dispatch(assoc, info, item)
            elif isinstance(item, ev.ReleaseRequest):
                if conn.state == "Sta13":
                    continue                     # aborted on a PDU read with it (AA-8): the Abort comes next
                conn.confirm_release(time.monotonic())
                driver.flush()
                log.info("association with %s released", info.calling_ae)
                self._wait_closed(driver)
                return
            elif isinstance(item, ev.Abort):
                log.info("association with %s %s", info.calling_ae, item.description)
                return
            elif isinstance(item, ev.ConnectionClosed):
                log.info("association with %s: connection closed by the peer", info.calling_ae)
                return

    # ------------------------------------------------------------ dispatching
    def _dispatch(self, assoc: Association, info: AssociationInfo, message: Message) -> None:
        command = message.command
        field = command.get("CommandField")
        if field == 0x0030:  # CommandField.C_ECHO_RQ, as a literal: the enum lookup costs more than the rest
            self._on_echo(assoc, info, message)
        elif field == CommandField.C_STORE_RQ:
            _scp.handle_store(self, assoc, info, message)
        elif field == CommandField.C_FIND_RQ:
            _scp.handle_find(self, assoc, info, message)
        elif field == CommandField.C_MOVE_RQ:
            from .dimse.retrieve_scp import handle_move

            handle_move(self, assoc, info, message)
        elif field == CommandField.C_GET_RQ:
            from .dimse.retrieve_scp import handle_get

            handle_get(self, assoc, info, message)
        elif field == CommandField.C_CANCEL_RQ:
            # Nothing runs concurrently on this thread: a C-CANCEL can only
            # name an operation that has already finished (PS3.7 9.3.2.3).
            self.logger.debug("C-CANCEL for message %s: no such operation running", command.message_id)
        elif command.is_response:
            self.logger.warning("unexpected %r from %s; ignored", command, info.calling_ae)
        else:
            self._unrecognized(assoc, message)

    def _service_context(self, assoc: Association, info: AssociationInfo, message: Message) -> ServiceContext:
        return ServiceContext(info.calling_ae, info.called_ae, info.peer_address,
                              assoc.negotiated.contexts[message.context_id], message.command.message_id or 0,
                              message.command, info, self.logger)

    def _on_echo(self, assoc: Association, info: AssociationInfo, message: Message) -> None:
        message_id = message.command.message_id or 0
        handler = assoc._on_echo            # looked up once per association (dimse.scp.attach)
        status, comment = STATUS_SUCCESS, None
        if handler is not None:
            try:
                result = handler(self._service_context(assoc, info, message))
                if result is not None:
                    if not isinstance(result, int) or not 0 <= result <= 0xFFFF:
                        raise TypeError(f"on_echo returned {result!r}, not a status (int) or None")
                    status = int(result)
            except Exception as exc:
                self.logger.exception("on_echo handler failed")
                status, comment = STATUS_PROCESSING_FAILURE, _error_comment(exc)
        rsp = c_echo_rsp(message_id, status)
        if comment is not None:
            rsp["ErrorComment"] = comment
        assoc._send_message(message.context_id, rsp)

    def _unrecognized(self, assoc: Association, message: Message) -> None:
        command = message.command
        field = command.get("CommandField")
        self.logger.warning("unsupported command %r; answering 0x%04X", command, STATUS_UNRECOGNIZED_OPERATION)
        rsp = Command(CommandField=(int(field or 0) | 0x8000) & 0xFFFF,
                      MessageIDBeingRespondedTo=command.message_id or 0,
                      CommandDataSetType=NO_DATASET, Status=STATUS_UNRECOGNIZED_OPERATION)
        sop_class = command.get("AffectedSOPClassUID") or command.get("RequestedSOPClassUID")
        if sop_class:
            rsp["AffectedSOPClassUID"] = sop_class
        assoc._send_message(message.context_id, rsp)


def _check_move_tls(move_tls: Any) -> ssl.SSLContext | dict[str, ssl.SSLContext | None] | None:
    """``move_tls`` checked: client-side contexts only (a server-side one cannot connect)."""
    def check(ctx: Any, what: str) -> None:
        if not isinstance(ctx, ssl.SSLContext):
            raise TypeError(f"{what} must be an ssl.SSLContext, not {type(ctx).__name__}")
        if ctx.protocol == ssl.PROTOCOL_TLS_SERVER:
            raise ValueError(f"{what} is a server-side context; C-MOVE sub-associations need a client-side "
                             "one (dicomnet.transport.tls.make_context(server_side=False, ...))")

    if move_tls is None:
        return None
    if isinstance(move_tls, Mapping):
        out: dict[str, ssl.SSLContext | None] = {}
        for ae, ctx in move_tls.items():
            if ctx is not None:
                check(ctx, f"move_tls[{ae!r}]")
            out[str(ae).strip()] = ctx
        return out
    check(move_tls, "move_tls")
    return move_tls


def _peer_allowed(address: Any, networks: Sequence[Any]) -> bool:
    """Whether the peer's IP address lies in one of ``networks``."""
    try:
        ip = ipaddress.ip_address(str(address[0]).split("%")[0])
    except (ValueError, TypeError, IndexError):
        return False
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:a.b.c.d on a dual-stack socket
    return any(ip in net or (mapped is not None and mapped in net) for net in networks)


def _error_comment(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    text = text.encode("ascii", "replace").decode("ascii")
    return text[:_MAX_ERROR_COMMENT]
