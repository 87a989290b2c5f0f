"""Type stub for dicomnet/_codec/textvalue.pyx.

The module is C-level only: ``elements.pyx`` cimports ``decode_text`` (text
values decoded straight from their bytes); nothing is exported to Python.
"""
