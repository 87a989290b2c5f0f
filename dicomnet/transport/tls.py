"""TLS for the blocking driver: DICOM secure transport (PS3.15 Annex B).

PS3.15 B.1 (the TLS Secure Transport Connection Profile) runs the unchanged
Upper Layer protocol over a TLS connection; nothing in the PDUs changes. So
the sans-IO :class:`~dicomnet.pdu.connection.Connection` stays as it is and
only the byte pipe differs:

* :func:`client_handshake` / :func:`server_handshake` wrap a connected,
  non-blocking TCP socket in an ``ssl.SSLSocket`` and complete the handshake
  within a deadline (the server does it on the association's own thread, never
  in the accept loop, bounded by ARTIM).
* :class:`TLSSyncDriver` is the blocking driver over that socket: TLS records
  cannot be written with ``sendmsg`` scatter/gather, so the outgoing buffers
  are coalesced into pieces of up to :data:`WRITE_PIECE` bytes (TLS copies
  them to encrypt anyway); a read waits on the socket *or* on bytes OpenSSL
  has already decrypted (``SSLSocket.pending()``), which ``poll`` cannot see.

Client certificates: give the server an ``ssl.SSLContext`` with
``verify_mode = ssl.CERT_REQUIRED`` and ``load_verify_locations(ca)``; the
client's context then needs ``load_cert_chain``. :func:`make_context` builds
either side from file names.
"""
from __future__ import annotations

import select
import socket
import ssl
import time
from collections.abc import Sequence

from ..errors import ConnectTimeout
from .sync import MAX_OS_WAIT, Interrupted, SyncDriver

__all__ = ["TLSSyncDriver", "client_handshake", "server_handshake", "make_context", "WRITE_PIECE"]

#: Largest piece handed to one ``SSLSocket.send`` (a few 16 KiB TLS records).
WRITE_PIECE = 256 * 1024
#: The TLS 1.2 suites either side takes (TLS 1.3 has its own, all acceptable):
#: CPython's own default, set here because a Python built with
#: ``--with-ssl-default-suites=openssl``, as Debian's python3 is, would otherwise
#: also take SHA-1 CBC suites and RSA key exchange (the retired AES profile of
#: PS3.15 B.3, which the BCP 195 profiles leave out).
_TLS12_CIPHERS = "@SECLEVEL=2:ECDH+AESGCM:ECDH+CHACHA20:ECDH+AES:DHE+AES:!aNULL:!eNULL:!aDSS:!SHA1:!AESCCM"
_monotonic = time.monotonic


def make_context(*, server_side: bool, cert: str | None = None, key: str | None = None,
                 ca: str | None = None, require_client_cert: bool = False,
                 check_hostname: bool = True) -> ssl.SSLContext:
    """An ``ssl.SSLContext`` for DICOM TLS (TLS 1.2 or later).

    Server: ``cert``/``key`` are its certificate chain and key (required);
    ``ca`` with ``require_client_cert`` makes client certificates mandatory.
    Client: ``ca`` verifies the server (None: the system's default CAs);
    ``cert``/``key`` present a client certificate; ``check_hostname`` checks
    the server's name (or IP address) against its certificate.
    """
    if server_side:
        if not cert:
            raise ValueError("a TLS server needs a certificate (cert=)")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        if ca:
            ctx.load_verify_locations(ca)
        if require_client_cert:
            if not ca:
                raise ValueError("require_client_cert needs ca= to verify client certificates")
            ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = check_hostname
        if ca:
            ctx.load_verify_locations(ca)
        else:
            ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
        if cert:
            ctx.load_cert_chain(cert, key)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(_TLS12_CIPHERS)
    return ctx


def _handshake(tls: ssl.SSLSocket, timeout: float, interrupt_fd: int | None, what: str) -> None:
    deadline = _monotonic() + timeout
    while True:
        try:
            tls.do_handshake()
            return
        except ssl.SSLWantReadError:
            writing = False
        except ssl.SSLWantWriteError:
            writing = True
        remaining = deadline - _monotonic()
        if remaining <= 0:
            raise ConnectTimeout(f"TLS handshake {what} not complete within {timeout:g} s")
        if _wait_fds(tls.fileno(), writing, interrupt_fd, remaining):
            raise Interrupted()


