"""The DICOM client (association requestor, usually the SCU).

>>> from dicomnet import Client
>>> client = Client("MY_SCU")
>>> with client.associate("127.0.0.1", 11112, "ANY-SCP") as assoc:   # doctest: +SKIP
...     assoc.echo()
0
"""
from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Iterable, Sequence

from .association import Association
from .errors import ARTIMTimeout, AssociationAborted, AssociationError, AssociationRejected, ReadTimeout
from .pdu import events as ev
from .pdu.connection import Connection
from .pdu.items import (AsyncOperationsWindow, RoleSelection, SOPClassCommonExtendedNegotiation,
                         SOPClassExtendedNegotiation, UserIdentityRQ)
from .pdu.negotiation import DEFAULT_MAX_PDU, UNCOMPRESSED_TRANSFER_SYNTAXES, build_associate_rq, check_max_pdu
from .pdu.pdus import validate_ae_title
from .transport.sync import DEFAULT_BUSY_POLL, SyncDriver, check_timeout, open_connection

__all__ = ["Client", "ContextSpec"]

#: A presentation context to propose: an abstract syntax UID (proposed with
#: Explicit and Implicit VR Little Endian) or ``(abstract_syntax, [transfer syntaxes])``
#: (a single transfer syntax UID may stand for the list).
ContextSpec = str | tuple[str, Sequence[str]]


def _normalise_contexts(contexts: Iterable[ContextSpec] | None) -> list[tuple[str, Sequence[str]]] | None:
    if contexts is None:
        return None
    out: list[tuple[str, Sequence[str]]] = []
    for spec in contexts:
        if isinstance(spec, str):
            out.append((spec, UNCOMPRESSED_TRANSFER_SYNTAXES))
        else:
            abstract, syntaxes = spec
            # One transfer syntax may be given as a plain UID string.
            out.append((str(abstract), (syntaxes,) if isinstance(syntaxes, str) else tuple(syntaxes)))
    return out


