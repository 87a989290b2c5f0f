"""Small helpers shared by the benchmarks: scratch space, timing, memory, tables, data.

- ``scratch_dir()``: a temporary folder on tmpfs (/dev/shm) when there is one,
  so file benchmarks measure parsing rather than the disk;
- ``best_of`` / ``median_of`` / ``per_second``: wall-clock timing with
  ``time.perf_counter``;
- ``rss_kib()``: this process's resident memory (VmRSS from /proc/self/status);
- ``print_table``: a plain-text table with aligned columns, plus ``ratio``;
- ``synthetic_ct`` / ``write_ct_series`` / ``write_multiframe``: realistic CT
  data sets (about 80 elements, two of them sequences with nested items)
  built with dicomnet itself, written as Part 10 files.
"""
from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"


# ----------------------------------------------------------------- scratch space
@contextmanager
def scratch_dir(prefix: str = "dicomnet-bench-") -> Iterator[Path]:
    """A temporary folder, on /dev/shm when it exists; removed afterwards."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------------------------------ timing
def timed(fn: Callable[[], Any]) -> float:
    """Seconds one call of ``fn`` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def best_of(fn: Callable[[], Any], repeat: int = 5) -> float:
    """The fastest of ``repeat`` calls, in seconds (the least disturbed run)."""
    return min(timed(fn) for _ in range(repeat))


def median_of(fn: Callable[[], Any], repeat: int = 5) -> float:
    """The median of ``repeat`` calls, in seconds."""
    return float(np.median([timed(fn) for _ in range(repeat)]))


