"""The command-line tools as a user runs them: whole processes, start-up included.

1. Throughput: N CT files (512x512 uint16, default 1,000; ``--quick`` 300)
   on tmpfs (/dev/shm) sent over loopback by one sending process to one
   receiving process that writes them to a folder on tmpfs:

   (a) ``dicomnet store 127.0.0.1 P DIR`` -> ``dicomnet store-scp --port P --out OUT``;
   (b) ``storescu -pdu 131072 ... +sd DIR`` -> ``storescp -pdu 131072 -od OUT``
       (dcmtk, TCP_NODELAY=1 for both).

   The receiver is started first and waited for (its start-up time is shown
   apart); the time measured is the sending process from ``exec`` to exit,
   interpreter start-up and imports included. The received files are counted.

2. Memory: ``dicomnet store-scp`` receiving ONE multi-frame instance of 1 GB
   (``--quick``: 512 MB; less when the machine has not the memory for it)
   sent by ``dicomnet store``. The store-scp process's VmRSS is sampled from
   /proc/PID/status every 10 ms during the transfer; the peak is reported, with
   the kernel's own high-water mark (VmHWM) as a cross-check. Target < 100 MB:
   the SCP streams the data set to disk. The big files are deleted afterwards.

    python benchmarks/bench_cli.py [--quick] [--count N] [--big-mb N] [--repeat N]
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt, free_port, print_table, wait_port, write_ct_series, write_multiframe  # noqa: E402

PDU = 131072
SCP_AE = "ANY-SCP"


def dicomnet_exe() -> str:
    """The ``dicomnet`` console script next to this interpreter (else on PATH)."""
    here = Path(sys.executable).parent / "dicomnet"
    if here.exists():
        return str(here)
    found = shutil.which("dicomnet")
    if found is None:
        raise SystemExit("the dicomnet command is not installed (pip install -e .)")
    return found


def _env() -> dict[str, str]:
    return dict(os.environ, TCP_NODELAY="1")


@contextmanager
def receiver(args: list[str], port: int) -> Iterator[tuple[subprocess.Popen[bytes], float]]:
    """Start a receiving process; yield it and the seconds it took to listen; stop it (SIGTERM)."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port(port, proc)
        yield proc, time.perf_counter() - start
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run_sender(args: list[str]) -> float:
    """Wall seconds of one sending process, start-up included; raises when it fails."""
    start = time.perf_counter()
    done = subprocess.run(args, env=_env(), capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - start
    if done.returncode != 0 or "E:" in done.stderr:
        raise RuntimeError(f"{args[0]} exited with {done.returncode}: {done.stderr[-800:]}")
    return elapsed


def count_files(folder: Path) -> int:
    return sum(len([n for n in names if not n.startswith(".")]) for _, _, names in os.walk(folder))


def _reset(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()


# ------------------------------------------------------------- throughput
def throughput(src: Path, out: Path, count: int, repeat: int) -> dict[str, tuple[float, float, float]]:
    """label -> (best sender wall seconds, receiver start-up seconds, echo process seconds)."""
    exe = dicomnet_exe()
    results: dict[str, tuple[float, float, float]] = {}

    def case(label: str, scp_args: list[str], scu_args: list[str], echo_args: list[str], port: int) -> None:
        runs = []
        for _ in range(repeat):
            _reset(out)
            with receiver(scp_args, port) as (_proc, ready):
                wall = run_sender(scu_args)
                # The fixed cost of a run: a process that starts, associates, echoes and releases.
                echo = run_sender(echo_args)
            got = count_files(out)
            if got != count:
                raise RuntimeError(f"{label}: {got} files received, expected {count}")
            runs.append((wall, ready, echo))
        results[label] = min(runs)
        print(f"  {label:<28} {results[label][0]:7.3f} s   ({count} files received)", flush=True)

    port = free_port()
    case("dicomnet store -> store-scp",
         [exe, "store-scp", "--port", str(port), "--out", str(out), "-q"],
         [exe, "store", "-q", "127.0.0.1", str(port), str(src)],
         [exe, "echo", "-q", "127.0.0.1", str(port)], port)
    if shutil.which("storescu") and shutil.which("storescp"):
        port = free_port()
        case("storescu -> storescp (dcmtk)",
             ["storescp", "-aet", SCP_AE, "-pdu", str(PDU), "-od", str(out), str(port)],
             ["storescu", "-aet", "STORESCU", "-aec", SCP_AE, "-pdu", str(PDU), "+sd", "127.0.0.1", str(port),
              str(src)],
             ["echoscu", "-aet", "STORESCU", "-aec", SCP_AE, "127.0.0.1", str(port)], port)
    else:
        print("  dcmtk (storescu/storescp) not found: its row is left out")
    return results


# ----------------------------------------------------------------- memory
def _status_kib(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class RssSampler(threading.Thread):
    """VmRSS of the processes ``pids`` every ``interval`` seconds; the peaks in KiB."""

    def __init__(self, pids: list[int], interval: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.interval = interval
        self.peak = {pid: 0 for pid in pids}
        self.samples = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            for pid in self.pids:
                rss = _status_kib(pid, "VmRSS")
                if rss is not None and rss > self.peak[pid]:
                    self.peak[pid] = rss
            self.samples += 1
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def available_mib() -> int:
    """MemAvailable from /proc/meminfo (what ``free -m`` shows as available), in MiB."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    raise RuntimeError("MemAvailable not in /proc/meminfo")


def memory(root: Path, want_mb: int) -> list[list[str]] | None:
    """Send one big multi-frame instance; the rows of the memory table."""
    exe = dicomnet_exe()
    # The source and the received copy both live on tmpfs (RAM): keep 2x headroom beyond them.
    avail = min(available_mib(), shutil.disk_usage(root).free // 2**20)
    size_mb = min(want_mb, avail // 4)
    print(f"\nmemory: {avail} MiB available; sending one {size_mb} MB instance"
          + ("" if size_mb == want_mb else f" (not {want_mb} MB: not enough free memory)"))
    if size_mb < 64:
        print("  not enough memory for a meaningful run: skipped")
        return None
    big_dir, out = root / "big", root / "big-out"
    big_dir.mkdir()
    out.mkdir()
    try:
        big = big_dir / "multiframe.dcm"
        t0 = time.perf_counter()
        frames = write_multiframe(big, size_mb * 1_000_000)
        size = big.stat().st_size
        print(f"  {frames} frames, {size / 1e6:.0f} MB written in {time.perf_counter() - t0:.1f} s")
        port = free_port()
        with receiver([exe, "store-scp", "--port", str(port), "--out", str(out), "-q"], port) as (scp, _):
            idle = _status_kib(scp.pid, "VmRSS") or 0
            idle_hwm = _status_kib(scp.pid, "VmHWM") or 0
            start = time.perf_counter()
            sender = subprocess.Popen([exe, "store", "-q", "127.0.0.1", str(port), str(big)], env=_env(),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            sampler = RssSampler([scp.pid, sender.pid])
            sampler.start()
            try:
                _, err = sender.communicate(timeout=600)
            finally:
                sampler.stop()
            wall = time.perf_counter() - start
            hwm = _status_kib(scp.pid, "VmHWM") or 0
            if sender.returncode != 0:
                raise RuntimeError(f"dicomnet store exited with {sender.returncode}: {err[-800:]}")
        received = [p for p in out.rglob("*") if p.is_file()]
        if len(received) != 1 or received[0].stat().st_size < frames * 512 * 512 * 2:
            raise RuntimeError(f"expected one file of >= {frames * 512 * 512 * 2} bytes, got "
                               f"{[(p.name, p.stat().st_size) for p in received]}")
        peak = sampler.peak[scp.pid]
        verdict = "OK" if max(peak, hwm) < 100 * 1024 else "ABOVE TARGET"
        print(f"  transfer {wall:.2f} s ({size / 1e6 / wall:.0f} MB/s), {sampler.samples} samples; "
              f"received {received[0].stat().st_size / 1e6:.0f} MB")
        return [
            ["store-scp, idle before the transfer", fmt(idle / 1024, "MiB"), ""],
            ["store-scp, peak VmRSS (10 ms samples)", fmt(peak / 1024, "MiB"), f"target < 100 MB: {verdict}"],
            ["store-scp, VmHWM before the transfer", fmt(idle_hwm / 1024, "MiB"), "start-up included"],
            ["store-scp, VmHWM after the transfer", fmt(hwm / 1024, "MiB"), "kernel's peak, whole life"],
            ["store (sender), peak VmRSS", fmt(sampler.peak[sender.pid] / 1024, "MiB"),
             "the file is memory-mapped: its pages count"],
        ]
    finally:
        shutil.rmtree(big_dir, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)


# ------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="300 files and a 512 MB instance")
    parser.add_argument("--count", type=int, default=None, help="CT files (default 1000, --quick 300)")
    parser.add_argument("--big-mb", type=int, default=None, help="the big instance in MB (default 1000, --quick 512)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per throughput case, best kept (default 1)")
    args = parser.parse_args()
    count = args.count or (300 if args.quick else 1000)
    big_mb = args.big_mb or (512 if args.quick else 1000)
    root = Path(tempfile.mkdtemp(prefix="dicomnet-bench-cli-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    try:
        src, out = root / "src", root / "out"
        src.mkdir()
        out.mkdir()
        t0 = time.perf_counter()
        paths = write_ct_series(src, count)
        size = sum(os.path.getsize(p) for p in paths)
        print(f"{count} CT files, {size / 1e6:.0f} MB, written in {time.perf_counter() - t0:.1f} s (on {root})")
        results = throughput(src, out, count, args.repeat)
        _reset(out)
        ours = results["dicomnet store -> store-scp"][0]
        rows = [[label, f"{wall:.3f}", fmt(count / wall), fmt(size / 1e6 / wall), f"{ready:.2f}", f"{echo:.3f}",
                 f"{wall / ours:.2f}x"] for label, (wall, ready, echo) in results.items()]
        print_table(f"CLI C-STORE, {count} files, sending process wall time (start-up included)",
                    ["case", "seconds", "files/s", "MB/s", "SCP start s", "echo process s", "time x"], rows)
        print("(SCP start: until the receiver listens; echo process: dicomnet echo / echoscu against it, "
              "the fixed cost of a run)")
        dcmtk = results.get("storescu -> storescp (dcmtk)")
        if dcmtk:
            r = dcmtk[0] / ours
            print(f"\ndicomnet vs dcmtk: {r:.2f}x (target >= 1x){' OK' if r >= 1 else ' BELOW TARGET'}")
        mem_rows = memory(root, big_mb)
        if mem_rows:
            print_table("dicomnet store-scp memory while receiving one big instance",
                        ["process", "memory", "note"], mem_rows)
        print(f"load average while running: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPU(s)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
