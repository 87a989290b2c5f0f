"""``dicomnet bench store HOST PORT``: C-STORE throughput with synthetic data.

The instances (:func:`dicomnet.samples.synthetic.generate`: CT, or
multi-frame secondary capture with ``--frames``) are generated and encoded
in memory *before* the clock starts, so the figure is the network path --
association, C-STORE requests, the peer's work, responses -- and not the
generator. One association; the instances are sent one operation at a time
(:meth:`Association.store_many`). Reports instances/s and MB/s (data set
bytes, decimal MB). Point it at ``dicomnet store-scp --ignore`` or
``storescp --ignore`` to measure the sender.
"""
from __future__ import annotations

import argparse
import time
from typing import Any

from dicomnet.cli.common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, Output
from dicomnet.cli.progress import Progress
from dicomnet.cli.store import guarded, make_client

__all__ = ["add_parser", "run", "synthetic_instances"]

_EXPLICIT_LE = "1.2.840.10008.1.2.1"


def add_parser(subparsers: Any, parent: argparse.ArgumentParser) -> None:
    """Register ``bench`` and its ``store`` benchmark."""
    p = subparsers.add_parser("bench", help="benchmarks against a peer (bench store)",
                              description="Network benchmarks with synthetic data.")
    inner = p.add_subparsers(dest="bench_command", metavar="BENCHMARK")
    inner.required = True
    s = inner.add_parser("store", parents=[parent], help="C-STORE throughput",
                         description="Send --count synthetic instances (made in memory beforehand) over one "
                                     "association and report instances/s and MB/s. Exit 1 if any failed.")
    s.add_argument("host", help="the peer's host name or address")
    s.add_argument("port", type=int, help="the peer's TCP port")
    s.add_argument("--count", "-n", type=int, default=100, metavar="N", help="instances (default: %(default)s)")
    s.add_argument("--rows", type=int, default=512, metavar="R", help="rows (default: %(default)s)")
    s.add_argument("--cols", type=int, default=512, metavar="C", help="columns (default: %(default)s)")
    s.add_argument("--frames", type=int, default=1, metavar="F",
                   help="frames per instance (>1: multi-frame SC) (default: %(default)s)")
    s.add_argument("--max-pdu", type=int, default=None, metavar="N",
                   help="largest P-DATA PDU we accept (0: no limit)")
    s.set_defaults(run=run)


def synthetic_instances(count: int, rows: int, cols: int, frames: int) -> list[Any]:
    """``count`` synthetic instances encoded once (Explicit VR LE) and read back,
    so sending them is a view of their bytes, not an encode."""
    from dicomnet.dicom.reader import read_dataset
    from dicomnet.dicom.writer import encode_dataset
    from dicomnet.samples.synthetic import generate

    out = []
    for ds in generate(patients=1, studies=1, series=1, instances=count, rows=rows, cols=cols, frames=frames,
                       seed=2024):
        data = bytes(encode_dataset(ds, _EXPLICIT_LE))
        out.append(read_dataset(data, transfer_syntax=_EXPLICIT_LE))
    return out


def run(args: argparse.Namespace) -> int:
    """Run ``bench store``; the exit code (see :mod:`dicomnet.cli.common`)."""
    from dicomnet.types.status import is_failure

    out = Output(args)
    base: dict[str, Any] = {"command": "bench store", "host": args.host, "port": args.port,
                            "calling_ae": args.aet, "called_ae": args.aec, "count": args.count,
                            "rows": args.rows, "cols": args.cols, "frames": args.frames}
    for name in ("count", "rows", "cols", "frames"):
        if getattr(args, name) < 1:
            out.error(f"--{name} must be at least 1")
            return EXIT_USAGE
    try:
        client = make_client(args)
        t0 = time.perf_counter()
        instances = synthetic_instances(args.count, args.rows, args.cols, args.frames)
    except (ValueError, MemoryError) as exc:
        out.error(str(exc))
        return EXIT_USAGE
    prepare_s = time.perf_counter() - t0
    sizes = {id(ds): len(ds.encode(_EXPLICIT_LE)) for ds in instances}
    total_bytes = sum(sizes.values())
    sop_class = str(instances[0].SOPClassUID)
    out.line(f"bench store: {args.count} instance(s) of {args.rows}x{args.cols}x{args.frames} "
             f"({total_bytes / 1e6:.1f} MB) made in {prepare_s:.2f} s")
    where = f"{args.aec} at {args.host}:{args.port}"
    result: dict[str, Any] = {"failed": 0}
    progress = Progress(args.count, total_bytes, label="bench store",
                        enabled=None if not (args.quiet or args.json) else False)

    def body() -> int:
        start = time.perf_counter()
        with client.associate(args.host, args.port, args.aec, contexts=[(sop_class, [_EXPLICIT_LE])]) as assoc:
            associated = time.perf_counter()
            for ds, status, _ in assoc.store_many(instances):
                failed = is_failure(status)
                result["failed"] += failed
                progress.update(sizes[id(ds)], failed=failed)
            sent = time.perf_counter()
        result.update(association_s=associated - start, store_s=sent - associated, total_s=time.perf_counter() - start)
        return EXIT_OK

    try:
        code = guarded(out, base, where, body)
    finally:
        progress.close()
    if code != EXIT_OK:
        return code
    seconds = result["store_s"]
    rate = args.count / seconds if seconds else float("inf")
    mbps = total_bytes / 1e6 / seconds if seconds else float("inf")
    out.line(f"sent {args.count - result['failed']} of {args.count} in {seconds:.3f} s: {rate:.1f} instances/s, "
             f"{mbps:.1f} MB/s (association {result['association_s'] * 1000:.1f} ms, "
             f"total with release {result['total_s']:.3f} s); {result['failed']} failed")
    out.record({**base, "ok": result["failed"] == 0, "bytes": total_bytes, "failed": result["failed"],
                "seconds": round(seconds, 6), "instances_per_s": round(rate, 2), "mb_per_s": round(mbps, 2),
                "association_ms": round(result["association_s"] * 1000, 3),
                "total_s": round(result["total_s"], 6)})
    if result["failed"]:
        out.error(f"{result['failed']} C-STORE(s) failed")
        return EXIT_FAILURE
    return EXIT_OK
