"""Parsing speed and memory: dicomnet against pydicom, measured in the same run.

1. A series of synthetic single-frame CT files (512x512 uint16, Explicit VR LE,
   ~80 top-level elements, ~95 with the nested items of 4 sequences) on tmpfs:
   read each file, decode EVERY non-pixel value (nested items included) and get
   ``pixel_array``. Reported in files/s for both tools and the ratio (the
   project targets >= 20x pydicom). Two more rows for context: reading alone,
   and the full workload plus ``pixel_array.sum()`` (which touches every pixel
   byte, so the lazy/mmap advantage no longer hides anything).
2. One 256 MB multi-frame file: ``read_file`` + ``pixel_array`` against just
   ``open()``-ing the file (targets: < 1 ms more, < 2 MB extra resident memory),
   pydicom's ``dcmread`` + ``pixel_array`` beside it. Each tool is measured in a
   fresh subprocess so one tool's allocations do not blur the other's VmRSS.

    python benchmarks/bench_parse.py [--quick] [--files N] [--big-mb N] [--profile]

``--quick`` (< 60 s) uses 150 files and fewer repeats; ``--profile`` prints a
cProfile of dicomnet's per-file workload.
"""
from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (  # noqa: E402
    best_of,
    count_elements,
    fmt,
    median_of,
    per_second,
    print_table,
    ratio,
    rss_kib,
    scratch_dir,
    write_ct_series,
    write_multiframe,
)

PIXEL_DATA = 0x7FE00010


# --------------------------------------------------------------- the workloads
def walk_dicomnet(ds: Any) -> int:
    n = 0
    for elem in ds:
        if elem.tag == PIXEL_DATA:
            continue
        value = elem.value
        n += 1
        if elem.VR == "SQ":
            for item in value:
                n += walk_dicomnet(item)
    return n


def walk_pydicom(ds: Any) -> int:
    n = 0
    for elem in ds:
        if elem.tag == PIXEL_DATA:
            continue
        value = elem.value
        n += 1
        if elem.VR == "SQ":
            for item in value:
                n += walk_pydicom(item)
    return n


def dicomnet_file(path: str, touch_pixels: bool = False) -> int:
    from dicomnet.dicom import read_file

    ds = read_file(path)
    n = walk_dicomnet(ds)
    arr = ds.pixel_array
    if touch_pixels:
        arr.sum()
    return n + int(arr.shape[0])


def pydicom_file(path: str, touch_pixels: bool = False) -> int:
    import pydicom

    ds = pydicom.dcmread(path)
    n = walk_pydicom(ds)
    arr = ds.pixel_array
    if touch_pixels:
        arr.sum()
    return n + int(arr.ndim)


def over(paths: list[str], fn: Callable[..., Any], **kwargs: Any) -> Callable[[], None]:
    def run() -> None:
        for p in paths:
            fn(p, **kwargs)
    return run


# ------------------------------------------------------------ 1. many files
def bench_series(folder: Path, count: int, quick: bool) -> list[list[str]]:
    import pydicom

    from dicomnet.dicom import read_file

    t0 = time.perf_counter()
    paths = write_ct_series(folder, count)
    print(f"generated {count} CT files ({os.path.getsize(paths[0]) // 1024} KiB each, "
          f"{count_elements(read_file(paths[0]))} elements incl. nested) in {time.perf_counter() - t0:.1f} s "
          f"under {folder}")
    # Both tools must see the same data: check one file's values and pixels first.
    ours, theirs = read_file(paths[0]), pydicom.dcmread(paths[0])
    assert walk_dicomnet(ours) == walk_pydicom(theirs)
    assert (ours.pixel_array[0] == theirs.pixel_array).all()

    rounds_ours, rounds_theirs = (3, 1) if quick else (5, 2)
    rows = []
    workloads: list[tuple[str, dict[str, Any], Callable[..., Any], Callable[..., Any]]] = [
        ("read + every value + pixel_array", {}, dicomnet_file, pydicom_file),
        ("read only", {}, read_file, pydicom.dcmread),
        ("... + pixel_array.sum()", {"touch_pixels": True}, dicomnet_file, pydicom_file),
    ]
    for label, kwargs, ours_fn, theirs_fn in workloads:
        over(paths[:20], ours_fn, **kwargs)()  # warm caches and lazy imports
        over(paths[:5], theirs_fn, **kwargs)()
        ours_s = best_of(over(paths, ours_fn, **kwargs), rounds_ours)
        theirs_s = best_of(over(paths, theirs_fn, **kwargs), rounds_theirs)
        a, b = per_second(count, ours_s), per_second(count, theirs_s)
        rows.append([f"{count} CT files: {label}", fmt(a, "files/s"), fmt(b, "files/s"), ratio(a, b)])
    return rows


