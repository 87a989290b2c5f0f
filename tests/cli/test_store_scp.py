"""``dicomnet store-scp``: the real console script as a subprocess, fed by
``dicomnet store`` and by a hand-driven association (hostile UIDs, an
interrupted transfer)."""
from __future__ import annotations

import importlib.util
import json
import os
import select
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dicomnet import Client, read_file, write_file
from dicomnet.dimse.commands import c_store_rq, encode_command
from dicomnet.errors import AssociationAborted
from dicomnet.samples.synthetic import generate

_spec = importlib.util.spec_from_file_location("cli_run", Path(__file__).with_name("_run.py"))
_run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_run)
run = _run.run

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"


class Daemon:
    """A ``dicomnet`` server subcommand as a subprocess on a port the kernel
    picks (``--port 0 --json``: the first stdout line says which)."""

    def __init__(self, *args: str, start_timeout: float = 20.0) -> None:
        self.args = args
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.first: dict = {}

    def __enter__(self) -> Daemon:
        if sys.platform == "win32":
            # Windows' select() takes sockets only, and its SIGTERM is
            # TerminateProcess: no clean shutdown for these tests to check.
            pytest.skip("a daemon subcommand is watched with select() on a pipe and stopped with SIGTERM")
        env = dict(os.environ, PYTHONIOENCODING="utf-8")
        self.proc = subprocess.Popen([*_run.command(), *self.args, "--port", "0", "--json"], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + self.start_timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if ready:
                line = self.proc.stdout.readline()
                if not line:
                    break
                self.first = json.loads(line)
                if self.first.get("event") == "listening":
                    self.port = int(self.first["port"])
                    return self
        self.stop(signal.SIGKILL)
        raise RuntimeError(f"{self.args[0]} did not start: {self.proc.stderr.read() if self.proc.stderr else ''}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> tuple[int, str, str]:
        """Send ``sig``; (exit code, rest of stdout, stderr)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture(scope="module")
def ct_files(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("ct")
    paths = []
    for n, ds in enumerate(generate(patients=1, studies=1, series=2, instances=2, seed=3)):
        path = root / f"ct{n}.dcm"
        write_file(path, ds)
        paths.append(path)
    return paths


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _same_instance(received: Path, sent: Path) -> None:
    a, b = read_file(received), read_file(sent)
    assert a.SOPInstanceUID == b.SOPInstanceUID and a.file_meta.MediaStorageSOPInstanceUID == b.SOPInstanceUID
    assert bytes(a["PixelData"].value) == bytes(b["PixelData"].value)


def test_store_scp_writes_flat_files_and_stops_on_sigterm(tmp_path, ct_files):
    out = tmp_path / "out"
    with Daemon("store-scp", "--out", str(out), "--aet", "MY-SCP") as scp:
        assert scp.first["ae_title"] == "MY-SCP"
        r = run("store", "127.0.0.1", str(scp.port), *map(str, ct_files), "--aec", "MY-SCP")
        assert r.returncode == 0, r.stderr
        code, rest, err = scp.stop()
    assert code == 0, err
    records = [json.loads(line) for line in rest.splitlines()]
    assert records[-1]["summary"] and records[-1]["received"] == 4 and records[-1]["refused"] == 0
    got = _files(out)
    assert [p.name for p in got] == sorted(f"{read_file(p).SOPInstanceUID}.dcm" for p in ct_files)
    for sent in ct_files:
        _same_instance(out / f"{read_file(sent).SOPInstanceUID}.dcm", sent)


def test_store_scp_study_layout(tmp_path, ct_files):
    out = tmp_path / "out"
    with Daemon("store-scp", "--out", str(out), "--layout", "study") as scp:
        r = run("store", "127.0.0.1", str(scp.port), *map(str, ct_files))
        assert r.returncode == 0, r.stderr
        assert scp.stop()[0] == 0
    got = [p for p in _files(out)]
    expected = sorted(out / ds.StudyInstanceUID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"
                      for ds in map(read_file, ct_files))
    assert sorted(got) == expected
    assert not any((out / ".incoming").iterdir())


def test_store_scp_ignore_writes_nothing(tmp_path, ct_files):
    with Daemon("store-scp", "--ignore") as scp:
        r = run("store", "127.0.0.1", str(scp.port), *map(str, ct_files), "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout.splitlines()[-1])["sent"] == 4
        code, rest, _ = scp.stop()
    assert code == 0 and json.loads(rest.splitlines()[-1])["received"] == 4
    r = run("store-scp", "--port", "0")            # neither --out nor --ignore
    assert r.returncode == 1 and "output folder" in r.stderr


def _pdv(context_id: int, data: bytes, *, command: bool, last: bool) -> bytes:
    """One P-DATA-TF PDU (PS3.8 9.3.5) holding one PDV: item length, context
    ID, message control header (bit 0 command, bit 1 last fragment)."""
    item = bytes([context_id, (1 if command else 0) | (2 if last else 0)]) + data
    body = struct.pack(">I", len(item)) + item
    return struct.pack(">BBI", 0x04, 0, len(body)) + body


@pytest.mark.parametrize("uid", ["../x", "/etc/passwd", "1.2.3\0/../../y", "1." + "2" * 70, "1.2.03", "..", ""])
def test_store_scp_refuses_hostile_sop_instance_uids(tmp_path, ct_files, uid):
    out = tmp_path / "in" / "out"
    data = bytes(read_file(ct_files[0]).encode(EXPLICIT))
    with Daemon("store-scp", "--out", str(out)) as scp:
        with Client("HOSTILE").associate("127.0.0.1", scp.port, "ANY", contexts=[(CT, [EXPLICIT])]) as assoc:
            ctx = assoc.context_for(CT)
            # The command is hand-encoded: our own SCU would not send such a UID.
            rq = c_store_rq(7, CT, "1.2.3", 0)
            raw = bytearray(encode_command(rq))
            good = b"1.2.3\0"
            at = raw.index(good)
            value = uid.encode("latin-1")
            value += b"\0" * (len(value) % 2)
            raw[at - 4:at + len(good)] = struct.pack("<I", len(value)) + value   # (0000,1000), implicit VR
            raw[8:12] = struct.pack("<I", len(raw) - 12)                        # (0000,0000) group length
            sock = assoc._driver.sock
            sock.sendall(_pdv(ctx.context_id, bytes(raw), command=True, last=True))
            sock.sendall(_pdv(ctx.context_id, data, command=False, last=True))
            try:
                rsp = assoc._receive_response(7, 10)
            except AssociationAborted:
                # A command set the server cannot decode at all (a UI value over
                # 64 characters) ends the association: refused just the same.
                aborted = True
            else:
                aborted = False
                assert rsp.status is not None and rsp.status >= 0xA000, hex(rsp.status or 0)
                assert assoc.store(ct_files[1]) == 0        # the association goes on
        if aborted:
            with Client("NEXT").associate("127.0.0.1", scp.port, "ANY", contexts=[(CT, [EXPLICIT])]) as assoc:
                assert assoc.store(ct_files[1]) == 0
        code, _, err = scp.stop()
        assert code == 0
    assert [p.name for p in _files(tmp_path)] == [f"{read_file(ct_files[1]).SOPInstanceUID}.dcm"]
    assert not os.path.exists("/etc/passwd.dcm")


def test_sigterm_mid_transfer_leaves_no_partial_file(tmp_path, ct_files):
    out = tmp_path / "out"
    data = bytes(read_file(ct_files[0]).encode(EXPLICIT))
    with Daemon("store-scp", "--out", str(out)) as scp:
        client = Client("SLOW", read_timeout=20)
        assoc = client.associate("127.0.0.1", scp.port, "ANY", contexts=[(CT, [EXPLICIT])])
        try:
            ctx = assoc.context_for(CT)
            rq = encode_command(c_store_rq(1, CT, read_file(ct_files[0]).SOPInstanceUID, 0))
            sock = assoc._driver.sock
            sock.sendall(_pdv(ctx.context_id, rq, command=True, last=True))
            sock.sendall(_pdv(ctx.context_id, data[: len(data) // 2], command=False, last=False))
            deadline = time.monotonic() + 10
            while not list(out.glob(".*.part")) and time.monotonic() < deadline:
                time.sleep(0.02)
            assert list(out.glob(".*.part")), "the data set was not being streamed to a temporary file"
            started = time.monotonic()
            code, _, err = scp.stop(signal.SIGTERM)
            assert code == 0, err
            assert time.monotonic() - started < 10
        finally:
            assoc.abort()
    assert _files(out) == [], err                      # neither the temporary nor a final file


def test_bench_store_against_store_scp_ignore(tmp_path):
    with Daemon("store-scp", "--ignore") as scp:
        r = run("bench", "store", "127.0.0.1", str(scp.port), "--count", "20", "--rows", "64", "--cols", "32",
                "--frames", "2", "--json")
        assert r.returncode == 0, r.stderr
        obj = json.loads(r.stdout)
        code, rest, _ = scp.stop()
    assert obj["ok"] and obj["failed"] == 0 and obj["count"] == 20
    assert obj["bytes"] > 20 * 64 * 32 * 2 * 2           # at least the pixel data of every frame
    assert obj["instances_per_s"] > 0 and obj["mb_per_s"] > 0
    assert json.loads(rest.splitlines()[-1])["received"] == 20
    with Daemon("store-scp", "--out", str(tmp_path)) as scp:
        r = run("bench", "store", "127.0.0.1", str(scp.port), "--count", "3", "--rows", "16", "--cols", "16")
        scp.stop()
    assert r.returncode == 0, r.stderr
    assert "sent 3 of 3" in r.stdout and "instances/s" in r.stdout and "MB/s" in r.stdout
    assert len(list(tmp_path.glob("*.dcm"))) == 3
    r = run("bench", "store", "127.0.0.1", "1", "--count", "0")
    assert r.returncode == 2


def test_sweep_removes_only_our_own_temporary_files(tmp_path):
    from dicomnet.cli.store_scp import StoreSCPHandler

    handler = StoreSCPHandler(str(tmp_path), layout="study")
    ours = [tmp_path / f".1.2.3.dcm.{os.getpid()}.7.part", tmp_path / ".incoming" / f".1.2.4.dcm.{os.getpid()}.8.part"]
    (tmp_path / ".incoming").mkdir()
    keep = [tmp_path / f".1.2.3.dcm.{os.getpid() + 1}.7.part", tmp_path / "1.2.3.dcm", tmp_path / ".hidden"]
    for path in ours + keep:
        path.write_bytes(b"x")
    assert handler.sweep_temporary_files() == 2
    assert sorted(_files(tmp_path)) == sorted(keep)