def _wait_fds(fd: int, writing: bool, interrupt_fd: int | None, seconds: float) -> bool:
    """Wait until ``fd`` is ready or ``seconds`` pass (at most MAX_OS_WAIT);
    True if ``interrupt_fd`` became readable. poll() where there is one
    (select() fails above fd 1023)."""
    seconds = min(seconds, MAX_OS_WAIT)
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLOUT if writing else select.POLLIN)
        if interrupt_fd is not None:
            poller.register(interrupt_fd, select.POLLIN)
        return any(ready == interrupt_fd for ready, _ in poller.poll(seconds * 1000.0 + 1.0))
    rlist = [] if writing else [fd]
    if interrupt_fd is not None:
        rlist.append(interrupt_fd)
    r, _, _ = select.select(rlist, [fd] if writing else [], [], seconds)
    return interrupt_fd is not None and interrupt_fd in r


def client_handshake(sock: socket.socket, context: ssl.SSLContext, server_hostname: str | None,
                     timeout: float) -> ssl.SSLSocket:
    """Wrap the connected ``sock`` as a TLS client and complete the handshake
    within ``timeout`` s (:class:`ConnectTimeout`; certificate problems raise
    ``ssl.SSLError``). ``sock`` is closed when the handshake fails."""
    try:
        tls = context.wrap_socket(sock, server_side=False, do_handshake_on_connect=False,
                                  server_hostname=server_hostname)
    except BaseException:
        sock.close()
        raise
    try:
        tls.setblocking(False)
        _handshake(tls, timeout, None, "with the server")
    except BaseException:
        tls.close()
        raise
    return tls


def server_handshake(sock: socket.socket, context: ssl.SSLContext, timeout: float,
                     interrupt_fd: int | None = None) -> ssl.SSLSocket:
    """Wrap the accepted ``sock`` as a TLS server and complete the handshake
    within ``timeout`` s. Raises :class:`ConnectTimeout`, ``ssl.SSLError``
    (e.g. no or a bad client certificate) or :class:`Interrupted`; ``sock``
    is closed when the handshake fails."""
    try:
        tls = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
    except BaseException:
        sock.close()
        raise
    try:
        tls.setblocking(False)
        _handshake(tls, timeout, interrupt_fd, "with the client")
    except BaseException:
        tls.close()
        raise
    return tls


class TLSSyncDriver(SyncDriver):
    """:class:`~dicomnet.transport.sync.SyncDriver` over an ``ssl.SSLSocket``
    whose handshake is done (see the module docstring for what differs)."""

    def __init__(self, sock: ssl.SSLSocket, *args: object, **kwargs: object) -> None:
        if not isinstance(sock, ssl.SSLSocket):
            raise TypeError("TLSSyncDriver needs an ssl.SSLSocket")
        super().__init__(sock, *args, **kwargs)  # type: ignore[arg-type]
        self._log.debug("TLS %s, cipher %s", sock.version(), (sock.cipher() or ("?",))[0])

    def _write_all(self, buffers: Sequence[bytes | memoryview]) -> None:
        sock = self.sock
        assert sock is not None
        piece = bytearray()
        for buf in buffers:
            piece += buf
            if len(piece) >= WRITE_PIECE:
                if not self._send_piece(sock, piece):
                    return
                piece = bytearray()
        if piece:
            self._send_piece(sock, piece)

    def _send_piece(self, sock: socket.socket, piece: bytearray) -> bool:
        view = memoryview(piece)
        deadline = _monotonic() + self.write_timeout
        while len(view):
            try:
                sent = sock.send(view)
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError, InterruptedError) as exc:
                deadline = self._wait_writable(deadline) if not isinstance(exc, ssl.SSLWantReadError) \
                    else self._wait_tls_read(deadline)
                continue
            except OSError as exc:
                self._transport_failed(exc)
                return False
            view = view[sent:]
            deadline = _monotonic() + self.write_timeout
        return True

    def _wait_tls_read(self, deadline: float) -> float:
        # A write that needs to read first (TLS 1.3 post-handshake messages).
        remaining = deadline - _monotonic()
        if remaining <= 0:
            return self._wait_writable(deadline)  # raises WriteTimeout
        self._wait(remaining, writing=False)
        return deadline

    def _receive_some(self, act: bool = True) -> None:
        sock = self.sock
        assert sock is not None
        try:
            n = sock.recv_into(self.conn.get_buffer(-1))
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError, InterruptedError):
            return
        except ssl.SSLZeroReturnError:
            n = 0  # close_notify: the peer closed the TLS session
        except OSError as exc:
            self._transport_failed(exc)
            return
        if n == 0:
            self._log.debug("peer closed the TLS connection")
            self.close()
            return
        if act:
            self.conn.buffer_updated(n, _monotonic())
        else:
            self.conn.buffer_filled(n, _monotonic())

    def _wait(self, seconds: float, *, writing: bool) -> bool:
        sock = self.sock
        if not writing and sock is not None and isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True  # decrypted bytes are waiting inside OpenSSL; poll cannot see them
        return super()._wait(seconds, writing=writing)
