"""The --tls-* options of the command line: echo over TLS to a TLS store-scp,
with and without a client certificate, and clear errors for bad files."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="the openssl command is needed to make certificates")
CLI = [sys.executable, "-m", "dicomnet"]


def _openssl(*args: str, cwd: str) -> None:
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, str]:
    d = str(tmp_path_factory.mktemp("pki"))
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=ca", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"),
                      ("client", "extendedKeyUsage=clientAuth\n")):
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(ext)
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.crt", "-days", "2", "-sha256", "-extfile", f"{name}.ext", cwd=d)
    return {n: os.path.join(d, n) for n in ("ca", "server", "client")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def tls_scp(pki, tmp_path):
    """A `dicomnet store-scp` that requires TLS with client certificates.

    Its output goes to a file, not an unread pipe. Should it not exit within
    10 s of SIGTERM (seen once in CI, never reproduced), SIGABRT makes
    Python's faulthandler dump every thread's stack there, and the test
    fails with that dump."""
    port = _free_port()
    log_path = tmp_path / "store-scp.log"
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONFAULTHANDLER="1")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(CLI + ["store-scp", "--port", str(port), "--out", str(out), "-q",
                                       "--tls-cert", pki["server"] + ".crt", "--tls-key", pki["server"] + ".key",
                                       "--tls-ca", pki["ca"] + ".crt"],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield port
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        pytest.fail("store-scp did not exit within 10 s of SIGTERM; its output and stacks:\n"
                    + log_path.read_text(errors="replace"))


def _echo(port: int, *tls: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(CLI + ["echo", "127.0.0.1", str(port), "--timeout", "5", *tls],
                          capture_output=True, text=True, timeout=60)


def test_echo_over_tls_with_a_client_certificate(pki, tls_scp):
    done = _echo(tls_scp, "--tls-ca", pki["ca"] + ".crt",
                 "--tls-cert", pki["client"] + ".crt", "--tls-key", pki["client"] + ".key")
    assert done.returncode == 0, done.stderr
    assert "Success" in done.stdout


def test_tls_server_refuses_a_client_without_certificate(pki, tls_scp):
    done = _echo(tls_scp, "--tls-ca", pki["ca"] + ".crt")
    assert done.returncode != 0
    assert "Success" not in done.stdout


def test_plain_client_cannot_talk_to_a_tls_server(tls_scp):
    done = _echo(tls_scp)
    assert done.returncode != 0


def test_missing_certificate_file_is_a_clear_error(tmp_path):
    done = _echo(_free_port(), "--tls-ca", str(tmp_path / "nope.crt"))
    assert done.returncode == 1
    assert "TLS set-up failed" in done.stderr
    assert "Traceback" not in done.stderr
