"""Test files shared by the interop tests: synthetic series on disk, and the
data set bytes of a Part 10 file as stored."""
from __future__ import annotations

import os
import random
from pathlib import Path

from dicomnet.dicom import Dataset, read_file, write_file
from dicomnet.samples.synthetic import generate
from dicomnet.types.uids import CTImageStorage

EXPLICIT = "1.2.840.10008.1.2.1"


def make_series(folder: Path, instances: int = 3, rows: int = 64, cols: int = 64,
                modality: str = "CT", suffix: str = ".dcm") -> list[tuple[Path, Dataset]]:
    """A fresh synthetic series as Explicit VR LE files (a random seed: fresh
    UIDs), each with a nested sequence of defined length; (path, data set
    read back) each."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for ds in generate(patients=1, studies=1, series=1, instances=instances, rows=rows, cols=cols,
                       modality=modality, seed=random.getrandbits(48)):
        reference = Dataset()
        reference.ReferencedSOPClassUID = CTImageStorage
        reference.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.2.1125.7"
        code = Dataset()
        code.CodeValue = "CTCHEST"
        code.CodingSchemeDesignator = "99DNET"
        code.CodeMeaning = "CT of the chest"
        code.ReferencedImageSequence = [reference]
        ds.ProcedureCodeSequence = [code]
        path = folder / f"{ds.SOPInstanceUID}{suffix}"
        write_file(path, ds, EXPLICIT)
        out.append((path, read_file(path)))
    return out


def dataset_bytes(path: str | os.PathLike[str]) -> bytes:
    """The data set of a Part 10 file exactly as stored (after its File Meta)."""
    raw = Path(path).read_bytes()
    assert raw[128:132] == b"DICM" and raw[132:136] == b"\x02\x00\x00\x00", path   # (0002,0000) first
    return raw[144 + int.from_bytes(raw[140:144], "little"):]
