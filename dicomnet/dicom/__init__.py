"""DICOM data: the lazy Dataset, Part 10 files, values, pixels."""
from dicomnet.dicom.dataset import DataElement, Dataset, Sequence
from dicomnet.dicom.reader import read_dataset, read_file
from dicomnet.dicom.writer import write_file

__all__ = ["Dataset", "DataElement", "Sequence", "read_file", "read_dataset", "write_file"]
