"""dicomnet: fast DICOM networking and datasets for Python, with a compiled core."""
from dicomnet._version import __version__
from dicomnet.client import Client
from dicomnet.server import Server
from dicomnet.dicom import DataElement, Dataset, Sequence, read_dataset, read_file, write_file
from dicomnet.errors import (
    ARTIMTimeout,
    AssociationAborted,
    AssociationError,
    AssociationRejected,
    ConnectTimeout,
    DicomNetError,
    DicomParseError,
    DicomTimeoutError,
    DimseStatusError,
    PDUError,
    ReadTimeout,
    WriteTimeout,
)

__all__ = [
    "__version__",
    "Client", "Server",
    "Dataset",
    "DataElement",
    "Sequence",
    "read_file",
    "read_dataset",
    "write_file",
    "DicomNetError",
    "DicomParseError",
    "PDUError",
    "AssociationError",
    "AssociationRejected",
    "AssociationAborted",
    "DicomTimeoutError",
    "ConnectTimeout",
    "ReadTimeout",
    "WriteTimeout",
    "ARTIMTimeout",
    "DimseStatusError",
]
