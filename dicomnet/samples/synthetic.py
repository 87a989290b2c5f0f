"""Deterministic synthetic CT/MR studies for tests, demos and benchmarks.

:func:`generate` yields a Patient / Study / Series / Instance hierarchy of
valid image IODs (PS3.3 Annex A):

* ``frames == 1``: CT Image Storage (A.3) or MR Image Storage (A.4), one
  slice per instance, with Patient, General Study, General Series, Frame of
  Reference, General Equipment, General Image, Image Plane, Image Pixel,
  CT Image / MR Image and SOP Common modules.
* ``frames > 1``: the CT and MR Image IODs are single-frame (they have no
  Multi-frame module, so NumberOfFrames is not allowed in them) and the
  Enhanced CT/MR IODs need full functional groups. Multi-frame instances are
  therefore **Multi-frame Grayscale Word Secondary Capture Image Storage**
  (A.8.4): the same Patient/Study/Series modules, SC Equipment (Conversion
  Type SYN: synthetic image), Multi-frame (Frame Increment Pointer ->
  Page Number Vector) and SC Multi-frame Image (identity rescale, Burned In
  Annotation NO, Presentation LUT Shape IDENTITY) modules. Modality stays CT/MR.

All four kinds pass David Clunie's dciodvfy without an error or a warning
(tests/samples/test_synthetic.py runs it when it is installed).

Everything is a function of ``seed`` and the indexes: the same arguments give
byte-identical data sets. UIDs are ``2.25.<128-bit integer>`` (PS3.5 B.2)
built from a SHA-256 of (seed, kind, indexes), so they are valid, unique and
stable. Pixel data is an analytic phantom (ellipses whose size changes with
the slice position) plus seeded noise, computed with numpy.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import numpy

from dicomnet.dicom.dataset import Dataset

__all__ = ["generate", "derived_uid", "CT_IMAGE_STORAGE", "MR_IMAGE_STORAGE", "MULTIFRAME_SC_STORAGE"]

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
#: Multi-frame Grayscale Word Secondary Capture Image Storage.
MULTIFRAME_SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7.3"

# (name, sex): Latin-1 names for ISO_IR 100 patients, wider ones for ISO_IR 192.
_NAMES_LATIN1 = (("Müller^Anna", "F"), ("Ødegård^Jens", "M"), ("García^Lucía", "F"), ("Smith^John", "M"),
                 ("Ngata^Aroha", "F"), ("Lefèvre^Zoë", "F"))
_NAMES_UTF8 = (("Dvořák^Jiří", "M"), ("Łukasiewicz^Jan", "M"), ("Nakamura^Yuki=中村^由紀", "F"),
               ("Papadopoulou^Eleni=Παπαδοπούλου^Ελένη", "F"), ("Kowalski^Piotr", "M"))
_PHYSICIANS = ("Curie^Marie", "Hounsfield^Godfrey", "Röntgen^Wilhelm", "Lauterbur^Paul")
# Study description -> Body Part Examined (unpaired parts, so no Laterality is needed).
_DESCRIPTIONS = {"CT": ("CT CHEST", "CT ABDOMEN", "CT HEAD"), "MR": ("MR BRAIN", "MR PELVIS", "MR SPINE")}
_BODY_PARTS = {"CT CHEST": "CHEST", "CT ABDOMEN": "ABDOMEN", "CT HEAD": "HEAD", "MR BRAIN": "BRAIN",
               "MR PELVIS": "PELVIS", "MR SPINE": "SPINE"}
_SERIES_DESC = {"CT": ("AXIAL 5mm", "AXIAL 1mm", "SCOUT"), "MR": ("T1 SE", "T2 FSE", "FLAIR")}
_BITS_STORED = 12


def _digest(seed: int, *parts: object) -> bytes:
    text = "\x1f".join(str(p) for p in (seed, *parts))
    return hashlib.sha256(text.encode("utf-8")).digest()


def derived_uid(seed: int, *parts: object) -> str:
    """A UID under the 2.25 root derived from (seed, parts): 2.25 followed by a
    128-bit integer from their SHA-256, so no leading zeros and <= 44 characters."""
    value = int.from_bytes(_digest(seed, *parts)[:16], "big")
    return f"2.25.{value}"


def _number(seed: int, *parts: object) -> int:
    return int.from_bytes(_digest(seed, *parts)[:8], "big")


def _date(seed: int, *parts: object) -> str:
    n = _number(seed, *parts)
    year = 2015 + n % 10
    month = 1 + (n >> 8) % 12
    day = 1 + (n >> 16) % 28
    return f"{year:04d}{month:02d}{day:02d}"


def _time(seed: int, *parts: object) -> str:
    n = _number(seed, *parts)
    return f"{7 + n % 11:02d}{(n >> 8) % 60:02d}{(n >> 16) % 60:02d}"


class _Phantom:
    """Ellipse phantom on a fixed grid; one call per slice (a few numpy ops)."""

    def __init__(self, rows: int, cols: int) -> None:
        y, x = numpy.mgrid[0:rows, 0:cols].astype(numpy.float32)
        self.y = (y - (rows - 1) / 2) / max(rows / 2, 1)
        self.x = (x - (cols - 1) / 2) / max(cols / 2, 1)

    def slice(self, z: float, base: int, contrast: int, rng: numpy.random.Generator) -> numpy.ndarray:
        x, y = self.x, self.y
        img = numpy.zeros(x.shape, dtype=numpy.float32)
        body = (x / 0.85) ** 2 + (y / 0.7) ** 2 <= 1.0
        img[body] = base
        r = 0.35 * (1.0 - 0.6 * z * z)  # structures shrink towards the ends of the volume
        if r > 0.02:
            img[((x + 0.35) ** 2 + y ** 2) <= r * r] = base + contrast
            img[((x - 0.35) ** 2 + (y / 0.8) ** 2) <= (0.8 * r) ** 2] = base - contrast // 2
        img[((x) ** 2 + (y + 0.45) ** 2) <= 0.01] = base + 2 * contrast
        img += numpy.asarray(rng.normal(0.0, 8.0, size=img.shape), dtype=numpy.float32)
        return numpy.clip(img, 0, (1 << _BITS_STORED) - 1).astype(numpy.uint16)


def generate(*, patients: int = 2, studies: int = 2, series: int = 2, instances: int = 4,
             rows: int = 64, cols: int = 64, frames: int = 1, modality: str = "CT",
             seed: int = 0) -> Iterator[Dataset]:
    """Yield ``patients * studies * series * instances`` synthetic images.

    ``studies`` is per patient, ``series`` per study, ``instances`` per series.
    ``modality`` is "CT" or "MR". With ``frames > 1`` each instance is a
    Multi-frame Grayscale Word SC image of ``frames`` frames (see the module
    docstring). Deterministic in ``seed``.
    """
    modality = modality.upper()
    if modality not in ("CT", "MR"):
        raise ValueError(f"modality must be 'CT' or 'MR', not {modality!r}")
    for name, value in (("patients", patients), ("studies", studies), ("series", series),
                        ("instances", instances), ("rows", rows), ("cols", cols), ("frames", frames)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if rows > 0xFFFF or cols > 0xFFFF:
        raise ValueError("rows and cols must fit US (<= 65535)")
    phantom = _Phantom(rows, cols)
    for p in range(patients):
        patient = _patient(seed, p)
        for s in range(studies):
            study = _study(seed, p, s, modality)
            for e in range(series):
                ser = _series(seed, p, s, e, modality)
                for i in range(instances):
                    yield _instance(seed, (p, s, e, i), patient, study, ser, modality, rows, cols,
                                    frames, instances, phantom)


def _patient(seed: int, p: int) -> dict[str, Any]:
    n = _number(seed, "patient", p)
    # Even patients are Latin-1 (ISO_IR 100), odd ones UTF-8 (ISO_IR 192) so both
    # character sets travel through whatever uses the samples.
    names = _NAMES_LATIN1 if p % 2 == 0 else _NAMES_UTF8
    name, sex = names[n % len(names)]
    return {
        "SpecificCharacterSet": "ISO_IR 100" if p % 2 == 0 else "ISO_IR 192",
        "PatientName": name,
        "PatientID": f"DN{seed % 1000:03d}{p:05d}",
        "PatientBirthDate": f"{1940 + (n >> 16) % 60:04d}{1 + (n >> 24) % 12:02d}{1 + (n >> 32) % 28:02d}",
        "PatientSex": sex,
    }


def _study(seed: int, p: int, s: int, modality: str) -> dict[str, Any]:
    n = _number(seed, "study", p, s)
    return {
        "StudyInstanceUID": derived_uid(seed, "study", p, s),
        "StudyDate": _date(seed, "study-date", p, s),
        "StudyTime": _time(seed, "study-time", p, s),
        "StudyID": f"{s + 1}",
        "AccessionNumber": f"A{seed % 100:02d}{p:04d}{s:03d}",
        "ReferringPhysicianName": _PHYSICIANS[n % len(_PHYSICIANS)],
        "StudyDescription": _DESCRIPTIONS[modality][n % len(_DESCRIPTIONS[modality])],
        "FrameOfReferenceUID": derived_uid(seed, "frame-of-reference", p, s),
    }


def _series(seed: int, p: int, s: int, e: int, modality: str) -> dict[str, Any]:
    n = _number(seed, "series", p, s, e)
    return {
        "SeriesInstanceUID": derived_uid(seed, "series", p, s, e),
        "SeriesNumber": e + 1,
        "SeriesDescription": _SERIES_DESC[modality][n % len(_SERIES_DESC[modality])],
        "SeriesTime": _time(seed, "series-time", p, s, e),
        "SliceThickness": (5.0, 2.5, 1.0)[n % 3],
        "PixelSpacing": [0.5 + (n >> 8) % 4 * 0.25] * 2,
    }


def _instance(seed: int, idx: tuple[int, int, int, int], patient: dict[str, Any], study: dict[str, Any],
              series: dict[str, Any], modality: str, rows: int, cols: int, frames: int, count: int,
              phantom: _Phantom) -> Dataset:
    p, s, e, i = idx
    multiframe = frames > 1
    sop_class = MULTIFRAME_SC_STORAGE if multiframe else (CT_IMAGE_STORAGE if modality == "CT"
                                                            else MR_IMAGE_STORAGE)
    ds = Dataset()
    # SOP Common (C.12.1); Specific Character Set first so text encodes with it.
    ds.SpecificCharacterSet = patient["SpecificCharacterSet"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = derived_uid(seed, "instance", p, s, e, i)
    ds.InstanceCreationDate = study["StudyDate"]
    ds.InstanceCreationTime = series["SeriesTime"]
    # Patient (C.7.1.1)
    for key in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex"):
        ds.set(key, patient[key])
    # General Study (C.7.2.1)
    for key in ("StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
                "ReferringPhysicianName", "StudyDescription"):
        ds.set(key, study[key])
    # General Series (C.7.3.1); Patient Position is required for CT and MR.
    ds.Modality = modality
    ds.SeriesInstanceUID = series["SeriesInstanceUID"]
    ds.SeriesNumber = series["SeriesNumber"]
    ds.SeriesDescription = series["SeriesDescription"]
    ds.SeriesDate = study["StudyDate"]
    ds.SeriesTime = series["SeriesTime"]
    ds.PatientPosition = "HFS"
    ds.BodyPartExamined = _BODY_PARTS[study["StudyDescription"]]
    # General Equipment (C.7.5.1)
    ds.Manufacturer = "dicomnet"
    ds.ManufacturerModelName = "synthetic"
    ds.StationName = "DICOMNET"
    # General Image (C.7.6.1)
    ds.InstanceNumber = i + 1
    ds.ContentDate = study["StudyDate"]
    ds.ContentTime = series["SeriesTime"]
    # Value 3: AXIAL is a CT Image term (C.8.2.1.1.1); MR's defined terms have OTHER.
    ds.ImageType = (["DERIVED", "SECONDARY"] if multiframe else
                    ["ORIGINAL", "PRIMARY", "AXIAL" if modality == "CT" else "OTHER"])
    thickness = series["SliceThickness"]
    z_mm = -0.5 * thickness * (count - 1) + i * thickness
    if multiframe:
        # SC Equipment (C.8.6.1), Multi-frame (C.7.6.6), SC Multi-frame Image (C.8.6.3).
        ds.ConversionType = "SYN"
        ds.NumberOfFrames = frames
        ds.FrameIncrementPointer = 0x00182001          # Page Number Vector
        ds.PageNumberVector = list(range(1, frames + 1))
        ds.PatientOrientation = ["L", "P"]
    else:
        # Frame of Reference (C.7.4.1) and Image Plane (C.7.6.2)
        ds.FrameOfReferenceUID = study["FrameOfReferenceUID"]
        ds.PositionReferenceIndicator = ""
        ds.PixelSpacing = series["PixelSpacing"]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.ImagePositionPatient = [-0.5 * series["PixelSpacing"][1] * cols,
                                   -0.5 * series["PixelSpacing"][0] * rows, z_mm]
        ds.SliceThickness = thickness
        ds.SliceLocation = z_mm
    # Image Pixel (C.7.6.3): 16 bits allocated, 12 stored, high bit 11, unsigned.
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = _BITS_STORED
    ds.HighBit = _BITS_STORED - 1
    ds.PixelRepresentation = 0
    base, contrast = (1024, 300) if modality == "CT" else (500, 400)
    if multiframe:
        # SC Multi-frame Image (C.8.6.3): an identity rescale (enumerated values 0 and 1,
        # type "US" unspecified); the CT/MR Image modules are not part of this IOD.
        ds.RescaleIntercept = 0.0
        ds.RescaleSlope = 1.0
        ds.RescaleType = "US"
        ds.BurnedInAnnotation = "NO"
        ds.PresentationLUTShape = "IDENTITY"
    elif modality == "CT":
        # CT Image (C.8.2.1): stored 1024 is water (0 HU) with this rescale.
        ds.RescaleIntercept = -1024.0
        ds.RescaleSlope = 1.0
        ds.RescaleType = "HU"
        ds.KVP = 120.0
        ds.AcquisitionNumber = 1
    else:
        # MR Image (C.8.3.1)
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "2D"
        ds.RepetitionTime = 500.0
        ds.EchoTime = 15.0
        ds.EchoTrainLength = 1
        ds.MagneticFieldStrength = 1.5
        ds.AcquisitionNumber = 1
    # VOI LUT (C.11.2): in Hounsfield units for CT images, else in stored values.
    if modality == "CT" and not multiframe:
        ds.WindowCenter, ds.WindowWidth = 40.0, 400.0
    else:
        ds.WindowCenter, ds.WindowWidth = float(base + contrast // 2), float(4 * contrast)
    rng = numpy.random.default_rng(_number(seed, "pixels", p, s, e, i))
    span = max(count * frames - 1, 1)
    planes = [phantom.slice(2.0 * (i * frames + f) / span - 1.0, base, contrast, rng) for f in range(frames)]
    pixels = planes[0] if frames == 1 else numpy.stack(planes)
    ds.set("PixelData", pixels, "OW")
    ds.transfer_syntax = "1.2.840.10008.1.2.1"
    return ds