def per_second(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def rss_kib() -> int:
    """Resident memory of this process in KiB (Linux /proc/self/status VmRSS)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("VmRSS not found in /proc/self/status")


# ------------------------------------------------------------------------ tables
def ratio(ours: float, theirs: float, higher_is_better: bool = True) -> str:
    """``ours`` against ``theirs`` as "12.3x" (how many times better dicomnet is)."""
    if not ours or not theirs:
        return "-"
    value = ours / theirs if higher_is_better else theirs / ours
    return f"{value:.1f}x"


def fmt(value: float, unit: str = "") -> str:
    """A number with three significant digits-ish and its unit."""
    if value != value:  # NaN: not measured
        return "-"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".rstrip()


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print ``rows`` under ``header`` with aligned columns (first column left, others right)."""
    cells = [list(map(str, header))] + [list(map(str, r)) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    print(f"\n{title}")
    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(line(row))


# -------------------------------------------------------------------------- data
def _code(value: str, scheme: str, meaning: str) -> Any:
    from dicomnet.dicom import Dataset

    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def synthetic_ct(number: int = 1, rows: int = 512, columns: int = 512, pixels: Any = None) -> Any:
    """A CT Image data set with a realistic header (~80 elements incl. nested sequences).

    ``pixels``: bytes or a uint16 array of rows x columns (default: zeros).
    """
    from dicomnet.dicom import Dataset

    study, series, frame = "1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2", "1.2.826.0.1.3680043.8.498.3"
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.InstanceCreationDate, ds.InstanceCreationTime = "20240102", "101530.123456"
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.4.{number}"
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = "20240102"
    ds.StudyTime = ds.SeriesTime = "101500"
    ds.AcquisitionTime = ds.ContentTime = "101530.123456"
    ds.AccessionNumber = "A1234567"
    ds.Modality = "CT"
    ds.Manufacturer = "dicomnet"
    ds.InstitutionName = "Benchmark General Hospital"
    ds.ReferringPhysicianName = "Ref^Doctor"
    ds.StationName = "CT01"
    ds.StudyDescription = "CT CHEST W/O CONTRAST"
    ds.SeriesDescription = "AXIAL 1.25mm"
    ds.ManufacturerModelName = "Synthetic 64"
    ds.ReferencedImageSequence = [_ref_image(1), _ref_image(2)]
    procedure = _code("24627-2", "LN", "CT Chest")
    procedure.ContextGroupExtensionFlag = "N"
    ds.ProcedureCodeSequence = [procedure]
    ds.PatientName = "Müller^Jürgen^^Dr."
    ds.PatientID = "PID-000123"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "M"
    ds.PatientAge = "054Y"
    ds.PatientWeight = 81.5
    ds.BodyPartExamined = "CHEST"
    ds.SliceThickness = 1.25
    ds.KVP = 120.0
    ds.DataCollectionDiameter = 500.0
    ds.SoftwareVersions = "1.0"
    ds.ReconstructionDiameter = 360.0
    ds.DistanceSourceToDetector = 1085.6
    ds.DistanceSourceToPatient = 595.0
    ds.GantryDetectorTilt = 0.0
    ds.TableHeight = 160.0
    ds.RotationDirection = "CW"
    ds.ExposureTime = 500
    ds.XRayTubeCurrent = 250
    ds.Exposure = 125
    ds.FilterType = "BODY FILTER"
    ds.GeneratorPower = 30
    ds.FocalSpots = 1.2
    ds.ConvolutionKernel = "STANDARD"
    ds.PatientPosition = "FFS"
    ds.RevolutionTime = 0.5
    ds.SingleCollimationWidth = 0.625
    ds.TotalCollimationWidth = 40.0
    ds.SpiralPitchFactor = 0.984
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.StudyID = "1"
    ds.SeriesNumber = 2
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = number
    ds.ImagePositionPatient = [-180.0, -180.0, -1.25 * number]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.FrameOfReferenceUID = frame
    ds.PositionReferenceIndicator = "SN"
    ds.SliceLocation = -1.25 * number
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.PixelSpacing = [0.703125, 0.703125]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = [40.0, -600.0]
    ds.WindowWidth = [400.0, 1500.0]
    ds.RescaleIntercept = -1024.0
    ds.RescaleSlope = 1.0
    ds.RescaleType = "HU"
    request = Dataset()
    request.RequestedProcedureID = "RP1"
    request.ScheduledProcedureStepID = "SPS1"
    request.ScheduledProtocolCodeSequence = [_code("CTCHEST", "99LOCAL", "Chest routine")]
    ds.RequestAttributesSequence = [request]
    if pixels is None:
        pixels = bytes(rows * columns * 2)
    elif isinstance(pixels, np.ndarray):
        pixels = pixels.astype("<u2", copy=False).tobytes()
    ds.set("PixelData", pixels, "OW")
    return ds


def _ref_image(n: int) -> Any:
    from dicomnet.dicom import Dataset

    item = Dataset()
    item.ReferencedSOPClassUID = CT_IMAGE_STORAGE
    item.ReferencedSOPInstanceUID = f"1.2.826.0.1.3680043.8.498.5.{n}"
    return item


def count_elements(ds: Any) -> int:
    """Elements in ``ds``, nested items' elements included."""
    total = 0
    for elem in ds:
        total += 1
        if elem.VR == "SQ":
            total += sum(count_elements(item) for item in elem.value)
    return total


def write_ct_series(folder: Path, count: int, rows: int = 512, columns: int = 512) -> list[str]:
    """``count`` CT files (Explicit VR LE, random 12-bit pixels) in ``folder``; their paths."""
    from dicomnet.dicom import write_file

    rng = np.random.default_rng(20240102)
    pixels = rng.integers(0, 4096, size=(rows, columns), dtype=np.uint16).tobytes()
    paths = []
    for i in range(count):
        path = folder / f"ct{i:05d}.dcm"
        write_file(path, synthetic_ct(i + 1, rows, columns, pixels), EXPLICIT_VR_LE)
        paths.append(str(path))
    return paths


def write_multiframe(path: Path, size_bytes: int, rows: int = 512, columns: int = 512) -> int:
    """A multi-frame CT file whose Pixel Data is about ``size_bytes``; returns the frame count.

    The header is encoded by dicomnet; the pixel bytes are streamed to the file
    frame by frame, so writing 256 MB does not hold 256 MB in memory.
    """
    from dicomnet.dicom.writer import encode_dataset, encode_file_meta

    frame_bytes = rows * columns * 2
    frames = max(1, size_bytes // frame_bytes)
    ds = synthetic_ct(1, rows, columns, b"")
    ds.SOPClassUID = ENHANCED_CT_STORAGE
    ds.NumberOfFrames = frames
    del ds.PixelData
    meta = bytes(encode_file_meta(ds, EXPLICIT_VR_LE))
    header = bytes(encode_dataset(ds, EXPLICIT_VR_LE))
    rng = np.random.default_rng(7)
    frame = rng.integers(0, 4096, size=(rows, columns), dtype=np.uint16).astype("<u2").tobytes()
    with open(path, "wb") as f:
        f.write(bytes(128) + b"DICM" + meta + header)
        f.write(struct.pack("<HH2s2xI", 0x7FE0, 0x0010, b"OW", frames * frame_bytes))
        for _ in range(frames):
            f.write(frame)
    return frames


@contextmanager
def serve_process(argv: Sequence[str], what: str, preexec_fn: Callable[[], Any] | None = None
                  ) -> Iterator[tuple[int, int]]:
    """Run a server process that prints ``READY <port>`` once it listens and
    stops when its stdin closes; yield ``(port, pid)`` while it runs."""
    proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            preexec_fn=preexec_fn)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("READY"):
            raise RuntimeError(f"{what} did not start: {line!r}")
        yield int(line.split()[1]), proc.pid
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_of(pid: int) -> float:
    """User + system CPU seconds a (live) process has used so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[Any], timeout: float = 15.0) -> None:
    """Wait until ``proc`` listens on ``port`` (it exiting first is an error)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"nothing listens on port {port}")
