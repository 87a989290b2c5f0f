"""Regenerate the fuzzing seeds in tests/fuzz/corpus/dataset/ (small files, < 20 KB each).

Each seed exercises a different path of the reader: the three uncompressed
syntaxes, Deflated, nested sequences of defined and undefined length, a UN
sequence of undefined length, multi-frame RGB, encapsulated Pixel Data with a
Basic and with an Extended Offset Table, and a bare data set without File Meta.
Run ``python tests/fuzz/make_corpus.py``; the output is deterministic.
"""
from __future__ import annotations

import os
import struct

import numpy

from dicomnet.dicom.dataset import Dataset
from dicomnet.dicom.writer import encode_dataset, encode_file_meta

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "dataset")
LE, IMPLICIT, BE, DEFLATED = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"
JPEG = "1.2.840.10008.1.2.4.50"
UNDEF = 0xFFFFFFFF


def code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
    return item


def header(sop_class: str, n: int, modality: str) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.{n}"
    ds.StudyDate, ds.StudyTime = "20240102", "101530.25"
    ds.Modality = modality
    ds.PatientName = "Müller^Jürgen"
    ds.PatientID = f"FUZZ{n}"
    ds.PatientBirthDate = "19700101"
    ds.SliceThickness = 1.25
    ds.ImagePositionPatient = [-125.0, -120.5, 30.0]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.InstanceNumber = n
    ds.ProcedureCodeSequence = [code("24627-2", "CT Chest")]
    return ds


def mono(ds: Dataset, pixels: numpy.ndarray) -> Dataset:
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.BitsAllocated = ds.BitsStored = pixels.dtype.itemsize * 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    ds.RescaleIntercept, ds.RescaleSlope = -1024.0, 1.0
    ds.add_new(0x7FE00010, "OW", pixels.astype(pixels.dtype.newbyteorder("<")).tobytes())
    return ds


def part10(ds: Dataset, ts: str, body: bytes | None = None) -> bytes:
    data = bytes(encode_dataset(ds, ts)) if body is None else body
    return bytes(128) + b"DICM" + bytes(encode_file_meta(ds, ts)) + data


def fragment(data: bytes) -> bytes:
    return struct.pack("<HHI", 0xFFFE, 0xE000, len(data)) + data


def encapsulated(ds: Dataset, frames: list[list[bytes]], *, eot: bool) -> bytes:
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 8, 8, 7
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.NumberOfFrames = len(frames)
    offsets, pos = [], 0
    for parts in frames:
        offsets.append(pos)
        pos += sum(8 + len(p) for p in parts)
    if eot:
        ds.add_new(0x7FE00001, "OV", numpy.array(offsets, numpy.uint64))
        ds.add_new(0x7FE00002, "OV", numpy.array([sum(len(p) for p in f) for f in frames], numpy.uint64))
        bot = b""
    else:
        bot = struct.pack(f"<{len(offsets)}I", *offsets)
    pixel = struct.pack("<HH2s2xI", 0x7FE0, 0x0010, b"OB", UNDEF) + fragment(bot)
    pixel += b"".join(fragment(p) for parts in frames for p in parts) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return part10(ds, JPEG, bytes(encode_dataset(ds, LE)) + pixel)


