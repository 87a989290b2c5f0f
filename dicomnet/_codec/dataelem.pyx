# cython: freethreading_compatible = False
"""The compiled parts of the lazy Dataset: DataElement, the level iterator and the level map.

A DataElement is a view on one element of a Dataset: its ``tag`` and ``VR``,
and a ``value`` read through to the Dataset (decoded on first access, cached in
the Dataset's ``_vals`` dict) and written through to it (``Dataset.set``).

Walking every element of a Dataset read from bytes is the common case
(dumping, converting, indexing a file), so :func:`iter_level` walks one
level of an untouched Dataset straight off the
:class:`~dicomnet._codec.elements.ElementIndex`, making each DataElement as it
is asked for. On a first walk it decodes every value that the compiled
core decodes itself (``ElementIndex.simple_value``) into ``_vals``, so reading
``elem.value`` is one dict lookup; what is left (sequences, bulk data, implicit
VR, other character sets) is decoded by the Dataset on first access, exactly
as through ``ds[tag]``. :class:`LevelMap` is the Dataset's tag -> entry map
(``_raw``), answered from the index without building a dict.
"""
from cpython.dict cimport PyDict_GetItem
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport PyObject, PyObject_GenericSetAttr
from libc.stdint cimport int32_t, uint16_t, uint32_t
from libc.string cimport memcpy, memmove, memset
from cpython.ref cimport Py_INCREF
from cpython.unicode cimport PyUnicode_InternFromString
cimport cython

from dicomnet._codec.elements cimport ElementIndex, Entry, F_UNDEFINED

from dicomnet._codec.elements import SKIP

cdef uint16_t VR_UN = (<uint16_t>ord("U") << 8) | <uint16_t>ord("N")

# Two-letter VR strings by code (both letters A-Z: the parser checks), made once each.
cdef PyObject* _VR_STR[26 * 26]
memset(_VR_STR, 0, sizeof(_VR_STR))

# dicomnet.dicom.dictionary and numpy, imported on first use: dicomnet.dicom imports this
# module while it is being imported itself.
cdef object _dictionary = None
cdef object _numpy = None


cdef inline object _vr_str(uint16_t code):
    cdef int a = (code >> 8) - 65, b = (code & 0xFF) - 65
    cdef object text
    if a < 0 or a >= 26 or b < 0 or b >= 26:
        return chr(code >> 8) + chr(code & 0xFF)
    if _VR_STR[a * 26 + b] is NULL:
        text = PyUnicode_InternFromString(bytes([code >> 8, code & 0xFF]))   # the same object as "SQ" in code
        Py_INCREF(text)    # kept for the life of the module
        _VR_STR[a * 26 + b] = <PyObject*>text
    return <object>_VR_STR[a * 26 + b]


cdef object _keyword_of(object tag):
    global _dictionary
    if _dictionary is None:
        from dicomnet.dicom import dictionary
        _dictionary = dictionary
    return _dictionary.keyword_of(tag)


cdef str _fmt(object tag):
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


@cython.freelist(16)
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


cdef extern from "Python.h":
    Py_ssize_t Py_REFCNT(PyObject* o)
    dict _PyDict_NewPresized(Py_ssize_t minused)


cdef class LevelMap


cdef class LevelIterator:
    """Yields the DataElements of one level of an untouched Dataset, built one at a time.

    Made by :func:`iter_level`. Like CPython's own dict-items and zip iterators,
    it recycles a result nobody else holds any more: it keeps the last two
    elements it gave out, and one whose only reference is the iterator's (as in
    ``for elem in ds:``, where ``elem`` is rebound to the next element before
    the one after is asked for) is filled with the next element instead of
    allocating a new object. An element still referenced anywhere is never reused.
    """

    cdef ElementIndex index
    cdef int32_t* pos       # a copy of the level's entry indices when the walk began
    cdef list tags          # the level's tags then (the int objects keyed in vals)
    cdef Py_ssize_t k, n
    cdef object ds
    cdef dict vals
    cdef DataElement spare0, spare1   # the last two elements given out

    def __cinit__(self):
        self.pos = NULL

    def __dealloc__(self):
        PyMem_Free(self.pos)

    def __iter__(self):
        return self

    def __next__(self):
        cdef Entry* e
        cdef DataElement elem
        cdef Py_ssize_t k = self.k
        if k >= self.n:
            self.spare0 = self.spare1 = None
            raise StopIteration
        e = &self.index.entries[self.pos[k]]
        if k & 1:
            if self.spare1 is not None and Py_REFCNT(<PyObject*>self.spare1) == 1:
                elem = self.spare1
            else:
                elem = self.spare1 = DataElement.__new__(DataElement)
        else:
            if self.spare0 is not None and Py_REFCNT(<PyObject*>self.spare0) == 1:
                elem = self.spare0
            else:
                elem = self.spare0 = DataElement.__new__(DataElement)
        elem.tag = self.tags[k]
        self.k = k + 1
        if e.vr == 0 or e.vr == VR_UN:
            elem.VR = self.ds._vr(elem.tag)
        else:
            elem.VR = _vr_str(e.vr)
        elem._ds = self.ds
        elem._vals = self.vals
        return elem


