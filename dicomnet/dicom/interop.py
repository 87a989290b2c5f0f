"""pydicom interop (optional: needs pydicom installed).

Both directions go through the DICOM encoding itself — the one format both
libraries are specified against — so every element, private ones and nested
sequences included, crosses with its exact VR and bytes.
"""
from __future__ import annotations

import io
from typing import Any

from dicomnet.dicom.dataset import Dataset

__all__ = ["to_pydicom", "from_pydicom"]

_NATIVE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}


def _pydicom() -> Any:
    try:
        import pydicom
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("pydicom interop needs pydicom: pip install 'dicomnet[pydicom]'") from exc
    return pydicom


def to_pydicom(ds: Dataset) -> Any:
    """Return a ``pydicom.Dataset`` (with ``file_meta`` when ``ds`` has one)."""
    pydicom = _pydicom()
    from dicomnet.dicom.writer import encode_dataset, encode_file_meta

    uid = str(ds.transfer_syntax or "1.2.840.10008.1.2.1")
    body = encode_dataset(ds, uid)
    meta = encode_file_meta(ds, uid)
    blob = bytes(128) + b"DICM" + bytes(meta) + bytes(body)
    pyds = pydicom.dcmread(io.BytesIO(blob))
    if ds.file_meta is None:
        del pyds.file_meta
    return pyds


def from_pydicom(pyds: Any) -> Dataset:
    """Return a dicomnet Dataset holding the elements of a ``pydicom.Dataset``."""
    pydicom = _pydicom()
    from dicomnet.dicom.reader import read_file

    buf = io.BytesIO()
    meta = getattr(pyds, "file_meta", None)
    uid = str(getattr(meta, "TransferSyntaxUID", "") or "") if meta is not None else ""
    if meta is not None and uid:
        pydicom.dcmwrite(buf, pyds, enforce_file_format=False)
    else:
        pydicom.dcmwrite(buf, pyds, implicit_vr=False, little_endian=True, enforce_file_format=False)
    ds = read_file(buf.getvalue())
    if ds.transfer_syntax is None:
        ds.__dict__["transfer_syntax"] = uid or "1.2.840.10008.1.2.1"
    return ds
