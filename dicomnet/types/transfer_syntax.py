"""Transfer syntaxes (PS3.5 section 10 and Annex A): how a data set is encoded.

:func:`transfer_syntax` knows every transfer syntax of the PS3.6 registry that
encodes a DICOM data set as bytes. Its rules, checked one by one against PS3.5:

* Implicit VR Little Endian (A.1) and the retired Papyrus 3 Implicit VR Little
  Endian (1.2.840.10008.1.20): implicit VR, native pixel data.
* Explicit VR Little Endian (A.2), retired Explicit VR Big Endian (A.3): native.
* Deflated Explicit VR Little Endian (A.5): the whole data set is deflated.
* JPIP Referenced (A.6) and JPIP HTJ2K Referenced: Explicit VR Little Endian,
  no Pixel Data in the data set (a Pixel Data Provider URL instead), so *not*
  encapsulated; their "Deflate" variants deflate the data set as well.
* SMPTE ST 2110 (DICOM-RTV, PS3.22): the transfer syntax names the separate
  video/audio flow; the metadata data set is Explicit VR Little Endian with no
  encapsulated Pixel Data.
* Everything else (JPEG, JPEG-LS, JPEG 2000, HTJ2K, RLE, MPEG-2/4, HEVC and
  Encapsulated Uncompressed, A.4): Explicit VR Little Endian with encapsulated
  Pixel Data.

RFC 2557 MIME Encapsulation and XML Encoding (both retired) are registry
entries that do not describe a binary data set encoding; they, and any
unregistered (private) UID, give ``KeyError``: a private transfer syntax may
use any byte order or VR rule, so guessing one would mis-parse silently.
"""

from __future__ import annotations

from dataclasses import dataclass

from dicomnet.types.uids import TRANSFER_SYNTAX, UID
from dicomnet.types._uids import REGISTRY

__all__ = [
    "TransferSyntax",
    "transfer_syntax",
    "all_transfer_syntaxes",
    "IMPLICIT_VR_LE",
    "EXPLICIT_VR_LE",
    "EXPLICIT_VR_BE",
    "DEFLATED_EXPLICIT_VR_LE",
    "UNCOMPRESSED",
]


@dataclass(frozen=True, slots=True)
class TransferSyntax:
    """The encoding rules a transfer syntax UID stands for."""

    uid: UID
    name: str
    implicit_vr: bool
    little_endian: bool
    deflated: bool
    encapsulated: bool
    retired: bool

    @property
    def is_native(self) -> bool:
        """True when Pixel Data (if any) is native: not encapsulated, not deflated."""
        return not self.encapsulated and not self.deflated


# Registry entries that are not binary data-set encodings (see module doc).
NOT_A_DATASET_ENCODING = frozenset(
    {
        "1.2.840.10008.1.2.6.1",  # RFC 2557 MIME encapsulation (retired)
        "1.2.840.10008.1.2.6.2",  # XML Encoding (retired)
    }
)

_IMPLICIT = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.20"})
_BIG_ENDIAN = frozenset({"1.2.840.10008.1.2.2"})
_DEFLATED = frozenset(
    {
        "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
        "1.2.840.10008.1.2.4.95",  # JPIP Referenced Deflate
        "1.2.840.10008.1.2.4.205",  # JPIP HTJ2K Referenced Deflate
    }
)
_NOT_ENCAPSULATED = frozenset(
    {
        "1.2.840.10008.1.2",
        "1.2.840.10008.1.20",
        "1.2.840.10008.1.2.1",
        "1.2.840.10008.1.2.2",
        "1.2.840.10008.1.2.1.99",
        "1.2.840.10008.1.2.4.94",  # JPIP Referenced
        "1.2.840.10008.1.2.4.95",
        "1.2.840.10008.1.2.4.204",  # JPIP HTJ2K Referenced
        "1.2.840.10008.1.2.4.205",
        "1.2.840.10008.1.2.7.1",  # SMPTE ST 2110-20 progressive
        "1.2.840.10008.1.2.7.2",  # SMPTE ST 2110-20 interlaced
        "1.2.840.10008.1.2.7.3",  # SMPTE ST 2110-30 audio
    }
)


def _build() -> dict[str, TransferSyntax]:
    table: dict[str, TransferSyntax] = {}
    for uid, _keyword, uid_type, retired, name in REGISTRY:
        if uid_type != TRANSFER_SYNTAX or uid in NOT_A_DATASET_ENCODING:
            continue
        table[uid] = TransferSyntax(
            uid=UID(uid),
            name=name,
            implicit_vr=uid in _IMPLICIT,
            little_endian=uid not in _BIG_ENDIAN,
            deflated=uid in _DEFLATED,
            encapsulated=uid not in _NOT_ENCAPSULATED,
            retired=retired,
        )
    return table


_TABLE = _build()

IMPLICIT_VR_LE: TransferSyntax = _TABLE["1.2.840.10008.1.2"]
EXPLICIT_VR_LE: TransferSyntax = _TABLE["1.2.840.10008.1.2.1"]
EXPLICIT_VR_BE: TransferSyntax = _TABLE["1.2.840.10008.1.2.2"]
DEFLATED_EXPLICIT_VR_LE: TransferSyntax = _TABLE["1.2.840.10008.1.2.1.99"]

# The native (uncompressed, not encapsulated, not deflated) standard encodings.
UNCOMPRESSED: tuple[TransferSyntax, ...] = (IMPLICIT_VR_LE, EXPLICIT_VR_LE, EXPLICIT_VR_BE)


def transfer_syntax(uid: str) -> TransferSyntax:
    """Return the :class:`TransferSyntax` for a registered transfer syntax UID.

    Raises ``KeyError`` for an unregistered (e.g. private) UID and for the two
    retired registry entries that are not data set encodings (see module doc).
    Trailing NUL/space padding of a UID read from the wire is ignored.
    """
    ts = _TABLE.get(uid)
    if ts is not None:
        return ts
    stripped = uid.rstrip("\x00 ") if isinstance(uid, str) else uid
    ts = _TABLE.get(stripped)
    if ts is not None:
        return ts
    if stripped in NOT_A_DATASET_ENCODING:
        raise KeyError(f"transfer syntax {stripped} does not describe a binary data set encoding")
    raise KeyError(f"unknown transfer syntax UID {uid!r}")


def all_transfer_syntaxes() -> tuple[TransferSyntax, ...]:
    """Every transfer syntax :func:`transfer_syntax` knows, in registry order."""
    return tuple(_TABLE.values())