class Client:
    """Opens associations to DICOM peers.

    ``ae_title`` is our calling AE title. Timeouts, in seconds:
    ``connect_timeout`` for the TCP connection, ``read_timeout`` for any wait
    on the peer outside a DIMSE exchange (and the A-ASSOCIATE answer, whose
    limit is the ARTIM timer ``artim_timeout``), ``write_timeout`` for the
    peer to take our data, ``dimse_timeout`` for a DIMSE response to begin
    and for each further PDU of it.
    ``max_pdu`` is the largest P-DATA-TF PDU we offer to receive (0: no limit).
    ``tls`` (an ``ssl.SSLContext``, see :func:`dicomnet.transport.tls.make_context`)
    runs every association over TLS (PS3.15 Annex B); the server's certificate
    is checked against ``tls_server_hostname`` (default: the host connected to).
    ``busy_poll`` (seconds, default 50 us; 0: off) is how long a wait for the
    peer first looks for its answer without sleeping, which spares a fast
    peer's reply the wake-up latency of a blocking wait; it is adaptive and
    stops while answers take longer (see :mod:`dicomnet.transport.sync`).
    """

    def __init__(
        self,
        ae_title: str = "DICOMNET",
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
        write_timeout: float = 30.0,
        dimse_timeout: float = 30.0,
        artim_timeout: float = 30.0,
        max_pdu: int = DEFAULT_MAX_PDU,
        logger: logging.Logger | None = None,
        tls: ssl.SSLContext | None = None,
        tls_server_hostname: str | None = None,
        busy_poll: float = DEFAULT_BUSY_POLL,
    ) -> None:
        self.ae_title = validate_ae_title(ae_title, "ae_title")
        for name, value in (("connect_timeout", connect_timeout), ("read_timeout", read_timeout),
                            ("write_timeout", write_timeout), ("dimse_timeout", dimse_timeout),
                            ("artim_timeout", artim_timeout)):
            check_timeout(name, value)
        check_max_pdu(max_pdu)
        if not busy_poll >= 0:
            raise ValueError(f"busy_poll must be >= 0 seconds, got {busy_poll!r}")
        self.connect_timeout = float(connect_timeout)
        self.read_timeout = float(read_timeout)
        self.write_timeout = float(write_timeout)
        self.dimse_timeout = float(dimse_timeout)
        self.artim_timeout = float(artim_timeout)
        self.max_pdu = max_pdu
        self.logger = logger or logging.getLogger("dicomnet")
        self.tls = tls
        self.tls_server_hostname = tls_server_hostname
        self.busy_poll = float(busy_poll)

    def __repr__(self) -> str:
        return f"Client({self.ae_title!r})"

    def associate(
        self,
        host: str,
        port: int,
        called_ae: str = "ANY-SCP",
        *,
        contexts: Iterable[ContextSpec] | None = None,
        user_identity: UserIdentityRQ | None = None,
        role_selections: Iterable[RoleSelection | tuple[str, bool, bool]] = (),
        extended_negotiations: Iterable[SOPClassExtendedNegotiation] = (),
        common_extended_negotiations: Iterable[SOPClassCommonExtendedNegotiation] = (),
        max_pdu: int | None = None,
        for_get: bool = False,
        async_operations: int = 1,
    ) -> Association:
        """Open an association with the peer at ``host:port`` (AE ``called_ae``).

        ``contexts`` lists the presentation contexts to propose (see
        :data:`ContextSpec`); None proposes dicomnet's default abstract syntaxes.
        ``for_get`` adds an SCP/SCU Role Selection item (SCP role only) for each
        storage SOP class proposed, so that C-GET can deliver into them (see
        :func:`dicomnet.dimse.retrieve.get_role_selections`), and offers to
        take several C-STORE sub-operations without a response in between (an
        Asynchronous Operations Window, :func:`~dicomnet.dimse.retrieve.get_async_window`).
        ``async_operations`` > 1 (or 0: no limit) proposes to invoke that many
        operations asynchronously (the same window item): when the peer
        accepts, ``store_many`` keeps up to that many C-STOREs outstanding
        instead of waiting for each response (``assoc.negotiated.max_invoked``).
        Returns the established :class:`Association`.

        Raises :class:`AssociationRejected` (``result``/``source``/``reason``
        and their meaning in ``description``), :class:`AssociationAborted`,
        :class:`ConnectTimeout`, :class:`ARTIMTimeout` (no answer to the
        A-ASSOCIATE-RQ in time), :class:`WriteTimeout`; ``OSError`` if the TCP
        connection is refused.
        """
        log = self.logger
        our_max = self.max_pdu if max_pdu is None else check_max_pdu(max_pdu)
        if not 0 <= async_operations <= 0xFFFF:
            raise ValueError(f"async_operations must be 0..65535 (0: no limit), got {async_operations}")
        async_ops = None if async_operations == 1 else AsyncOperationsWindow(async_operations, 1)
        if for_get:
            from .dimse.retrieve import get_async_window, get_role_selections

            get_window = get_async_window()
            async_ops = AsyncOperationsWindow(async_operations, get_window.max_performed)
            contexts = None if contexts is None else list(contexts)
            role_selections = list(role_selections)
            given = {(r.sop_class_uid if isinstance(r, RoleSelection) else str(r[0])) for r in role_selections}
            role_selections += [r for r in get_role_selections(contexts) if r.sop_class_uid not in given]
        rq = build_associate_rq(
            self.ae_title,
            validate_ae_title(called_ae, "called_ae"),
            _normalise_contexts(contexts),
            max_pdu=our_max,
            role_selections=role_selections,
            extended_negotiations=extended_negotiations,
            common_extended_negotiations=common_extended_negotiations,
            user_identity=user_identity,
            async_ops=async_ops,
        )
        sock = open_connection(host, port, self.connect_timeout)
        driver_class: type[SyncDriver] = SyncDriver
        if self.tls is not None:
            from .transport.tls import TLSSyncDriver, client_handshake

            sock = client_handshake(sock, self.tls, self.tls_server_hostname or host, self.connect_timeout)
            driver_class = TLSSyncDriver
        conn = Connection("requestor", max_pdu=our_max, artim_timeout=self.artim_timeout, logger=log)
        driver = driver_class(sock, conn, read_timeout=self.read_timeout, write_timeout=self.write_timeout,
                              logger=log, busy_poll=self.busy_poll)
        try:
            # Never log the RQ itself: its user identity may hold a passcode.
            log.info("requesting association %s -> %s at %s:%d (%d context(s))",
                     self.ae_title, rq.called_ae, host, port, len(rq.presentation_contexts))
            conn.request_association(rq, time.monotonic())
            driver.flush()
            # The Connection's own timer (artim_timeout) bounds the wait in Sta5;
            # the read limit a little later is only a backstop.
            event = driver.receive_event(self.artim_timeout + 1.0)
            while isinstance(event, ev.PDataReceived):  # pragma: no cover - not possible in Sta5
                event = driver.receive_event(self.artim_timeout + 1.0)
        except ReadTimeout:
            driver.close()
            raise ARTIMTimeout(f"no answer to the A-ASSOCIATE-RQ within {self.artim_timeout:g} s") from None
        except BaseException:
            driver.close()
            raise
        if isinstance(event, ev.AssociateAccept):
            negotiated = event.negotiated
            log.info("association accepted by %s (%d of %d context(s), peer max PDU %d, peer %s %s)",
                     rq.called_ae, len(negotiated.contexts), len(rq.presentation_contexts),
                     negotiated.peer_max_pdu, negotiated.peer_implementation_class_uid,
                     negotiated.peer_implementation_version_name or "")
            return Association(driver, negotiated, rq=rq, ac=event.ac, dimse_timeout=self.dimse_timeout,
                               logger=log)
        driver.close()
        if isinstance(event, ev.AssociateReject):
            rj = event.rj
            log.info("association rejected by %s: %s", rq.called_ae, rj.description)
            raise AssociationRejected(rj.result, rj.source, rj.reason, rj.description)
        if isinstance(event, ev.Abort):
            if driver.timer_expired:
                raise ARTIMTimeout(f"no answer to the A-ASSOCIATE-RQ within {self.artim_timeout:g} s")
            log.info("association request %s", event.description)
            raise AssociationAborted(event.source, event.reason, event.description)
        if isinstance(event, ev.ConnectionClosed):
            raise AssociationAborted(description="the peer closed the connection without answering "
                                                 "the A-ASSOCIATE-RQ")
        raise AssociationError(f"unexpected {type(event).__name__} while associating")  # pragma: no cover
