# cython: language_level=3, boundscheck=False, wraparound=False
"""Busy polling: wait a few microseconds for a socket without sleeping.

A thread that blocks in ``poll()`` and is woken by the peer's reply pays for
the sleep and the wake-up: on a virtual machine with the two processes on two
CPUs, about 25 us per wake-up and a cold cache after it -- more than the
whole of a C-ECHO's work on one side. When the reply is due within
microseconds (a request/response exchange on loopback or a fast LAN) it is
cheaper to look for it in a short loop, as the kernel's own busy polling
(``SO_BUSY_POLL``) does for network devices. :func:`spin_readable` is that
loop, bounded in time, run without the GIL and yielding the CPU between looks
(``sched_yield``), so a thread or process that shares the CPU -- the peer
itself, when both run on one CPU -- is not kept waiting by it; and when a
yield does hand the CPU to another task (it took over 20 us), the CPU is in
demand, so the loop looks once more and gives up rather than compete.

The driver (:mod:`dicomnet.transport.sync`) decides when a spin is worth it.
"""

cdef extern from *:
    """
    #if defined(_WIN32)
    static int dn_spin_readable(long long fd, long long other, long long budget_ns) {
        (void)fd; (void)other; (void)budget_ns;
        return -1;                  /* not offered here: the caller blocks */
    }
    #else
    #include <poll.h>
    #include <sched.h>
    #include <time.h>
    static long long dn_now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    }
    /* A sched_yield that took longer than this gave the CPU to someone else. */
    #define DN_YIELDED_NS 20000
    /* 1: fd is readable (or in error: a read will tell), 2: other is readable,
       3: both, 0: the budget ran out first, or the CPU is wanted elsewhere. */
    static int dn_spin_readable(long long fd, long long other, long long budget_ns) {
        struct pollfd fds[2];
        nfds_t n = other >= 0 ? 2 : 1;
        long long now = dn_now_ns();
        long long end = now + budget_ns;
        int result, contended = 0;
        fds[0].fd = (int)fd;
        fds[0].events = POLLIN | POLLPRI;
        fds[1].fd = (int)other;
        fds[1].events = POLLIN;
        for (;;) {
            fds[0].revents = fds[1].revents = 0;
            if (poll(fds, n, 0) > 0) {
                result = (fds[0].revents ? 1 : 0) | (n == 2 && fds[1].revents ? 2 : 0);
                if (result)
                    return result;
            }
            if (contended || now >= end)
                return 0;
            sched_yield();
            /* Another task ran meanwhile: the CPU is wanted, so spinning
               would take it from someone. Look once more, then give up. */
            contended = dn_now_ns() - now > DN_YIELDED_NS;
            now = dn_now_ns();
        }
    }
    #endif
    """
    int dn_spin_readable(long long fd, long long other, long long budget_ns) nogil


cdef int spin_ready(long long fd, long long other, long long budget_ns) noexcept nogil:
    """:func:`spin_readable` for compiled callers, which hold no GIL (budget in ns)."""
    return dn_spin_readable(fd, other, budget_ns)


def spin_readable(long long fd, long long other_fd, double seconds) -> int:
    """Look for input on ``fd`` (and ``other_fd`` unless it is -1) for at most
    ``seconds``, without sleeping and without the GIL.

    Returns a bit mask: 1 when ``fd`` is readable (or in error), 2 when
    ``other_fd`` is; 0 when ``seconds`` passed first; -1 where busy polling is
    not offered (Windows), so the caller should block at once.
    """
    cdef long long budget = <long long>(seconds * 1e9) if seconds > 0 else 0
    cdef int result
    with nogil:
        result = dn_spin_readable(fd, other_fd, budget)
    return result
