# cython: language_level=3
"""Page-faulting receive buffers in on a helper thread.

A data set received into fresh memory pays for that memory page by page: on
the machines we measure on (a VM, 2 CPUs) about 1.2 us per 4 KiB page --
about 150 us for a 512 KiB CT instance, a third of what a C-GET requestor
spends per instance when the caller keeps every instance it receives (so no
buffer can be reused). The cost is the kernel's (allocate, zero and account
each page), and it can be paid on another CPU before the data arrive.

:class:`Prefaulter` owns one POSIX thread, which holds no GIL and runs no
Python. :meth:`Prefaulter.submit` queues the address range of a writable
buffer (an anonymous memory map made without ``MAP_POPULATE``); the thread
faults its pages in with ``madvise(MADV_POPULATE_WRITE)`` (Linux 5.14), and
the buffer is used at once, whether or not that is done yet: a page the
receive reaches first is faulted in by the receive, as it would have been.

The request keeps no export of the buffer (the assembler trims and grows its
maps with ``mremap``, which an export forbids). So a range may be unmapped or
remapped before its turn comes. That is harmless: ``MADV_POPULATE_WRITE``
changes no byte of memory -- on a range that is gone it fails, and on
whatever was mapped there since it only faults pages in -- so the worst case
is work done for nothing. Owners drain the queue (:meth:`drain`) before they
drop buffers they submitted, which keeps that case rare.

Elsewhere (not Linux, an older kernel) :attr:`Prefaulter.supported` is
False, or becomes False after the first refusal; the caller then makes its
buffers populated up front (``MAP_POPULATE``), as before. In a child
process forked meanwhile, which has no such thread, it is False as well, and
nothing is waited for or joined there.
"""
from cpython.buffer cimport PyBUF_WRITABLE, PyObject_GetBuffer, PyBuffer_Release