def undefined_lengths() -> bytes:
    """Explicit VR LE with undefined-length sequences/items and a private UN sequence."""
    def el(g: int, e: int, vr: bytes, value: bytes) -> bytes:
        return struct.pack("<HH2sH", g, e, vr, len(value)) + value

    def item_undef(body: bytes) -> bytes:
        return struct.pack("<HHI", 0xFFFE, 0xE000, UNDEF) + body + struct.pack("<HHI", 0xFFFE, 0xE00D, 0)

    seq_end = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    inner = (struct.pack("<HH2s2xI", 0x0008, 0x2218, b"SQ", UNDEF)
             + item_undef(el(0x0008, 0x0100, b"SH", b"T-D400")) + seq_end)
    implicit_item = struct.pack("<HHI", 0x0010, 0x0020, 4) + b"ID01"
    body = (el(0x0008, 0x0016, b"UI", b"1.2.840.10008.5.1.4.1.1.88.11\x00")
            + el(0x0008, 0x0018, b"UI", b"1.2.826.0.1.3680043.8.498.9\x00")
            + el(0x0008, 0x0060, b"CS", b"SR")
            + el(0x0009, 0x0010, b"LO", b"FUZZ")
            + struct.pack("<HH2s2xI", 0x0009, 0x1001, b"UN", UNDEF) + item_undef(implicit_item) + seq_end
            + struct.pack("<HH2s2xI", 0x0040, 0xA730, b"SQ", UNDEF)
            + item_undef(inner + el(0x0040, 0xA010, b"CS", b"CONTAINS"))
            + fragment(el(0x0040, 0xA040, b"CS", b"TEXT")
                       + struct.pack("<HH2s2xI", 0x0040, 0xA160, b"UT", 10) + b"Some text ")
            + seq_end)
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.88.11", "1.2.826.0.1.3680043.8.498.9"
    return part10(ds, LE, body)


def seeds() -> dict[str, bytes]:
    ct = "1.2.840.10008.5.1.4.1.1.2"
    rng = numpy.random.default_rng(20240102)
    out: dict[str, bytes] = {}
    out["ct_explicit_le.dcm"] = part10(mono(header(ct, 1, "CT"), rng.integers(0, 4096, (32, 32), numpy.uint16)), LE)
    signed = rng.integers(-500, 500, (16, 16), numpy.int16)
    out["mr_implicit_le.dcm"] = part10(mono(header(ct, 2, "MR"), signed), IMPLICIT)
    out["mr_explicit_be.dcm"] = part10(mono(header(ct, 3, "MR"), rng.integers(0, 65535, (16, 16), numpy.uint16)), BE)
    sr = header("1.2.840.10008.5.1.4.1.1.88.11", 4, "SR")
    leaf = Dataset()
    leaf.RelationshipType, leaf.ValueType = "CONTAINS", "TEXT"
    leaf.ConceptNameCodeSequence = [code("121071", "Finding")]
    leaf.TextValue = "No abnormality " * 20
    middle = Dataset()
    middle.RelationshipType, middle.ValueType = "CONTAINS", "CONTAINER"
    middle.ContentSequence = [leaf, leaf]
    sr.ContentSequence = [middle]
    out["sr_deflated.dcm"] = part10(sr, DEFLATED)
    rgb = header("1.2.840.10008.5.1.4.1.1.7", 5, "OT")
    rgb.SamplesPerPixel, rgb.PhotometricInterpretation, rgb.PlanarConfiguration = 3, "RGB", 1
    rgb.NumberOfFrames, rgb.Rows, rgb.Columns = 2, 8, 8
    rgb.BitsAllocated, rgb.BitsStored, rgb.HighBit, rgb.PixelRepresentation = 8, 8, 7, 0
    rgb.add_new(0x7FE00010, "OB", rng.integers(0, 256, 2 * 3 * 8 * 8, numpy.uint8).tobytes())
    out["rgb_planar1_2frames.dcm"] = part10(rgb, LE)
    jpeg = [[b"\xff\xd8\xff\xe0" + bytes(rng.integers(0, 256, 40, numpy.uint8)) + b"\xff\xd9"] for _ in range(3)]
    out["encapsulated_bot.dcm"] = encapsulated(header("1.2.840.10008.5.1.4.1.1.7", 6, "OT"), jpeg, eot=False)
    split = [[f[0][:20], f[0][20:]] for f in jpeg]
    out["encapsulated_eot.dcm"] = encapsulated(header("1.2.840.10008.5.1.4.1.1.7", 7, "OT"), split, eot=True)
    out["sr_undefined_lengths.dcm"] = undefined_lengths()
    tiny = mono(header(ct, 8, "CT"), rng.integers(0, 255, (4, 4), numpy.uint16))
    out["bare_implicit_no_meta.dcm"] = bytes(encode_dataset(tiny, IMPLICIT))
    return out


def main() -> None:
    os.makedirs(HERE, exist_ok=True)
    for name, data in seeds().items():
        assert len(data) < 20_000, name
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