# ------------------------------------------------------------ 2. one big file
def big_file_worker(tool: str, path: str, repeat: int) -> dict[str, float]:
    """Runs in a fresh process: RSS growth first (clean), then timings."""
    if tool == "dicomnet":
        from dicomnet.dicom import read_file

        def load() -> Any:
            ds = read_file(path)
            return ds, ds.pixel_array
    else:
        import pydicom

        def load() -> Any:
            ds = pydicom.dcmread(path)
            return ds, ds.pixel_array

    def just_open() -> None:
        f = open(path, "rb")
        f.close()

    just_open()
    before = rss_kib()
    kept = load()
    after = rss_kib()
    shape = list(kept[1].shape)
    del kept
    return {
        "rss_extra_kib": after - before,
        "load_s": median_of(load, repeat),
        "open_s": median_of(just_open, max(repeat, 20)),
        "shape": shape,  # type: ignore[dict-item]
    }


def bench_big(folder: Path, size_mb: int, quick: bool) -> list[list[str]]:
    path = folder / "multiframe.dcm"
    frames = write_multiframe(path, size_mb << 20)
    size = os.path.getsize(path)
    print(f"generated a {size / 2**20:.0f} MB file of {frames} frames (512x512 uint16)")
    results = {}
    for tool, repeat in (("dicomnet", 50 if quick else 200), ("pydicom", 3 if quick else 5)):
        out = subprocess.run([sys.executable, __file__, "--big-worker", tool, str(path), str(repeat)],
                             capture_output=True, text=True, check=True)
        results[tool] = json.loads(out.stdout.strip().splitlines()[-1])
    ours, theirs = results["dicomnet"], results["pydicom"]
    assert ours["shape"][0] == frames, ours["shape"]
    label = f"{size / 2**20:.0f} MB multi-frame"
    ours_extra = (ours["load_s"] - ours["open_s"]) * 1e3
    theirs_extra = (theirs["load_s"] - theirs["open_s"]) * 1e3
    return [
        [f"{label}: read_file + pixel_array", fmt(ours["load_s"] * 1e3, "ms"), fmt(theirs["load_s"] * 1e3, "ms"),
         ratio(ours["load_s"], theirs["load_s"], higher_is_better=False)],
        [f"{label}: just open() + close()", fmt(ours["open_s"] * 1e3, "ms"), fmt(theirs["open_s"] * 1e3, "ms"), ""],
        [f"{label}: time beyond open()", fmt(ours_extra, "ms"), fmt(theirs_extra, "ms"),
         ratio(ours_extra, theirs_extra, higher_is_better=False)],
        [f"{label}: extra resident memory", fmt(ours["rss_extra_kib"] / 1024, "MiB"),
         fmt(theirs["rss_extra_kib"] / 1024, "MiB"), ""],
    ]


def profile(folder: Path) -> None:
    paths = write_ct_series(folder, 100)
    over(paths, dicomnet_file)()
    prof = cProfile.Profile()
    prof.runcall(over(paths * 3, dicomnet_file))
    pstats.Stats(prof).sort_stats("tottime").print_stats(18)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer files and repeats (< 60 s)")
    parser.add_argument("--files", type=int, help="number of CT files (default 500, quick 150)")
    parser.add_argument("--big-mb", type=int, default=256, help="size of the multi-frame file")
    parser.add_argument("--profile", action="store_true", help="cProfile dicomnet's per-file workload")
    parser.add_argument("--big-worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.big_worker:
        tool, path, repeat = args.big_worker
        print(json.dumps(big_file_worker(tool, path, int(repeat))))
        return
    import numpy
    import pydicom

    count = args.files or (150 if args.quick else 500)
    started = time.perf_counter()
    with scratch_dir() as folder:
        if args.profile:
            profile(folder)
            return
        rows = bench_series(folder, count, args.quick)
        for p in folder.glob("ct*.dcm"):
            p.unlink()
        rows += bench_big(folder, args.big_mb, args.quick)
    import dicomnet

    print_table(f"dicomnet {getattr(dicomnet, '__version__', '?')} vs pydicom {pydicom.__version__} "
                f"(Python {sys.version.split()[0]}, numpy {numpy.__version__})",
                ["benchmark", "dicomnet", "pydicom", "dicomnet advantage"], rows)
    print(f"\ntargets: >= 20x pydicom on the CT series; < 1 ms beyond open() and < 2 MB extra RSS "
          f"on the big file.  total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