def iter_level(object raw, object ds, dict vals, int codec=-2, object person_name=None):
    """An iterator over the DataElements of an untouched Dataset, in tag order.

    ``raw`` is the Dataset's LevelMap (``_raw``), ``ds`` the Dataset and ``vals``
    its value cache. With ``codec`` >= -1 (as in ``ElementIndex.simple_value``)
    every value the compiled core decodes itself goes into ``vals`` first
    (unless a value for the tag is there already): the bulk pass of a first
    walk. An element whose VR is not on the wire (implicit VR, or UN) gets
    ``ds._vr(tag)``. Returns None when ``raw`` is not a LevelMap (a dict, for a
    malformed level): the caller sorts the tags itself.
    """
    cdef LevelMap level
    cdef LevelIterator it
    cdef list tags
    cdef Entry* e
    cdef Py_ssize_t k
    cdef object tag, value
    cdef dict into
    cdef bint fresh
    if type(raw) is not LevelMap:
        return None
    level = <LevelMap>raw
    tags = level.tag_list()
    if codec >= -1:
        # Into a dict sized for the level at once (no rehash as it grows); an empty
        # vals (the usual first walk) then takes it whole in one copy.
        fresh = len(vals) == 0
        into = _PyDict_NewPresized(level.n) if fresh else vals
        for k in range(level.n):
            e = &level.index.entries[level.pos[k]]
            if e.vr == 0 or e.flags != 0:
                continue
            tag = tags[k]
            if fresh or PyDict_GetItem(vals, tag) is NULL:
                value = level.index.simple_value(e, codec, person_name)
                if value is not SKIP:
                    into[tag] = value
        if fresh:
            vals.update(into)
    # The walk keeps its own copy of the level, as it was: deleting an element
    # meanwhile (LevelMap.pop) neither shifts nor shortens it.
    it = LevelIterator.__new__(LevelIterator)
    it.index = level.index
    if level.n:
        it.pos = <int32_t*>PyMem_Malloc(level.n * sizeof(int32_t))
        if it.pos == NULL:
            raise MemoryError()
        memcpy(it.pos, level.pos, level.n * sizeof(int32_t))
    it.n = level.n
    it.tags = tags
    it.k = 0
    it.ds = ds
    it.vals = vals
    return it


cdef class LevelMap:
    """tag -> entry index for the elements of one level of an ElementIndex.

    What a Dataset read from bytes keeps in ``_raw``: a read-only-but-for-``pop``
    mapping with the dict methods the Dataset uses (``in``, ``[]``, ``get``,
    ``pop``, ``len``, iteration in ascending tag order, ``keys`` as a frozenset),
    answered by binary search over the level's entries instead of a dict built
    for every Dataset. Made by :func:`level_map` for levels whose tags ascend
    strictly; keys that are not ints are simply absent.
    """

    cdef ElementIndex index
    cdef int32_t* pos       # entry index of each element still mapped, ascending tags
    cdef Py_ssize_t n
    cdef list tags          # their tags as ints, made on first use (see tag_list)

    def __cinit__(self):
        self.pos = NULL
        self.n = 0
        self.tags = None

    cdef list tag_list(self):
        """The mapped tags as a list of ints, in order; the same int objects every time
        (so dicts keyed by them find them by identity)."""
        cdef Py_ssize_t k
        if self.tags is None:
            self.tags = [self.index.entries[self.pos[k]].tag for k in range(self.n)]
        return self.tags

    def __dealloc__(self):
        PyMem_Free(self.pos)

    cdef Py_ssize_t _find(self, object key) except -2:
        """Position of ``key`` in ``pos``, or -1."""
        cdef unsigned long long tag
        cdef Py_ssize_t lo = 0, hi = self.n, mid
        cdef uint32_t t
        if not isinstance(key, int):
            return -1
        try:
            tag = key
        except OverflowError:   # negative or huge: not a tag
            return -1
        if tag > 0xFFFFFFFF:
            return -1
        while lo < hi:
            mid = (lo + hi) >> 1
            t = self.index.entries[self.pos[mid]].tag
            if t < tag:
                lo = mid + 1
            elif t > tag:
                hi = mid
            else:
                return mid
        return -1

    def __len__(self):
        return self.n

    def __contains__(self, key):
        return self._find(key) >= 0

    def __getitem__(self, key):
        cdef Py_ssize_t k = self._find(key)
        if k < 0:
            raise KeyError(key)
        return self.pos[k]

    def get(self, key, default=None):
        cdef Py_ssize_t k = self._find(key)
        return self.pos[k] if k >= 0 else default

    def pop(self, key, *default):
        """Remove ``key`` and return its entry index (``default`` when absent, like dict.pop)."""
        cdef Py_ssize_t k = self._find(key)
        cdef int32_t found
        if len(default) > 1:
            raise TypeError(f"pop expected at most 2 arguments, got {1 + len(default)}")
        if k < 0:
            if default:
                return default[0]
            raise KeyError(key)
        found = self.pos[k]
        memmove(&self.pos[k], &self.pos[k + 1], (self.n - k - 1) * sizeof(int32_t))
        self.n -= 1
        if self.tags is not None:
            self.tags = self.tags[:k] + self.tags[k + 1:]   # a new list: walks under way keep theirs
        return found

    def __iter__(self):
        return iter(list(self.tag_list()))

    def keys(self):
        return frozenset(self.tag_list())

    def values(self):
        return [self.pos[k] for k in range(self.n)]

    def items(self):
        return [(self.index.entries[self.pos[k]].tag, self.pos[k]) for k in range(self.n)]

    def __eq__(self, other):
        if isinstance(other, (LevelMap, dict)):
            return dict(self.items()) == dict(other.items())
        return NotImplemented

    __hash__ = None

    def __repr__(self):
        return f"LevelMap({dict(self.items())!r})"


