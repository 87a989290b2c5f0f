# cython: language_level=3
# The busy-poll loop of waits.pyx, for other compiled modules (the C-STORE lane).

cdef int spin_ready(long long fd, long long other, long long budget_ns) noexcept nogil
