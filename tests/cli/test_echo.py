"""``dicomnet echo``: the real console script against a dicomnet.Server on loopback."""
from __future__ import annotations

import importlib.util
import json
import socket
from pathlib import Path

import pytest

from dicomnet import Server

_spec = importlib.util.spec_from_file_location("cli_run", Path(__file__).with_name("_run.py"))
_run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_run)
run = _run.run


class Failing:
    def on_echo(self, ctx):
        return 0x0110


@pytest.fixture(scope="module")
def server():
    with Server("ANY-SCP").start("127.0.0.1", 0) as srv:
        yield srv


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_console_script_is_installed():
    assert Path(_run.command()[0]).name in ("dicomnet", Path(_run.sys.executable).name)
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith("dicomnet ")


def test_echo_success_in_words(server):
    r = run("echo", "127.0.0.1", str(server.port))
    assert r.returncode == 0, r.stderr
    assert f"C-ECHO 1 to ANY-SCP at 127.0.0.1:{server.port}: Success (0x0000)" in r.stdout
    assert r.stderr == ""


def test_echo_json_lines(server):
    r = run("echo", "127.0.0.1", str(server.port), "--json", "--count", "3", "--aet", "TESTER")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert [obj["sequence"] for obj in lines] == [1, 2, 3]
    for obj in lines:
        assert obj["ok"] is True and obj["status"] == 0 and obj["status_text"] == "Success"
        assert obj["calling_ae"] == "TESTER" and obj["called_ae"] == "ANY-SCP"
        assert obj["port"] == server.port and obj["elapsed_ms"] >= 0


def test_quiet_prints_nothing_on_success(server):
    r = run("echo", "127.0.0.1", str(server.port), "-q")
    assert r.returncode == 0 and r.stdout == "" and r.stderr == ""


def test_rejected_association_exits_3(server):
    r = run("echo", "127.0.0.1", str(server.port), "--aec", "SOMEONE-ELSE")
    assert r.returncode == 3
    assert "association rejected" in r.stderr and "called-AE-title-not-recognized" in r.stderr
    r = run("echo", "127.0.0.1", str(server.port), "--aec", "SOMEONE-ELSE", "--json")
    assert r.returncode == 3
    obj = json.loads(r.stdout)
    assert obj["ok"] is False and obj["error_type"] == "AssociationRejected"
    assert (obj["result"], obj["source"], obj["reason"]) == (1, 1, 7)


def test_unreachable_port_exits_4():
    port = _free_port()
    r = run("echo", "127.0.0.1", str(port), "--connect-timeout", "2")
    assert r.returncode == 4
    assert f"cannot connect to 127.0.0.1:{port}" in r.stderr
    r = run("echo", "127.0.0.1", str(port), "--json")
    assert r.returncode == 4 and json.loads(r.stdout)["ok"] is False


def test_failure_status_exits_1():
    with Server("ANY-SCP", Failing()).start("127.0.0.1", 0) as srv:
        r = run("echo", "127.0.0.1", str(srv.port))
        assert r.returncode == 1
        assert "Failure: processing failure (0x0110)" in r.stdout
        r = run("echo", "127.0.0.1", str(srv.port), "--json")
        assert r.returncode == 1 and json.loads(r.stdout)["status"] == 0x0110


def test_python_dash_m_and_usage_errors(server):
    r = run("echo", "127.0.0.1", str(server.port), module=True)
    assert r.returncode == 0 and "Success" in r.stdout
    r = run("echo", "127.0.0.1", module=True)          # PORT missing
    assert r.returncode == 2 and "usage:" in r.stderr
    r = run("echo", "127.0.0.1", "not-a-port")
    assert r.returncode == 2
    r = run("echo", "127.0.0.1", str(server.port), "--aet", "THIS-AE-TITLE-IS-FAR-TOO-LONG")
    assert r.returncode == 1 and "error" in r.stderr


def test_echo_busy_poll_option(server):
    r = run("echo", "127.0.0.1", str(server.port), "--busy-poll", "0", "--count", "2")
    assert r.returncode == 0, r.stderr
    r = run("echo", "127.0.0.1", str(server.port), "--busy-poll", "-5")
    assert r.returncode == 1
    assert "--busy-poll must be >= 0 microseconds" in r.stderr
