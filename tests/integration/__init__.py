"""Interop tests against real DICOM peers (Orthanc, dcmtk, pynetdicom)."""