def level_map(ElementIndex index, Py_ssize_t first, Py_ssize_t stop):
    """A :class:`LevelMap` of the level [first, stop) of ``index``; a dict (tag -> entry
    index, the last occurrence of a repeated tag) when its tags do not ascend strictly."""
    cdef Py_ssize_t i, count = 0
    cdef uint32_t last = 0
    cdef LevelMap m
    if first < 0 or stop > len(index) or first > stop:
        raise IndexError("level range out of the index")
    i = first
    while i < stop:
        if i != first and index.entries[i].tag <= last:
            return index.level(first, stop)
        last = index.entries[i].tag
        count += 1
        i = index.entries[i].end
    m = LevelMap.__new__(LevelMap)
    m.index = index
    if count:
        m.pos = <int32_t*>PyMem_Malloc(count * sizeof(int32_t))
        if m.pos == NULL:
            raise MemoryError()
    i = first
    while i < stop:
        m.pos[m.n] = <int32_t>i
        m.n += 1
        i = index.entries[i].end
    return m


cdef object _new_dataset(object cls, ElementIndex index, Py_ssize_t first, Py_ssize_t stop,
                         object parent, object transfer_syntax):
    ds = cls.__new__(cls)
    # The same attributes Dataset._from_index documents, set in one go (object's own
    # __setattr__: the Dataset's would take "__dict__" for an attribute of its own).
    PyObject_GenericSetAttr(ds, "__dict__", {
        "_index": index,
        "_raw": level_map(index, first, stop),
        "_range": (first, stop),
        "_vals": {},
        "_vrs": {},
        "_dirty": False,
        "_parent": parent,
        "_items": {},
        "file_meta": None,
        "preamble": None,
        "filename": None,
        "transfer_syntax": transfer_syntax,
    })
    return ds


def new_dataset(cls, ElementIndex index, Py_ssize_t first, Py_ssize_t stop, parent,
                transfer_syntax):
    """A ``cls`` (a Dataset class) over the level [first, stop) of ``index`` (Dataset._from_index)."""
    return _new_dataset(cls, index, first, stop, parent, transfer_syntax)


def new_items(cls, ElementIndex index, Py_ssize_t i, parent, transfer_syntax):
    """One ``cls`` per item of the sequence at entry ``i``, each marked ``_undefined``
    when the source gave it undefined length (the items of Dataset._sequence)."""
    cdef list out = []
    cdef Py_ssize_t j, stop
    if i < 0 or i >= len(index):
        raise IndexError(f"entry {i} out of range (index holds {len(index)})")
    j, stop = i + 1, index.entries[i].end
    while j < stop:
        item = _new_dataset(cls, index, j + 1, index.entries[j].end, parent, transfer_syntax)
        item.__dict__["_undefined"] = (index.entries[j].flags & F_UNDEFINED) != 0
        out.append(item)
        j = index.entries[j].end
    return out
