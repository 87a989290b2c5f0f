"""The main job: build a CT image, write it as a Part 10 file, read it back
(memory-mapped, pixels as a zero-copy numpy view) and print it; then, once the
network layer is present, start a Server and verify it with C-ECHO.

Run with ``scripts/demo`` (or ``.venv/bin/python examples/roundtrip.py``).
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy

import dicomnet
from dicomnet.types import uids


def make_ct() -> dicomnet.Dataset:
    ds = dicomnet.Dataset()
    ds.SOPClassUID = uids.CTImageStorage
    ds.SOPInstanceUID = "2.25.1234567890123456789"
    ds.StudyInstanceUID = "2.25.1111"
    ds.SeriesInstanceUID = "2.25.2222"
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "DEMO-001"
    ds.Modality = "CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.Rows, ds.Columns = 256, 256
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelSpacing = [0.5, 0.5]
    yy, xx = numpy.mgrid[0:256, 0:256]
    ds.PixelData = ((xx + yy) % 4096).astype(numpy.uint16)
    return ds


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ct.dcm"
        dicomnet.write_file(path, make_ct(), transfer_syntax=uids.ExplicitVRLittleEndian)
        ds = dicomnet.read_file(path)
        print(f"{path.name}: {path.stat().st_size} bytes, transfer syntax {ds.transfer_syntax}")
        print(ds)
        pixels = ds.pixel_array
        print(f"pixel_array: shape {pixels.shape}, dtype {pixels.dtype}, "
              f"min {pixels.min()}, max {pixels.max()}, a view of the file: {pixels.base is not None}")
    network = getattr(dicomnet, "Server", None)
    if network is None:
        print("network layer not built yet: skipping the C-ECHO round trip")
        return 0
    with dicomnet.Server("DEMO-SCP") as server:
        server.start("127.0.0.1", 0)
        client = dicomnet.Client("DEMO-SCU")
        with client.associate("127.0.0.1", server.port, "DEMO-SCP") as assoc:
            status = assoc.echo()
        print(f"C-ECHO to DEMO-SCP on 127.0.0.1:{server.port}: status 0x{status:04X}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
