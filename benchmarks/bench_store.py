"""C-STORE throughput: dicomnet against dcmtk and pynetdicom, measured in one run.

N CT instances (512x512 uint16, ~0.5 MB each, generated here) are written to
files on tmpfs (/dev/shm) and sent over one association on loopback:

(a) dicomnet Client -> dicomnet Server, the server streaming each data set
    straight into a Part 10 file (``store_destination``), in its own process;
    the client sends with ``assoc.store_many(paths)`` (one operation at a time,
    the next file mapped while the server stores the last), and once more with
    one ``assoc.store(path)`` call per file;
(b) dcmtk ``storescu`` -> ``storescp -od DIR`` (TCP_NODELAY=1, ``-pdu 131072``);
(c) pynetdicom -> pynetdicom (the SCP writes the received bytes to a file
    without decoding them -- pynetdicom's documented fast path);
(d) dicomnet Client -> ``storescp --ignore`` and (e) ``storescu`` -> ``storescp
    --ignore``: the sending side alone.

Every receiver runs in its own process and takes PDUs of 131072 bytes; the
time is from association request to release confirmation (for dcmtk: the
``storescu`` process). Prints a table with the ratios the project targets
(dicomnet >= 1.5x dcmtk, >= 20x pynetdicom), plus the CPU time each side
used per instance -- on a small shared machine the wall times are noisy, the
CPU times much less so. ``--quick`` uses 120 instances (about 10 s).
``BENCH_SCP_PDU=N`` in the environment changes the dicomnet SCP's maximum PDU
(dcmtk's storescp cannot go beyond 131072).

    python benchmarks/bench_store.py [--quick] [--count N] [--repeat N] [--profile]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import free_port, serve_process, wait_port  # noqa: E402

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
PDU = 131072
SCP_AE = "STORESCP"


# ------------------------------------------------------------------- data
def generate(folder: Path, count: int) -> list[str]:
    """``count`` CT files of 512x512 uint16 (Explicit VR LE) in ``folder``."""
    from dicomnet.dicom import Dataset, write_file

    rng = np.random.default_rng(7)
    pixels = (rng.integers(0, 4096, size=(512, 512), dtype=np.uint16)).tobytes()
    study, series = "2.25.1001", "2.25.1002"
    paths = []
    for i in range(count):
        ds = Dataset()
        ds.SOPClassUID = CT
        ds.SOPInstanceUID = f"2.25.1003.{i + 1}"
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.PatientName = "Bench^Store"
        ds.PatientID = "BENCH"
        ds.Modality = "CT"
        ds.InstanceNumber = i + 1
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = 512
        ds.Columns = 512
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.set("PixelData", pixels, "OW")
        path = folder / f"ct{i:04d}.dcm"
        write_file(path, ds, EXPLICIT)
        paths.append(str(path))
    return paths


# ------------------------------------------------------------------ peers
def cpu_of(pid: int) -> float:
    """User + system CPU seconds a (live) process has used so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _env() -> dict[str, str]:
    return dict(os.environ, TCP_NODELAY="1")


@contextmanager
def storescp(out: Path | None) -> Iterator[tuple[int, int]]:
    port = free_port()
    args = ["storescp", "-aet", SCP_AE, "-pdu", str(PDU)]
    args += ["--ignore"] if out is None else ["-od", str(out)]
    proc = subprocess.Popen(args + [str(port)], env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc)
        yield port, proc.pid
    finally:
        proc.kill()
        proc.wait()


@contextmanager
def python_scp(kind: str, out: Path) -> Iterator[tuple[int, int]]:
    """This script in ``--serve kind OUT`` mode, in its own process."""
    with serve_process([sys.executable, __file__, "--serve", kind, str(out)], f"{kind} SCP") as served:
        yield served


def serve(kind: str, out: str) -> None:
    """Helper-process mode: a storage SCP writing every instance under ``out``."""
    if kind == "dicomnet":
        from dicomnet import Server

        class Streamer:
            def store_destination(self, ctx: object, command: dict[str, str]) -> str:
                return os.path.join(out, command["AffectedSOPInstanceUID"] + ".dcm")

        server = Server(SCP_AE, Streamer(), max_pdu=int(os.environ.get("BENCH_SCP_PDU", PDU))).start("127.0.0.1", 0)
        print(f"READY {server.port}", flush=True)
        sys.stdin.read()
        server.shutdown()
        return
    from pydicom.filewriter import write_file_meta_info
    from pynetdicom import AE, AllStoragePresentationContexts, evt

    def on_store(event: object) -> int:
        request = event.request  # type: ignore[attr-defined]
        path = os.path.join(out, request.AffectedSOPInstanceUID + ".dcm")
        with open(path, "wb") as f:
            f.write(b"\x00" * 128 + b"DICM")
            write_file_meta_info(f, event.file_meta, enforce_standard=True)  # type: ignore[attr-defined]
            f.write(request.DataSet.getvalue())
        return 0

    ae = AE(SCP_AE)
    ae.supported_contexts = AllStoragePresentationContexts
    ae.maximum_pdu_size = PDU
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    print(f"READY {server.server_address[1]}", flush=True)
    sys.stdin.read()
    server.shutdown()


