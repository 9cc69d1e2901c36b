/* Clocks and sleeping. The clock is the host's, as of boot or the last INPUT
 * hypercall, advanced by the TSC without exits; with --deterministic it is a
 * virtual clock instead, so that runs and snapshots repeat exactly. */
#include "kernel.h"

static u64 rdtsc(void) {
    u32 lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((u64)hi << 32) | lo;
}

/* --deterministic: a virtual clock that each reading advances by a
 * microsecond, a second per request at least, and whose wall time starts at
 * 2026-01-01T00:00:00Z. */
#define VIRTUAL_TICK_NS 1000
#define VIRTUAL_EPOCH_S 1767225600ll

static u64 tsc_hz, tsc_mult, base_tsc;
static i64 base_real, base_mono, last_mono;
static i64 virt_ns;
static u64 request_index;

void set_clock(i64 real, i64 mono, u64 hz) {
    if (boot->flags & PSN_BOOT_DETERMINISTIC)
        return; /* the virtual clock; a TSC reading would make memory differ run to run */
    base_tsc = rdtsc();
    base_real = real;
    base_mono = mono;
    if (hz) {
        tsc_hz = hz;
        tsc_mult = ((u64)NSEC_PER_SEC << 32) / hz;
    }
}
/* The wait point's INPUT hypercall has returned: the host's clock, and the
 * virtual clock's floor for a new request. */
void clock_at_input(const struct psn_hc_input* in) {
    set_clock(in->realtime_ns, in->monotonic_ns, in->tsc_hz);
    if (in->request_start) {
        request_index = in->request_index;
        if ((boot->flags & PSN_BOOT_DETERMINISTIC) && virt_ns < (i64)request_index * NSEC_PER_SEC)
            virt_ns = (i64)request_index * NSEC_PER_SEC;
    }
}
i64 now_mono(void) {
    if (boot->flags & PSN_BOOT_DETERMINISTIC) {
        virt_ns += VIRTUAL_TICK_NS; /* each reading advances a microsecond */
        return virt_ns;
    }
    i64 t = base_mono;
    if (tsc_hz)
        t += (i64)(((unsigned __int128)(rdtsc() - base_tsc) * tsc_mult) >> 32);
    if (t < last_mono)
        t = last_mono;
    last_mono = t;
    return t;
}
static i64 now_real(void) {
    i64 m = now_mono();
    if (boot->flags & PSN_BOOT_DETERMINISTIC)
        return VIRTUAL_EPOCH_S * NSEC_PER_SEC + m;
    return base_real + (m - base_mono);
}

static i64 put_timespec(u64 p, i64 ns) {
    if (!user_ok(p, sizeof(struct timespec)))
        return -EFAULT;
    struct timespec* ts = (struct timespec*)p;
    ts->tv_sec = ns / NSEC_PER_SEC;
    ts->tv_nsec = ns % NSEC_PER_SEC;
    return 0;
}
i64 sys_clock_gettime(u64 clock, u64 ts) {
    if (clock > CLOCK_TAI)
        return -EINVAL;
    int wall = clock == CLOCK_REALTIME || clock == CLOCK_REALTIME_COARSE ||
               clock == CLOCK_REALTIME_ALARM || clock == CLOCK_TAI;
    return put_timespec(ts, wall ? now_real() : now_mono());
}
i64 sys_clock_getres(u64 clock, u64 ts) {
    return ts ? put_timespec(ts, 1) : 0;
}
i64 sys_gettimeofday(u64 tv) {
    if (tv) {
        if (!user_ok(tv, sizeof(struct timeval)))
            return -EFAULT;
        i64 t = now_real();
        ((struct timeval*)tv)->tv_sec = t / NSEC_PER_SEC;
        ((struct timeval*)tv)->tv_usec = (t % NSEC_PER_SEC) / NSEC_PER_USEC;
    }
    return 0;
}
i64 sys_time(u64 tloc) {
    i64 t = now_real() / NSEC_PER_SEC;
    if (tloc) {
        if (!user_ok(tloc, sizeof(i64)))
            return -EFAULT;
        *(i64*)tloc = t;
    }
    return t;
}
/* No time is accounted to the process; the return value is the uptime in
 * clock ticks. */
i64 sys_times(u64 buf) {
    if (buf && !user_ok(buf, sizeof(struct tms)))
        return -EFAULT;
    if (buf)
        memset((void*)buf, 0, sizeof(struct tms));
    return now_mono() / (NSEC_PER_SEC / USER_HZ);
}

static struct psn_hc_sleep hc_sleep;

static i64 sleep_ns(i64 ns) {
    if (ns <= 0)
        return 0;
    if (boot->flags & PSN_BOOT_DETERMINISTIC) {
        virt_ns += ns;
        return 0;
    }
    hc_sleep.ns = (u64)ns;
    hypercall(PSN_HC_SLEEP, &hc_sleep);
    return 0;
}
i64 sys_nanosleep(u64 req) {
    if (!user_ok(req, sizeof(struct timespec)))
        return -EFAULT;
    i64 s = ((struct timespec*)req)->tv_sec, ns = ((struct timespec*)req)->tv_nsec;
    if (s < 0 || ns < 0 || ns >= NSEC_PER_SEC)
        return -EINVAL;
    return sleep_ns(s * NSEC_PER_SEC + ns);
}
i64 sys_clock_nanosleep(u64 clock, u64 flags, u64 req) {
    if (flags & TIMER_ABSTIME) {
        if (!user_ok(req, sizeof(struct timespec)))
            return -EFAULT;
        const struct timespec* ts = (const struct timespec*)req;
        i64 target = ts->tv_sec * NSEC_PER_SEC + ts->tv_nsec;
        return sleep_ns(target - (clock == CLOCK_REALTIME ? now_real() : now_mono()));
    }
    return sys_nanosleep(req);
}
