"""C-FIND throughput: dicomnet against pynetdicom, measured in one run.

A study-level C-FIND whose SCP answers with N matches (default 5,000), each
an identifier of 10 elements built before the server reports ready (the
handler only yields them), over one association on loopback:

(a) dicomnet Client -> dicomnet Server (``on_find`` yields prebuilt
    ``dicomnet.dicom.Dataset`` objects);
(b) pynetdicom SCU -> pynetdicom SCP (the ``EVT_C_FIND`` handler yields
    ``(0xFF00, ds)`` with prebuilt pydicom Datasets).

Each server runs in its own process (this script in ``--serve`` mode); the
client runs here. The time is from association request to release
confirmation; the client reads one attribute (PatientID) of every match, so
the identifiers are really decoded on both sides. Prints matches/s, the
client's CPU time and the ratio (target: dicomnet >= 20x pynetdicom).
``--quick`` keeps the 5,000 matches but runs each case once (well under 60 s).

    python benchmarks/bench_find.py [--quick] [--matches N] [--repeat N]
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_of, fmt, print_table, serve_process  # noqa: E402

PDU = 131072
SCP_AE = "FINDSCP"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"


# ------------------------------------------------------------------- data
def identifier_values(i: int) -> dict[str, Any]:
    """The 10 study-level attributes of match ``i`` (keyword -> value)."""
    return {
        "QueryRetrieveLevel": "STUDY",
        "PatientName": f"Patient^Number{i:05d}",
        "PatientID": f"PID{i:06d}",
        "StudyInstanceUID": f"2.25.4242.{i + 1}",
        "StudyDate": "20240102",
        "StudyTime": "101500",
        "AccessionNumber": f"A{i:07d}",
        "StudyDescription": "CT CHEST W/O CONTRAST",
        "ModalitiesInStudy": ["CT", "SR"],
        "NumberOfStudyRelatedInstances": 300 + i % 50,
    }


# ------------------------------------------------------- helper processes
def serve(kind: str, count: int) -> None:
    """Helper-process mode: a C-FIND SCP answering every query with ``count`` matches."""
    if kind == "dicomnet":
        from dicomnet import Server
        from dicomnet.dicom import Dataset

        matches = []
        for i in range(count):
            ds = Dataset()
            for keyword, value in identifier_values(i).items():
                setattr(ds, keyword, value)
            matches.append(ds)

        class Finder:
            def on_find(self, ctx: Any, query: Any) -> Iterator[Any]:
                yield from matches

        server = Server(SCP_AE, Finder(), max_pdu=PDU).start("127.0.0.1", 0)
        print(f"READY {server.port}", flush=True)
        sys.stdin.read()
        server.shutdown()
        return
    from pydicom.dataset import Dataset as PydicomDataset
    from pynetdicom import AE, evt

    logging.getLogger("pynetdicom").setLevel(logging.ERROR)
    py_matches = []
    for i in range(count):
        pds = PydicomDataset()
        for keyword, value in identifier_values(i).items():
            setattr(pds, keyword, value)
        py_matches.append(pds)

    def on_find(event: Any) -> Iterator[Any]:
        for pds in py_matches:
            if event.is_cancelled:
                yield 0xFE00, None
                return
            yield 0xFF00, pds

    ae = AE(SCP_AE)
    ae.maximum_pdu_size = PDU
    ae.add_supported_context(STUDY_ROOT_FIND)
    py_server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_FIND, on_find)])
    assert py_server is not None
    print(f"READY {py_server.server_address[1]}", flush=True)
    sys.stdin.read()
    py_server.shutdown()


@contextmanager
def python_scp(kind: str, count: int) -> Iterator[tuple[int, int]]:
    """This script in ``--serve kind COUNT`` mode, in its own process; its port and pid."""
    with serve_process([sys.executable, __file__, "--serve", kind, str(count)], f"{kind} SCP") as served:
        yield served


# ------------------------------------------------------------ the clients
QUERY = {"QueryRetrieveLevel": "STUDY", "PatientName": None, "PatientID": None, "StudyInstanceUID": None,
         "StudyDate": None, "StudyTime": None, "AccessionNumber": None, "StudyDescription": None,
         "ModalitiesInStudy": None, "NumberOfStudyRelatedInstances": None}


def find_dicomnet(port: int, count: int) -> tuple[float, float]:
    from dicomnet import Client

    ids = []
    start, cpu = time.perf_counter(), time.process_time()
    with Client("FINDSCU", max_pdu=PDU).associate("127.0.0.1", port, SCP_AE) as assoc:
        result = assoc.find(QUERY, model="study")
        for ds in result:
            ids.append(ds.PatientID)
        status = result.status
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    _expect(status, ids, count, "dicomnet")
    return wall, cpu


def find_pynetdicom(port: int, count: int) -> tuple[float, float]:
    from pydicom.dataset import Dataset as PydicomDataset
    from pynetdicom import AE

    logging.getLogger("pynetdicom").setLevel(logging.ERROR)
    ae = AE("FINDSCU")
    ae.maximum_pdu_size = PDU
    ae.add_requested_context(STUDY_ROOT_FIND)
    query = PydicomDataset()
    for keyword, value in QUERY.items():
        setattr(query, keyword, "" if value is None else value)
    ids = []
    status = None
    start, cpu = time.perf_counter(), time.process_time()
    assoc = ae.associate("127.0.0.1", port, ae_title=SCP_AE)
    if not assoc.is_established:
        raise RuntimeError("pynetdicom could not associate")
    for rsp, identifier in assoc.send_c_find(query, STUDY_ROOT_FIND):
        code = getattr(rsp, "Status", None)
        if code in (0xFF00, 0xFF01) and identifier is not None:
            ids.append(identifier.PatientID)
        else:
            status = code
    assoc.release()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    _expect(status, ids, count, "pynetdicom")
    return wall, cpu


def _expect(status: Any, ids: list[str], count: int, label: str) -> None:
    if status != 0:
        raise RuntimeError(f"{label}: final C-FIND status {status!r}")
    if len(ids) != count or ids[0] != "PID000000" or ids[-1] != f"PID{count - 1:06d}":
        raise RuntimeError(f"{label}: {len(ids)} matches received, expected {count}")


# ------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one run per case")
    parser.add_argument("--matches", type=int, default=5000, help="matches per C-FIND (default 5000)")
    parser.add_argument("--repeat", type=int, default=None, help="runs per case, best kept (default 3, --quick 1)")
    parser.add_argument("--serve", nargs=2, metavar=("KIND", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return
    count = args.matches
    repeat = args.repeat or (1 if args.quick else 3)
    print(f"study-level C-FIND, {count} matches of 10 elements each; best of {repeat}")
    results: dict[str, tuple[float, float, float]] = {}
    cases = [("dicomnet -> dicomnet", "dicomnet", find_dicomnet)]
    try:
        import pynetdicom  # noqa: F401

        cases.append(("pynetdicom -> pynetdicom", "pynetdicom", find_pynetdicom))
    except ImportError:
        print("pynetdicom is not installed: its row is left out")
    for label, kind, client in cases:
        runs = []
        with python_scp(kind, count) as (port, pid):
            for _ in range(repeat):
                cpu0 = cpu_of(pid)
                wall, client_cpu = client(port, count)
                runs.append((wall, client_cpu, cpu_of(pid) - cpu0))
        results[label] = min(runs)
        print(f"  {label:<26} {results[label][0]:7.3f} s", flush=True)

    ours = results["dicomnet -> dicomnet"][0]
    rows = []
    for label, (wall, cpu, server_cpu) in results.items():
        rows.append([label, f"{wall:.3f}", fmt(count / wall), f"{1e6 * cpu / count:.1f}",
                     f"{1e6 * server_cpu / count:.1f}", f"{wall / ours:.1f}x"])
    print_table(f"C-FIND, {count} matches (CPU per match in us, user + system; last column: time / dicomnet's)",
                ["case", "seconds", "matches/s", "SCU us/match", "SCP us/match", "time x"], rows)
    if "pynetdicom -> pynetdicom" in results:
        r = results["pynetdicom -> pynetdicom"][0] / ours
        print(f"\ndicomnet vs pynetdicom: {r:.1f}x matches/s (target >= 20x){' OK' if r >= 20 else ' BELOW TARGET'}")
    print(f"load average while running: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPU(s)")


if __name__ == "__main__":
    main()