# ---------------------------------------------------------------- senders
def send_dicomnet_each(port: int, paths: list[str]) -> tuple[float, float]:
    """One ``assoc.store(path)`` call per file."""
    return send_dicomnet(port, paths, batch=False)


def send_dicomnet(port: int, paths: list[str], profile: bool = False, batch: bool = True) -> tuple[float, float]:
    """``assoc.store_many`` (the next file is prepared while the peer stores the
    last), or with ``batch=False`` one ``assoc.store(path)`` per file."""
    from dicomnet import Client

    client = Client("STORESCU", max_pdu=PDU)
    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    start, cpu = time.perf_counter(), time.process_time()
    with client.associate("127.0.0.1", port, SCP_AE, contexts=[(CT, [EXPLICIT])]) as assoc:
        if batch:
            for _, status, _ in assoc.store_many(paths):
                if status != 0:
                    raise RuntimeError(f"C-STORE status 0x{status:04X}")
        else:
            for path in paths:
                status = assoc.store(path)
                if status != 0:
                    raise RuntimeError(f"C-STORE status 0x{status:04X}")
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    if prof is not None:
        import pstats

        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(18)
    return elapsed, cpu


def send_storescu(port: int, paths: list[str]) -> tuple[float, float]:
    import resource

    args = ["storescu", "-aet", "STORESCU", "-aec", SCP_AE, "-pdu", str(PDU), "127.0.0.1", str(port), *paths]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(args, env=_env(), capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if done.returncode != 0 or "E:" in done.stderr:
        raise RuntimeError(f"storescu failed: {done.stderr[-500:]}")
    return elapsed, cpu


def send_pynetdicom(port: int, paths: list[str]) -> tuple[float, float]:
    import logging

    from pynetdicom import AE

    logging.getLogger("pynetdicom").setLevel(logging.ERROR)
    ae = AE("STORESCU")
    ae.maximum_pdu_size = PDU
    ae.add_requested_context(CT, [EXPLICIT])
    start, cpu = time.perf_counter(), time.process_time()
    assoc = ae.associate("127.0.0.1", port, ae_title=SCP_AE)
    if not assoc.is_established:
        raise RuntimeError("pynetdicom could not associate")
    for path in paths:
        status = assoc.send_c_store(path)
        if getattr(status, "Status", None) != 0:
            state = "established" if assoc.is_established else ("aborted" if assoc.is_aborted else "closed")
            assoc.abort()
            raise RuntimeError(f"pynetdicom C-STORE of {os.path.basename(path)} got no success "
                               f"(status {getattr(status, 'Status', None)}, association {state})")
    assoc.release()
    return time.perf_counter() - start, time.process_time() - cpu


def _check(out: Path, count: int, label: str) -> None:
    got = [n for n in os.listdir(out) if not n.startswith(".")]
    if len(got) != count:
        raise RuntimeError(f"{label}: {len(got)} files received, expected {count}")
    shutil.rmtree(out)
    out.mkdir()


# ------------------------------------------------------------------- main
OURS = "dicomnet -> dicomnet (streaming to files)"
OURS_EACH = "  same, one assoc.store() per file"
DCMTK = "storescu -> storescp"
PYNETDICOM = "pynetdicom -> pynetdicom"
OURS_IGNORE = "dicomnet client -> storescp --ignore"
DCMTK_IGNORE = "storescu -> storescp --ignore"


def report(results: dict[str, tuple[float, float, float]], count: int, size: int) -> None:
    """The table: wall time, rates, CPU per instance on each side, ratios."""
    print()
    print(f"{'case':<40} {'seconds':>8} {'inst/s':>7} {'MB/s':>6} {'SCU ms/inst':>11} {'SCP ms/inst':>11}"
          f" {'x dicomnet':>10}")
    for label, (wall, ccpu, scpu) in results.items():
        base = results.get(OURS_IGNORE if "--ignore" in label else OURS, (wall,))[0]
        print(f"{label:<40} {wall:8.3f} {count / wall:7.0f} {size / 1e6 / wall:6.0f} {1e3 * ccpu / count:11.3f}"
              f" {1e3 * scpu / count:11.3f} {wall / base:10.2f}")
    print("(SCU/SCP ms/inst: CPU time, user + system, of each side per instance)")
    print()

    def ratio(name: str, theirs: str, ours: str, target: float | None) -> None:
        if theirs in results and ours in results:
            r = results[theirs][0] / results[ours][0]
            cpu = sum(results[theirs][1:]) / sum(results[ours][1:])
            verdict = "" if target is None else (" OK" if r >= target else " BELOW TARGET")
            goal = "" if target is None else f" (target >= {target:g}x)"
            print(f"{name:<34} {r:6.2f}x wall{goal}{verdict}; {cpu:5.2f}x less CPU in total")

    ratio("dicomnet vs dcmtk:", DCMTK, OURS, 1.5)
    ratio("dicomnet vs pynetdicom:", PYNETDICOM, OURS, 20)
    ratio("sender only, dicomnet vs storescu:", DCMTK_IGNORE, OURS_IGNORE, None)
    print(f"load average while running: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPU(s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="120 instances")
    parser.add_argument("--count", type=int, default=None, help="instances (default 500, --quick 120)")
    parser.add_argument("--repeat", type=int, default=None, help="runs per case, best kept (default 3)")
    parser.add_argument("--profile", action="store_true", help="cProfile the dicomnet client run")
    parser.add_argument("--serve", nargs=2, metavar=("KIND", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(*args.serve)
        return
    count = args.count or (120 if args.quick else 500)
    repeat = args.repeat or 3
    have_dcmtk = shutil.which("storescu") is not None and shutil.which("storescp") is not None
    try:
        import pynetdicom  # noqa: F401

        have_pynetdicom = True
    except ImportError:
        have_pynetdicom = False
    root = Path(tempfile.mkdtemp(prefix="dicomnet-bench-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    try:
        src, out = root / "src", root / "out"
        src.mkdir()
        out.mkdir()
        t0 = time.perf_counter()
        paths = generate(src, count)
        size = sum(os.path.getsize(p) for p in paths)
        print(f"{count} CT instances, {size / 1e6:.0f} MB, generated in {time.perf_counter() - t0:.1f} s "
              f"(files on {root}); best of {repeat}")
        # label -> (wall seconds, client CPU seconds, server CPU seconds), best wall of `repeat`
        results: dict[str, tuple[float, float, float]] = {}

        def run(label: str, sender: Callable[[int, list[str]], tuple[float, float]],
                server: Callable[[], Any], check: str | None) -> None:
            runs = []
            failures = 0
            while len(runs) < repeat:
                try:
                    with server() as (port, pid):
                        cpu0 = cpu_of(pid)
                        wall, client_cpu = sender(port, paths)
                        server_cpu = cpu_of(pid) - cpu0
                    if check:
                        _check(out, count, check)
                except (RuntimeError, OSError) as exc:
                    # A peer that fails now and then is reported, not allowed to end the run.
                    failures += 1
                    print(f"  {label}: run failed ({exc}); {'retrying' if failures < 3 else 'giving up'}")
                    shutil.rmtree(out, ignore_errors=True)
                    out.mkdir()
                    if failures >= 3:
                        return
                    continue
                runs.append((wall, client_cpu, server_cpu))
            results[label] = min(runs)
            print(f"  {label:<40} {results[label][0]:7.3f} s", flush=True)

        run(OURS, send_dicomnet, lambda: python_scp("dicomnet", out), "dicomnet")
        run(OURS_EACH, send_dicomnet_each, lambda: python_scp("dicomnet", out), "dicomnet")
        if have_dcmtk:
            run(DCMTK, send_storescu, lambda: storescp(out), "dcmtk")
        if have_pynetdicom:
            run(PYNETDICOM, send_pynetdicom, lambda: python_scp("pynetdicom", out), "pynetdicom")
        if have_dcmtk:
            run(OURS_IGNORE, send_dicomnet, lambda: storescp(None), None)
            run(DCMTK_IGNORE, send_storescu, lambda: storescp(None), None)
        if args.profile:
            with python_scp("dicomnet", out) as (port, _):
                send_dicomnet(port, paths, profile=True)
        report(results, count, size)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
