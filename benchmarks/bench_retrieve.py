"""C-GET and C-MOVE throughput: dicomnet against dcmtk and pynetdicom, measured in one run.

N CT instances (512x512 uint16, ~0.5 MB each, generated here as files on
tmpfs) are retrieved over loopback:

C-GET of the study into numpy (``pixel_array`` of every instance):
  (a) dicomnet Client <- dicomnet Server (``on_get`` returns the file paths,
      sent from disk without decoding), the server in its own process; the
      two negotiate an Asynchronous Operations Window (PS3.7 D.3.3.3), so the
      server keeps up to 8 C-STORE sub-operations (beyond two, within 1 MiB)
      out instead of waiting for each response -- a standard option dcmtk
      and pynetdicom do not offer;
  (b) dcmtk ``getscu`` <- ``dcmqrscp`` (getscu writes each instance to a file
      on tmpfs -- it has no in-memory numpy path, so this row does less work);
  (c) pynetdicom <- pynetdicom (the SCP yields ``dcmread`` datasets, the SCU's
      C-STORE handler takes ``event.dataset.pixel_array``).
C-GET from Orthanc (the study uploaded first through REST):
  (d) dicomnet Client into numpy, (e) ``getscu`` into files.
C-MOVE of the study to a storage SCP writing files on tmpfs:
  (f) dicomnet Client -> dicomnet Server -> ``dicomnet store-scp`` (the
      issue's dicomnet -> dicomnet row); the Server proposes an Asynchronous
      Operations Window of 8 to the destination (``move_async_operations``,
      off by default; ``BENCH_MOVE_WINDOW=1`` for one at a time), which
      store-scp accepts -- storescp answers without it, so (g) and (h) stay
      one at a time;
  (g) dicomnet Client -> dicomnet Server -> dcmtk ``storescp -od`` (our SCU
      side alone; storescp's own receive rate bounds this row);
  (h) ``movescu`` -> ``dcmqrscp`` -> storescp.

Every receiver takes PDUs of up to 131072 bytes; Nagle is off for every peer
(TCP_NODELAY=1). Times are wall seconds from association request to release,
best of ``--repeat``, run in rounds (one run of every case of a group -- C-GET,
C-GET from Orthanc, C-MOVE -- then the next round, all their peers up at
once, so that the cases compared meet the same slow phases of a shared
machine); the table prints instances/s and the ratios, and the
CPU time of each side: the retrieving client (this process, or getscu/
movescu), the SCP (with the children it forks: dcmqrscp forks one per
association) and, for C-MOVE, the destination storescp -- on a small shared
machine the wall times are noisy, the CPU times much less so. For C-MOVE the
client only waits: its CPU column is not a comparison. Last, the ratios
against the issue's targets.
``--quick`` uses 150 instances (well under 120 s in all); the default is 500.

    python benchmarks/bench_retrieve.py [--quick] [--count N] [--repeat N]
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import free_port, print_table, ratio, serve_process, wait_port  # noqa: E402
from bench_store import generate  # noqa: E402  (the same 512x512 CT files)

PDU = 131072
OURS_MOVE = "move: dicomnet -> dicomnet -> dicomnet store-scp"
MOVE_WINDOW = int(os.environ.get("BENCH_MOVE_WINDOW", 8))
STUDY = "2.25.1001"        # bench_store.generate's study
GET_STUDY = "1.2.840.10008.5.1.4.1.2.2.3"
MOVE_STUDY = "1.2.840.10008.5.1.4.1.2.2.2"
CT = "1.2.840.10008.5.1.4.1.1.2"


def _peers() -> Any:
    """tests/integration/peers.py (process management for Orthanc and dcmtk)."""
    spec = importlib.util.spec_from_file_location("bench_peers", HERE.parent / "tests" / "integration" / "peers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_peers"] = module
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------- helper processes
def serve(kind: str, folder: str, dest_port: str) -> None:
    """Helper-process mode: a C-GET/C-MOVE SCP over the files in ``folder``."""
    paths = sorted(os.path.join(folder, n) for n in os.listdir(folder))
    if kind == "dicomnet":
        from dicomnet import Server

        class Source:
            def on_get(self, ctx: Any, query: Any) -> list[str]:
                return paths

            def on_move(self, ctx: Any, query: Any, destination: str) -> Any:
                return ("127.0.0.1", int(dest_port)), paths

        server = Server("BENCHSCP", Source(), max_pdu=PDU, move_async_operations=MOVE_WINDOW).start("127.0.0.1", 0)
        print(f"READY {server.port}", flush=True)
        sys.stdin.read()
        server.shutdown()
    else:
        from pydicom import dcmread
        from pynetdicom import AE, StoragePresentationContexts, evt
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet

        def on_get(event: Any) -> Iterator[Any]:
            yield len(paths)
            for path in paths:
                if event.is_cancelled:
                    yield 0xFE00, None
                    return
                yield 0xFF00, dcmread(path)

        ae = AE(ae_title="BENCHSCP")
        ae.maximum_pdu_size = PDU
        ae.add_supported_context(StudyRootQueryRetrieveInformationModelGet)
        for cx in StoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax, scu_role=True, scp_role=True)
        server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_GET, on_get)])
        print(f"READY {server.server_address[1]}", flush=True)
        sys.stdin.read()
        server.shutdown()


@contextmanager
def python_scp(kind: str, folder: Path, dest_port: int = 0) -> Iterator[tuple[int, int]]:
    """This script in ``--serve`` mode in its own process: its (port, pid)."""
    with serve_process([sys.executable, __file__, "--serve", kind, str(folder), str(dest_port)],
                       f"{kind} SCP") as served:
        yield served


def tree_cpu(pid: int | None) -> float:
    """User + system CPU seconds of process ``pid`` and its children so far:
    its own, those of the children it has reaped, and those of the children
    still there (dcmqrscp forks one per association). Linux /proc; NaN if gone."""
    if pid is None:
        return float("nan")
    tick = os.sysconf("SC_CLK_TCK")

    def fields(p: str) -> list[str] | None:
        try:
            return Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None

    own = fields(str(pid))
    if own is None:
        return float("nan")
    total = sum(int(v) for v in own[11:15])           # utime stime cutime cstime
    for entry in os.listdir("/proc"):
        if entry.isdigit() and entry != str(pid):
            child = fields(entry)
            if child is not None and child[1] == str(pid):  # its parent is pid
                total += sum(int(v) for v in child[11:15])
    return total / tick


# ------------------------------------------------------------ the clients
def get_dicomnet(port: int, ae: str, count: int) -> float:
    from dicomnet import Client

    arrays = []
    clock = _Clock().start()
    with Client("BENCH", max_pdu=PDU).associate("127.0.0.1", port, ae, for_get=True) as assoc:
        result = assoc.get({"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": STUDY})
        for ds in result:
            arrays.append(ds.pixel_array)
    wall = clock.stop()
    _expect(len(arrays), count, "dicomnet C-GET")
    assert arrays[0].shape[-2:] == (512, 512)
    return wall


def get_pynetdicom(port: int, ae_title: str, count: int) -> float:
    from pydicom.dataset import Dataset
    from pynetdicom import AE, build_role, evt
    from pynetdicom.sop_class import CTImageStorage, StudyRootQueryRetrieveInformationModelGet

    arrays = []

    def on_store(event: Any) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta      # the transfer syntax pydicom needs to decode
        arrays.append(ds.pixel_array)
        return 0

    ae = AE(ae_title="BENCH")
    ae.maximum_pdu_size = PDU
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(CTImageStorage)
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = STUDY
    clock = _Clock().start()
    assoc = ae.associate("127.0.0.1", port, ae_title=ae_title, ext_neg=[build_role(CTImageStorage, scp_role=True)],
                         evt_handlers=[(evt.EVT_C_STORE, on_store)])
    if not assoc.is_established:
        raise RuntimeError("pynetdicom association failed")
    for _status, _ident in assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet):
        pass
    assoc.release()
    wall = clock.stop()
    _expect(len(arrays), count, "pynetdicom C-GET")
    return wall


def get_getscu(port: int, ae: str, count: int, out: Path) -> float:
    _reset(out)
    clock = _Clock().start()
    done = subprocess.run(["getscu", "-aet", "BENCH", "-aec", ae, "-S", "-pdu", str(PDU), "-k",
                           "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={STUDY}", "-od", str(out),
                           "127.0.0.1", str(port)], env=_env(), capture_output=True, text=True, timeout=300)
    wall = clock.stop()
    if done.returncode != 0:
        raise RuntimeError(f"getscu failed: {done.stdout[-500:]}{done.stderr[-500:]}")
    _expect(len(os.listdir(out)), count, "getscu")
    return wall


def move_dicomnet(port: int, count: int, scp: Any) -> float:
    from dicomnet import Client

    _reset(scp.out_dir)
    clock = _Clock().start()
    with Client("BENCH").associate("127.0.0.1", port, "BENCHSCP") as assoc:
        result = assoc.move({"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": STUDY}, scp.aet)
        status = result.result()
    wall = clock.stop()
    if status != 0 or result.completed != count:
        raise RuntimeError(f"dicomnet C-MOVE: status 0x{status:04X}, {result.completed} completed")
    scp.wait_for_files(count, 30)
    return wall


def move_movescu(port: int, ae: str, count: int, scp: Any) -> float:
    _reset(scp.out_dir)
    clock = _Clock().start()
    done = subprocess.run(["movescu", "-aet", "BENCH", "-aec", ae, "-aem", scp.aet, "-S", "-k",
                           "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={STUDY}", "127.0.0.1", str(port)],
                          env=_env(), capture_output=True, text=True, timeout=300)
    wall = clock.stop()
    if done.returncode != 0:
        raise RuntimeError(f"movescu failed: {done.stdout[-500:]}{done.stderr[-500:]}")
    scp.wait_for_files(count, 30)
    return wall


class _Clock:
    """Wall time, and the CPU time of this process plus the children reaped
    meanwhile (getscu/movescu; the SCPs are reaped only when they stop)."""

    last_cpu = float("nan")

    def start(self) -> _Clock:
        self.wall = time.perf_counter()
        self.cpu = time.process_time() + _children_cpu()
        return self

    def stop(self) -> float:
        _Clock.last_cpu = time.process_time() + _children_cpu() - self.cpu
        return time.perf_counter() - self.wall


class OurStoreScp:
    """``dicomnet store-scp`` writing to a folder: the C-MOVE destination for the
    dicomnet -> dicomnet row (the same surface as peers.Storescp that the
    move_* functions use: aet, port, out_dir, wait_for_files, proc)."""

    aet = "OURSTORESCP"

    def __init__(self, root: Path) -> None:
        self.out_dir = root / "our-store-scp"
        self.out_dir.mkdir()
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> OurStoreScp:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dicomnet", "store-scp", "--aet", self.aet, "--port", str(self.port),
             "--out", str(self.out_dir), "-q"], stdin=subprocess.DEVNULL)
        wait_port(self.port, self.proc)
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def wait_for_files(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len([n for n in os.listdir(self.out_dir) if not n.startswith(".")]) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"dicomnet store-scp got fewer than {count} files")
            time.sleep(0.005)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _env() -> dict[str, str]:
    return dict(os.environ, TCP_NODELAY="1")


def _pid(peer: Any) -> int | None:
    """The pid of a tests/integration/peers.py process (None if not running)."""
    proc = getattr(peer, "proc", None)
    return proc.pid if proc is not None else None


def _reset(folder: Path) -> None:
    for name in os.listdir(folder):
        os.unlink(folder / name)


def _expect(got: int, count: int, what: str) -> None:
    if got != count:
        raise RuntimeError(f"{what}: {got} of {count} instances")


# ------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="150 instances")
    parser.add_argument("--count", type=int, default=None, help="instances (default 500, --quick 150)")
    parser.add_argument("--repeat", type=int, default=None, help="runs per case, best kept (default 3, --quick 2)")
    parser.add_argument("--serve", nargs=3, metavar=("KIND", "DIR", "DEST_PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(*args.serve)
        return
    count = args.count or (150 if args.quick else 500)
    repeat = args.repeat or (2 if args.quick else 3)
    peers = _peers()
    have_dcmtk = all(shutil.which(t) for t in ("getscu", "movescu", "dcmqrscp", "storescp", "storescu"))
    have_orthanc = shutil.which("Orthanc") is not None
    try:
        import pynetdicom  # noqa: F401

        have_pynetdicom = True
    except ImportError:
        have_pynetdicom = False
    root = Path(tempfile.mkdtemp(prefix="dicomnet-bench-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    results: dict[str, float] = {}
    cpus: dict[str, float] = {}
    t_all = time.perf_counter()

    server_cpus: dict[str, tuple[float, float]] = {}

    Case = tuple[str, Callable[[], float], "int | None", "int | None"]

    def run(cases: list[Case]) -> None:
        """Best of ``repeat`` for each case -- (label, run, SCP pid, C-MOVE
        destination pid; the CPU time of those two in the best run is kept
        too) -- in rounds: one run of every case, then the next round, so that
        the cases compared meet the same slow phases of a shared machine."""
        best: dict[str, float] = {}
        walls: dict[str, list[float]] = {label: [] for label, *_ in cases}
        failed: set[str] = set()
        for _ in range(repeat):
            for label, fn, scp, dest in cases:
                if label in failed:
                    continue
                before = (tree_cpu(scp), tree_cpu(dest))
                try:
                    wall = fn()
                except Exception as exc:  # noqa: BLE001 - a failing peer is reported, the run goes on
                    print(f"  {label}: failed: {exc}")
                    failed.add(label)
                    best.pop(label, None)
                    continue
                time.sleep(0.05)          # a forked dcmqrscp child: exited and reaped
                after = (tree_cpu(scp), tree_cpu(dest))
                walls[label].append(wall)
                if label not in best or wall < best[label]:
                    best[label], cpus[label] = wall, _Clock.last_cpu
                    server_cpus[label] = (after[0] - before[0], after[1] - before[1])
        for label, _, _, dest in cases:
            if label not in best:
                continue
            results[label] = best[label]
            scp_cpu, dest_cpu = server_cpus[label]
            print(f"  {label:<44} {best[label]:7.3f} s  ({count / best[label]:6.0f} inst/s), "
                  f"CPU: client {cpus[label]:.3f} s, SCP {scp_cpu:.3f} s"
                  + (f", destination {dest_cpu:.3f} s" if dest is not None else "")
                  + f"; inst/s per run: {', '.join(f'{count / w:.0f}' for w in walls[label])}", flush=True)

    try:
        src, got = root / "src", root / "got"
        src.mkdir()
        got.mkdir()
        t0 = time.perf_counter()
        paths = generate(src, count)
        size = sum(os.path.getsize(p) for p in paths)
        print(f"{count} CT instances, {size / 1e6:.0f} MB, generated in {time.perf_counter() - t0:.1f} s; "
              f"best of {repeat}")

        # -- C-GET into numpy
        with ExitStack() as stack:
            port, pid = stack.enter_context(python_scp("dicomnet", src))
            cases: list[Case] = [("get: dicomnet <- dicomnet (numpy)",
                                  lambda port=port: get_dicomnet(port, "BENCHSCP", count), pid, None)]
            if have_dcmtk:
                qr = stack.enter_context(peers.Dcmqrscp(aet="DCMQRSCP", preload=paths, max_pdu=PDU))
                cases.append(("get: getscu <- dcmqrscp (files)",
                              lambda qr=qr: get_getscu(qr.port, qr.aet, count, got), _pid(qr), None))
            if have_pynetdicom:
                pport, ppid = stack.enter_context(python_scp("pynetdicom", src))
                cases.append(("get: pynetdicom <- pynetdicom (numpy)",
                              lambda pport=pport: get_pynetdicom(pport, "BENCHSCP", count), ppid, None))
            run(cases)

        # -- C-GET from Orthanc
        if have_orthanc:
            with peers.Orthanc() as orthanc:
                t0 = time.perf_counter()
                for p in paths:
                    orthanc.upload(p)
                print(f"  (uploaded to Orthanc in {time.perf_counter() - t0:.1f} s)")
                cases = [("get from Orthanc: dicomnet (numpy)",
                          lambda: get_dicomnet(orthanc.dicom_port, orthanc.aet, count), _pid(orthanc), None)]
                if have_dcmtk:
                    cases.append(("get from Orthanc: getscu (files)",
                                  lambda: get_getscu(orthanc.dicom_port, orthanc.aet, count, got), _pid(orthanc),
                                  None))
                run(cases)

        # -- C-MOVE to a storage SCP: ours, and dcmtk's
        with ExitStack() as stack:
            dest = stack.enter_context(OurStoreScp(root))
            port, pid = stack.enter_context(python_scp("dicomnet", src, dest.port))
            cases = [(OURS_MOVE, lambda port=port: move_dicomnet(port, count, dest), pid, _pid(dest))]
            if have_dcmtk:
                scp = stack.enter_context(peers.Storescp(aet="STORESCP", args=["-pdu", str(PDU)]))
                sport, spid = stack.enter_context(python_scp("dicomnet", src, scp.port))
                cases.append(("move: dicomnet -> dicomnet -> storescp",
                              lambda sport=sport: move_dicomnet(sport, count, scp), spid, _pid(scp)))
                qr = stack.enter_context(peers.Dcmqrscp(aet="DCMQRSCP", preload=paths, max_pdu=PDU,
                                                        move_destinations={"STORESCP": scp.port}))
                cases.append(("move: movescu -> dcmqrscp -> storescp",
                              lambda qr=qr: move_movescu(qr.port, qr.aet, count, scp), _pid(qr), _pid(scp)))
            run(cases)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    def row(label: str, ref: str | None) -> list[str]:
        wall = results.get(label)
        if wall is None:
            return [label, "-", "-", "-", "-", "-", "-", "-"]
        against = results.get(ref) if ref else None
        cpu, cpu_ref = cpus.get(label, float("nan")), cpus.get(ref or "", float("nan"))
        scp_cpu, dest_cpu = server_cpus.get(label, (float("nan"), float("nan")))
        less_cpu = (ratio(cpu_ref, cpu, False)
                    if ref and cpu_ref == cpu_ref and cpu > 0 and not label.startswith("move") else "")
        return [label, f"{wall:.3f}", f"{count / wall:.0f}", ratio(against, wall, False) if against else "",
                f"{cpu:.3f}", less_cpu, f"{scp_cpu:.3f}" if scp_cpu == scp_cpu else "-",
                f"{dest_cpu:.3f}" if dest_cpu == dest_cpu else ""]

    ours_get = "get: dicomnet <- dicomnet (numpy)"
    ours_orthanc = "get from Orthanc: dicomnet (numpy)"
    ours_move = OURS_MOVE
    rows = [row(ours_get, None),
            row("get: getscu <- dcmqrscp (files)", ours_get),
            row("get: pynetdicom <- pynetdicom (numpy)", ours_get),
            row(ours_orthanc, None),
            row("get from Orthanc: getscu (files)", ours_orthanc),
            row(ours_move, None),
            row("move: dicomnet -> dicomnet -> storescp", ours_move),
            row("move: movescu -> dcmqrscp -> storescp", ours_move)]
    print_table(f"C-GET / C-MOVE of {count} CT instances (512x512 uint16), loopback; CPU seconds per side "
                "(client = the retrieving process or getscu/movescu; SCP with its forked children)",
                ["case", "seconds", "inst/s", "dicomnet is (x faster)", "client CPU s", "(x less CPU)",
                 "SCP CPU s", "dest CPU s"], rows)
    # The targets (same run, wall-clock throughput ratios).
    print("\ntargets (issue 4):")
    for ours, theirs, target in ((ours_get, "get: getscu <- dcmqrscp (files)", 1.5),
                                 (ours_get, "get: pynetdicom <- pynetdicom (numpy)", 20.0),
                                 (ours_orthanc, "get from Orthanc: getscu (files)", 0.9),
                                 (ours_move, "move: movescu -> dcmqrscp -> storescp", 1.5)):
        if ours in results and theirs in results:
            r = results[theirs] / results[ours]
            print(f"  {ours} vs {theirs}: {r:.2f}x (target >= {target:g}x)"
                  f"{' OK' if r >= target else ' BELOW TARGET'}")
    print(f"\ntotal {time.perf_counter() - t_all:.0f} s; load average {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} CPU(s)")


if __name__ == "__main__":
    main()