cdef extern from *:
    """
    #if defined(__linux__)
    #include <errno.h>
    #include <pthread.h>
    #include <string.h>
    #include <sys/mman.h>
    #include <unistd.h>
    #ifndef MADV_POPULATE_WRITE
    #define MADV_POPULATE_WRITE 23
    #endif
    #define DN_PF_SLOTS 16
    typedef struct {
        pthread_mutex_t lock;
        pthread_cond_t work;        /* a request was queued, or stop */
        pthread_cond_t done;        /* the queue emptied */
        char* addr[DN_PF_SLOTS];
        size_t len[DN_PF_SLOTS];
        int head, count, busy, stop, refused;
        pid_t owner;                /* the process whose thread this is */
        pthread_t thread;
    } dn_prefaulter;

    /* After a fork the child has a copy of the struct but not the thread:
       nothing is waited for or joined there (the copy is left as it is). */
    static int dn_pf_orphan(dn_prefaulter* p) { return p->owner != getpid(); }

    static void* dn_pf_main(void* arg) {
        dn_prefaulter* p = (dn_prefaulter*)arg;
        pthread_mutex_lock(&p->lock);
        for (;;) {
            while (p->count == 0 && !p->stop)
                pthread_cond_wait(&p->work, &p->lock);
            if (p->stop)
                break;
            char* addr = p->addr[p->head];
            size_t len = p->len[p->head];
            p->busy = 1;
            pthread_mutex_unlock(&p->lock);
            int rc = madvise(addr, len, MADV_POPULATE_WRITE);
            int err = rc ? errno : 0;
            pthread_mutex_lock(&p->lock);
            p->busy = 0;
            p->head = (p->head + 1) % DN_PF_SLOTS;
            p->count--;
            /* EINVAL: the kernel does not know the advice (before 5.14). */
            if (err == EINVAL)
                p->refused = 1;
            if (p->count == 0)
                pthread_cond_broadcast(&p->done);
        }
        p->count = 0;
        pthread_cond_broadcast(&p->done);
        pthread_mutex_unlock(&p->lock);
        return NULL;
    }

    static int dn_pf_start(dn_prefaulter* p) {
        memset(p, 0, sizeof(*p));
        p->owner = getpid();
        if (pthread_mutex_init(&p->lock, NULL))
            return -1;
        if (pthread_cond_init(&p->work, NULL) || pthread_cond_init(&p->done, NULL))
            return -1;
        if (pthread_create(&p->thread, NULL, dn_pf_main, p))
            return -1;
        return 0;
    }

    /* 1: queued; 0: not (the queue is full, the thread is stopping, or the
       kernel refused the advice before). Page-aligned inward: madvise wants
       an aligned start, and a partial page is not worth it. */
    static int dn_pf_submit(dn_prefaulter* p, char* addr, size_t len) {
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        size_t start = ((size_t)addr + page - 1) & ~(page - 1);
        size_t end = ((size_t)addr + len) & ~(page - 1);
        int queued = 0;
        if (end <= start || dn_pf_orphan(p))
            return 0;
        pthread_mutex_lock(&p->lock);
        if (!p->stop && !p->refused && p->count < DN_PF_SLOTS) {
            int slot = (p->head + p->count) % DN_PF_SLOTS;
            p->addr[slot] = (char*)start;
            p->len[slot] = end - start;
            p->count++;
            queued = 1;
            pthread_cond_signal(&p->work);
        }
        pthread_mutex_unlock(&p->lock);
        return queued;
    }

    static void dn_pf_drain(dn_prefaulter* p) {
        if (dn_pf_orphan(p))
            return;
        pthread_mutex_lock(&p->lock);
        while (p->count > 0)
            pthread_cond_wait(&p->done, &p->lock);
        pthread_mutex_unlock(&p->lock);
    }

    static int dn_pf_refused(dn_prefaulter* p) {
        int refused;
        if (dn_pf_orphan(p))
            return 1;
        pthread_mutex_lock(&p->lock);
        refused = p->refused;
        pthread_mutex_unlock(&p->lock);
        return refused;
    }

    static void dn_pf_stop(dn_prefaulter* p) {
        if (dn_pf_orphan(p))
            return;
        pthread_mutex_lock(&p->lock);
        p->stop = 1;
        pthread_cond_signal(&p->work);
        pthread_mutex_unlock(&p->lock);
        pthread_join(p->thread, NULL);
        pthread_cond_destroy(&p->work);
        pthread_cond_destroy(&p->done);
        pthread_mutex_destroy(&p->lock);
    }
    #define DN_PF_OFFERED 1
    #else
    typedef struct { int unused; } dn_prefaulter;
    static int dn_pf_start(dn_prefaulter* p) { (void)p; return -1; }
    static int dn_pf_submit(dn_prefaulter* p, char* addr, size_t len) { (void)p; (void)addr; (void)len; return 0; }
    static void dn_pf_drain(dn_prefaulter* p) { (void)p; }
    static int dn_pf_refused(dn_prefaulter* p) { (void)p; return 1; }
    static void dn_pf_stop(dn_prefaulter* p) { (void)p; }
    #define DN_PF_OFFERED 0
    #endif
    """
    ctypedef struct dn_prefaulter:
        pass
    int dn_pf_start(dn_prefaulter* p) nogil
    int dn_pf_submit(dn_prefaulter* p, char* addr, size_t len) nogil
    void dn_pf_drain(dn_prefaulter* p) nogil
    int dn_pf_refused(dn_prefaulter* p) nogil
    void dn_pf_stop(dn_prefaulter* p) nogil
    int DN_PF_OFFERED


cdef class Prefaulter:
    """One helper thread that faults in the pages of buffers queued with
    :meth:`submit` (see the module docstring). :meth:`close` (or the object's
    end) stops and joins it."""

    cdef dn_prefaulter _p
    cdef bint _running

    def __cinit__(self):
        self._running = False
        if DN_PF_OFFERED and dn_pf_start(&self._p) == 0:
            self._running = True

    @property
    def supported(self) -> bool:
        """Whether submitted buffers are faulted in here: False where it is not
        offered, once closed, or once the kernel refused the advice."""
        if not self._running:
            return False
        with nogil:
            refused = dn_pf_refused(&self._p)
        return not refused

    def submit(self, buffer) -> bool:
        """Queue ``buffer``'s pages (any writable buffer) to be faulted in. True
        when queued; False when not (unsupported, closed, or 16 requests
        already waiting) -- the pages then fault in as they are written."""
        cdef Py_buffer view
        cdef int queued
        if not self._running:
            return False
        PyObject_GetBuffer(buffer, &view, PyBUF_WRITABLE)
        try:
            with nogil:
                queued = dn_pf_submit(&self._p, <char*>view.buf, <size_t>view.len)
        finally:
            PyBuffer_Release(&view)     # no export is kept: see the module docstring
        return queued == 1

    def drain(self) -> None:
        """Wait until every queued request is done (before dropping buffers
        that were submitted)."""
        if self._running:
            with nogil:
                dn_pf_drain(&self._p)

    def close(self) -> None:
        """Drain, stop the thread and join it. Idempotent."""
        if self._running:
            self._running = False
            with nogil:
                dn_pf_drain(&self._p)
                dn_pf_stop(&self._p)

    def __dealloc__(self):
        if self._running:
            self._running = False
            with nogil:
                dn_pf_stop(&self._p)
