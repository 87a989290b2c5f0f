# cython: freethreading_compatible = False
"""The compiled :class:`DataElement` and the iterator behind walking a Dataset.

A DataElement is a view on one element of a Dataset: its ``tag`` and ``VR``,
and a ``value`` read through to the Dataset (decoded on first access, cached in
the Dataset's ``_vals`` dict) and written through to it (``Dataset.set``).

Walking every element of a Dataset read from bytes is the common case
(dumping, converting, indexing a file), so :func:`iter_level` walks one
level of an untouched Dataset straight off the
:class:`~dicomnet._codec.elements.ElementIndex`, making each DataElement as it
is asked for. The Dataset has by then decoded every value that the compiled
core decodes itself (``ElementIndex.decode_level``) into ``_vals``, so reading
``elem.value`` is one dict lookup; what is left (sequences, bulk data, implicit
VR, other character sets) is decoded by the Dataset on first access, exactly
as through ``ds[tag]``.
"""
from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject
from libc.stdint cimport uint16_t, uint32_t

from dicomnet._codec.elements cimport ElementIndex, Entry

cdef uint16_t VR_UN = (<uint16_t>ord("U") << 8) | <uint16_t>ord("N")

# Interned two-letter VR strings by code (a VR seen once is reused for every element).
cdef dict _VR_STR = {}

# dicomnet.dicom.dictionary and numpy, imported on first use: dicomnet.dicom imports this
# module while it is being imported itself.
cdef object _dictionary = None
cdef object _numpy = None


cdef inline object _vr_str(uint16_t code):
    cdef PyObject* s = PyDict_GetItem(_VR_STR, code)
    if s is not NULL:
        return <object>s
    text = chr(code >> 8) + chr(code & 0xFF)
    _VR_STR[code] = text
    return text


cdef object _keyword_of(object tag):
    global _dictionary
    if _dictionary is None:
        from dicomnet.dicom import dictionary
        _dictionary = dictionary
    return _dictionary.keyword_of(tag)


cdef str _fmt(object tag):
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


cdef class DataElement:
    """One element of a Dataset: tag, VR and (lazily decoded) value.

    It is a view on its Dataset: reading ``value`` decodes on first access,
    assigning ``value`` sets the element in the Dataset.
    """

    cdef public object tag
    cdef public object VR
    cdef object _ds
    cdef dict _vals         # the Dataset's tag -> value cache (the same dict object)

    def __init__(self, tag, VR, ds):
        self.tag = tag
        self.VR = VR
        self._ds = ds
        self._vals = ds._vals

    @property
    def value(self):
        cdef PyObject* v = PyDict_GetItem(self._vals, self.tag)
        if v is not NULL:
            return <object>v
        return self._ds._value(self.tag)

    @value.setter
    def value(self, value):
        self._ds.set(self.tag, value, self.VR)

    @property
    def keyword(self):
        return _keyword_of(self.tag) or ""

    @property
    def length(self):
        """Value length on the wire, as read (None for elements set in Python)."""
        return self._ds._raw_length(self.tag)

    def __repr__(self):
        text = repr(self.value)
        if len(text) > 70:
            text = text[:67] + "..."
        return f"{_fmt(self.tag)} {self.VR} {self.keyword or 'Unknown'}: {text}"

    def __eq__(self, other):
        global _numpy
        if not isinstance(other, DataElement):
            return NotImplemented
        a, b = self.value, (<DataElement>other).value
        if isinstance(a, memoryview):
            a = bytes(a)
        if isinstance(b, memoryview):
            b = bytes(b)
        if _numpy is None:
            import numpy
            _numpy = numpy
        try:
            if isinstance(a, _numpy.ndarray) or isinstance(b, _numpy.ndarray):
                same = bool(_numpy.array_equal(_numpy.asarray(a), _numpy.asarray(b)))
            else:
                same = bool(a == b)
        except (ValueError, TypeError):
            same = False
        return self.tag == (<DataElement>other).tag and self.VR == (<DataElement>other).VR and same

    def __ne__(self, other):
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    __hash__ = None

    def __reduce__(self):
        return DataElement, (self.tag, self.VR, self._ds)


cdef class LevelIterator:
    """Yields the DataElements of one level of an untouched Dataset, built one at a time.

    Made by :func:`iter_level`. Each element is made when it is asked for, so a
    walk that drops each element before taking the next allocates one at a time.
    """

    cdef ElementIndex index
    cdef Py_ssize_t i, stop
    cdef object ds
    cdef dict vals

    def __iter__(self):
        return self

    def __next__(self):
        cdef Entry* e
        cdef DataElement elem
        if self.i >= self.stop:
            raise StopIteration
        e = &self.index.entries[self.i]
        self.i = e.end
        elem = DataElement.__new__(DataElement)
        elem.tag = e.tag
        if e.vr == 0 or e.vr == VR_UN:
            elem.VR = self.ds._vr(elem.tag)
        else:
            elem.VR = _vr_str(e.vr)
        elem._ds = self.ds
        elem._vals = self.vals
        return elem


def iter_level(ElementIndex index, Py_ssize_t first, Py_ssize_t stop, object ds, dict vals):
    """An iterator over the DataElements of the level [first, stop) of ``index``, in tag order.

    ``ds`` is the untouched Dataset over that level and ``vals`` its value cache.
    An element whose VR is not on the wire (implicit VR, or UN) gets
    ``ds._vr(tag)``. Returns None when the level's tags are not in strictly
    ascending order (malformed data): the caller sorts them itself.
    """
    cdef Py_ssize_t i
    cdef Entry* e
    cdef uint32_t last = 0
    cdef LevelIterator it
    if first < 0 or stop > len(index) or first > stop:
        raise IndexError("level range out of the index")
    i = first
    while i < stop:
        e = &index.entries[i]
        if i != first and e.tag <= last:
            return None
        last = e.tag
        i = e.end
    it = LevelIterator.__new__(LevelIterator)
    it.index = index
    it.i = first
    it.stop = stop
    it.ds = ds
    it.vals = vals
    return it
