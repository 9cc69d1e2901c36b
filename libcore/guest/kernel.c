/* The presnap guest kernel: the Linux syscall subset that static glibc, musl
 * and libstdc++ programs use, served inside the guest so that a request costs
 * at most one exit (the wait point).
 *
 * Freestanding, integer-only (-mgeneral-regs-only: the user's SSE state is not
 * saved across a syscall, and PVM cannot emulate SSE at CPL0). It runs at
 * CPL3 on PVM and at CPL0 on VMX/SVM; nothing here may depend on which.
 *
 * Memory model: the monitor identity-maps all guest memory, so "mapping"
 * memory is bookkeeping. Invariant: memory that is not part of a live mapping
 * or of the brk heap is zero, so a fresh mapping needs no clearing; munmap,
 * brk shrink and MADV_DONTNEED clear what they release.
 *
 * Every user pointer is range-checked (user_ok) before use; a bad one gives
 * -EFAULT as on Linux. See man/presnap-guest.7 for the syscall table. */
#include "presnap/guest_abi.h"

#include "linux_abi.h"
#include "syscall_nr.h"

typedef uint64_t u64;
typedef int64_t i64;
typedef uint32_t u32;
typedef uint8_t u8;

#define PAGE PSN_PAGE_SIZE
#define PAGE_UP(x) (((x) + PAGE - 1) & ~(PAGE - 1))

/* Who the program is: the only process, with the only thread. */
#define GUEST_PID 1 /* also its thread id */
#define GUEST_PPID 0
#define GUEST_UID 1000 /* also its gid, and the owner of every file */

/* ---- state shared by the parts ---- */
static struct psn_boot_info* const boot = (struct psn_boot_info*)PSN_BOOT_INFO_ADDR;

enum fd_kind {
    FD_NONE,
    FD_TTY_IN,
    FD_TTY_OUT,
    FD_TTY_ERR,
    FD_NULL,
    FD_ZERO,
    FD_RANDOM,
    FD_FILE,
    FD_DIR
};
struct fd {
    u32 kind;
    u32 flags;
    u64 entry; /* rootfs entry index for FD_FILE / FD_DIR */
    u64 offset;
};
#define FD_ROOT_OF_EMPTY_TREE ((u64)-1) /* entry of "/" when there is no --rootfs */

extern struct fd fds[PSN_MAX_FDS]; /* files */
extern u64 brk_cur;                /* memory: the program break */
extern u64 psn_out_len;            /* stdio: bytes buffered at boot->out_buf */

/* ---- helpers (core) ---- */
void* memset(void* d, int c, unsigned long n);
void* memcpy(void* d, const void* s, unsigned long n);
void* memmove(void* d, const void* s, unsigned long n);
u64 kstrlen(const char* s);
int kstrcmp(const char* a, const char* b);
void hypercall(u32 nr, void* arg);
void notice(u32 kind, u64 a0, u64 a1);
_Noreturn void panic(const char* msg);
_Noreturn void do_exit(int status, u32 sig);
int user_ok(u64 addr, u64 len);
int user_str_ok(const char* s, u64 max);

/* ---- the parts: set-up, internal interfaces and system calls ---- */
/* memory */
void memory_init(void);
i64 sys_mmap(u64 addr, u64 len, u64 prot, u64 flags, i64 fd, u64 off);
i64 sys_mprotect(u64 addr, u64 len);
i64 sys_munmap(u64 addr, u64 len);
i64 sys_mremap(u64 old, u64 old_len, u64 new_len, u64 flags, u64 new_addr);
i64 sys_madvise(u64 addr, u64 len, u64 advice);
i64 sys_brk(u64 want);
/* files */
void files_init(void);
int fd_ok(i64 fd);
i64 file_read(struct fd* f, u8* p, u64 n, u64 off);
i64 sys_read(i64 fd, u8* p, u64 n);
i64 sys_write(i64 fd, const u8* p, u64 n);
i64 sys_rwv(i64 fd, const struct iovec* iov, u64 cnt, int writing);
i64 sys_pread64(i64 fd, u64 buf, u64 n, u64 off);
i64 sys_openat(i64 dirfd, const char* upath, u64 flags);
i64 sys_close(i64 fd);
i64 sys_lseek(i64 fd, i64 off, u64 whence);
i64 sys_fstat(i64 fd, u64 st);
i64 sys_newfstatat(i64 dirfd, const char* upath, u64 st, u64 flags);
i64 sys_faccessat(i64 dirfd, const char* upath, u64 mode);
i64 sys_readlinkat(i64 dirfd, const char* upath, u64 buf, u64 size);
i64 sys_getcwd(u64 buf, u64 size);
i64 sys_fcntl(i64 fd, u64 cmd, u64 arg);
i64 sys_dup(i64 fd);
i64 sys_dup2(u64 oldfd, u64 newfd);
i64 sys_dup3(u64 oldfd, u64 newfd);
/* stdio */
void write_out(const u8* p, u64 n);
void write_err(const u8* p, u64 n);
i64 read_stdin(u8* p, u64 n);
i64 sys_ioctl(i64 fd, u64 req, u64 arg);
/* time */
void set_clock(i64 real, i64 mono, u64 hz);
void clock_at_input(const struct psn_hc_input* in);
i64 now_mono(void);
i64 sys_clock_gettime(u64 clock, u64 ts);
i64 sys_clock_getres(u64 clock, u64 ts);
i64 sys_gettimeofday(u64 tv);
i64 sys_time(u64 t);
i64 sys_times(u64 buf);
i64 sys_nanosleep(u64 req);
i64 sys_clock_nanosleep(u64 clock, u64 flags, u64 req);
/* random */
void reseed(void);
void reseed_if_restored(void);
void random_fill(u8* p, u64 n);
i64 sys_getrandom(u64 buf, u64 n);
/* signals and the process */
i64 sys_rt_sigaction(u64 sig, u64 act, u64 oldact);
i64 sys_rt_sigprocmask(u64 how, u64 set, u64 oldset);
i64 sys_sigaltstack(u64 ss, u64 old_ss);
i64 sys_kill(u64 pid, u64 sig);
i64 sys_tkill(u64 tid, u64 sig);
i64 sys_tgkill(u64 tgid, u64 tid, u64 sig);
i64 sys_uname(u64 buf);
i64 sys_sysinfo(u64 info);
i64 sys_sched_getaffinity(u64 pid, u64 size, u64 mask);
i64 sys_getrlimit(u64 resource, u64 old);
i64 sys_prlimit64(u64 pid, u64 resource, u64 new_limit, u64 old);
i64 sys_getrusage(u64 who, u64 usage);
i64 sys_arch_prctl(u64 code, u64 addr);
i64 sys_futex(u64 uaddr, u64 op, u64 val, u64 timeout);

/* ==== core ==== */

/* ---- freestanding basics ---- */
void* memset(void* d, int c, unsigned long n) {
    u8* p = d;
    __asm__ volatile("rep stosb" : "+D"(p), "+c"(n) : "a"(c) : "memory");
    return d;
}
void* memcpy(void* d, const void* s, unsigned long n) {
    void* r = d;
    __asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
    return r;
}
void* memmove(void* d, const void* s, unsigned long n) {
    u8* dp = d;
    const u8* sp = s;
    if (dp <= sp || dp >= sp + n)
        return memcpy(d, s, n);
    while (n--)
        dp[n] = sp[n];
    return d;
}
u64 kstrlen(const char* s) {
    u64 n = 0;
    while (s[n])
        n++;
    return n;
}
int kstrcmp(const char* a, const char* b) {
    while (*a && *a == *b)
        a++, b++;
    return (u8)*a - (u8)*b;
}

/* ---- hypercalls, notices, exit ---- */
void hypercall(u32 nr, void* arg) {
    __asm__ volatile("outl %0, %w1"
                     :
                     : "a"((u32)(u64)arg), "Nd"((uint16_t)(PSN_HC_PORT_BASE + nr))
                     : "memory");
}

static struct psn_hc_exit hc_exit;
static struct psn_hc_notice hc_note;

void notice(u32 kind, u64 a0, u64 a1) {
    hc_note.kind = kind;
    hc_note.arg0 = a0;
    hc_note.arg1 = a1;
    hypercall(PSN_HC_NOTICE, &hc_note);
}

_Noreturn void panic(const char* msg) {
    notice(PSN_NOTICE_KERNEL_PANIC, (u64)msg, kstrlen(msg));
    for (;;)
        hypercall(PSN_HC_EXIT, &hc_exit);
}

_Noreturn void do_exit(int status, u32 sig) {
    hc_exit.status = status;
    hc_exit.signal = sig;
    hc_exit.out_addr = boot->out_buf;
    hc_exit.out_len = psn_out_len;
    for (;;)
        hypercall(PSN_HC_EXIT, &hc_exit);
}

/* ---- user memory checks ---- */
int user_ok(u64 addr, u64 len) {
    if (addr < PSN_USER_BASE || addr + len < addr || addr + len > boot->stack_top)
        return 0;
    /* the guard page below the stack is not mapped */
    u64 guard = boot->stack_low - PAGE;
    if (addr < guard + PAGE && addr + len > guard)
        return 0;
    return 1;
}
int user_str_ok(const char* s, u64 max) {
    for (u64 i = 0; i < max; i++) {
        if (!user_ok((u64)s + i, 1))
            return 0;
        if (s[i] == 0)
            return 1;
    }
    return 0;
}

/* ==== time ==== */

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

/* ==== random ==== */

/* ---- ChaCha20 (RFC 8439 block function) ---- */
static u32 rng_key[8];
static u64 rng_counter;
static u8 rng_buf[64];
static u32 rng_left;
static u64 seen_generation;

#define ROTL(a, b) (((a) << (b)) | ((a) >> (32 - (b))))
#define QR(a, b, c, d)                                                                             \
    (a += b, d ^= a, d = ROTL(d, 16), c += d, b ^= c, b = ROTL(b, 12), a += b, d ^= a,             \
     d = ROTL(d, 8), c += d, b ^= c, b = ROTL(b, 7))
static void chacha_block(void) {
    u32 in[16] = {0x61707865, 0x3320646e, 0x79622d32, 0x6b206574};
    for (int i = 0; i < 8; i++)
        in[4 + i] = rng_key[i];
    in[12] = (u32)rng_counter;
    in[13] = (u32)(rng_counter >> 32);
    in[14] = (u32)boot->restore_generation;
    in[15] = (u32)(boot->restore_generation >> 32);
    u32 x[16];
    for (int i = 0; i < 16; i++)
        x[i] = in[i];
    for (int i = 0; i < 10; i++) {
        QR(x[0], x[4], x[8], x[12]);
        QR(x[1], x[5], x[9], x[13]);
        QR(x[2], x[6], x[10], x[14]);
        QR(x[3], x[7], x[11], x[15]);
        QR(x[0], x[5], x[10], x[15]);
        QR(x[1], x[6], x[11], x[12]);
        QR(x[2], x[7], x[8], x[13]);
        QR(x[3], x[4], x[9], x[14]);
    }
    for (int i = 0; i < 16; i++) {
        u32 v = x[i] + in[i];
        rng_buf[4 * i] = (u8)v;
        rng_buf[4 * i + 1] = (u8)(v >> 8);
        rng_buf[4 * i + 2] = (u8)(v >> 16);
        rng_buf[4 * i + 3] = (u8)(v >> 24);
    }
    rng_counter++;
    rng_left = 64;
}
void random_fill(u8* p, u64 n) {
    while (n) {
        if (!rng_left)
            chacha_block();
        u64 k = n < rng_left ? n : rng_left;
        memcpy(p, rng_buf + (64 - rng_left), k);
        memset(rng_buf + (64 - rng_left), 0, k); /* no keystream reuse after a snapshot */
        rng_left -= (u32)k;
        p += k;
        n -= k;
    }
}

/* Keys the generator from the seed the monitor put in the boot info. A
 * restored snapshot gets a new seed and a new generation: clones of one
 * snapshot must never share random bytes. */
void reseed(void) {
    for (int i = 0; i < 8; i++)
        rng_key[i] = (u32)boot->random_seed[4 * i] | (u32)boot->random_seed[4 * i + 1] << 8 |
                     (u32)boot->random_seed[4 * i + 2] << 16 |
                     (u32)boot->random_seed[4 * i + 3] << 24;
    rng_counter = 0;
    memset(rng_buf, 0, sizeof rng_buf);
    rng_left = 0;
    seen_generation = boot->restore_generation;
}
/* Called after each INPUT hypercall: a restore happens at a wait point. */
void reseed_if_restored(void) {
    if (boot->restore_generation != seen_generation)
        reseed();
}

/* Flags are ignored: the generator never blocks. */
i64 sys_getrandom(u64 buf, u64 n) {
    if (!user_ok(buf, n))
        return -EFAULT;
    random_fill((u8*)buf, n);
    return (i64)n;
}

/* ==== stdio ==== */

u64 psn_out_len; /* read by the monitor when it stops the guest */
static u64 in_pos, in_len, eof;

static struct psn_hc_input hc_in;
static struct psn_hc_write hc_wr;

static void flush_out(void) {
    if (!psn_out_len)
        return;
    hc_wr.fd = 1;
    hc_wr.addr = boot->out_buf;
    hc_wr.len = psn_out_len;
    hypercall(PSN_HC_WRITE, &hc_wr);
    psn_out_len = 0;
}
void write_out(const u8* p, u64 n) {
    if (psn_out_len + n > PSN_IO_BUFFER_SIZE)
        flush_out();
    if (n > PSN_IO_BUFFER_SIZE) {
        /* straight from user memory: the monitor checks the range */
        hc_wr.fd = 1;
        hc_wr.addr = (u64)p;
        hc_wr.len = n;
        hypercall(PSN_HC_WRITE, &hc_wr);
        return;
    }
    memcpy((u8*)boot->out_buf + psn_out_len, p, n);
    psn_out_len += n;
}
void write_err(const u8* p, u64 n) {
    hc_wr.fd = 2;
    hc_wr.addr = (u64)p;
    hc_wr.len = n;
    hypercall(PSN_HC_WRITE, &hc_wr);
}
/* Refills the input buffer. When the last request is used up this is the
 * wait point: the buffered output is the response. */
static void refill_input(void) {
    hc_in.out_addr = boot->out_buf;
    hc_in.out_len = psn_out_len;
    hypercall(PSN_HC_INPUT, &hc_in);
    psn_out_len = 0;
    in_pos = 0;
    in_len = hc_in.in_len > PSN_IO_BUFFER_SIZE ? PSN_IO_BUFFER_SIZE : hc_in.in_len;
    eof = hc_in.eof;
    reseed_if_restored();
    clock_at_input(&hc_in);
}
i64 read_stdin(u8* p, u64 n) {
    if (in_pos == in_len) {
        if (eof)
            return 0;
        refill_input();
        if (in_pos == in_len)
            return 0;
    }
    u64 k = in_len - in_pos;
    if (k > n)
        k = n;
    memcpy(p, (u8*)boot->in_buf + in_pos, k);
    in_pos += k;
    return (i64)k;
}

/* Standard input, output and error look like a terminal in canonical mode,
 * 80 columns by 24 rows. */
i64 sys_ioctl(i64 fd, u64 req, u64 arg) {
    if (!fd_ok(fd))
        return -EBADF;
    u32 k = fds[fd].kind;
    if (k != FD_TTY_IN && k != FD_TTY_OUT && k != FD_TTY_ERR)
        return -ENOTTY;
    if (req == TCGETS) {
        if (!user_ok(arg, sizeof(struct termios)))
            return -EFAULT;
        struct termios* t = (struct termios*)arg;
        memset(t, 0, sizeof *t);
        t->c_iflag = ICRNL | IXON;
        t->c_oflag = OPOST | ONLCR;
        t->c_cflag = B38400 | CS8 | CREAD;
        t->c_lflag = ISIG | ICANON | ECHO | ECHOE | ECHOK | ECHOCTL | ECHOKE | IEXTEN;
        return 0;
    }
    if (req == TIOCGWINSZ) {
        if (!user_ok(arg, sizeof(struct winsize)))
            return -EFAULT;
        struct winsize* w = (struct winsize*)arg;
        w->ws_row = 24;
        w->ws_col = 80;
        w->ws_xpixel = w->ws_ypixel = 0;
        return 0;
    }
    return -EINVAL;
}

/* ==== memory ==== */

struct mapping {
    u64 start, end;
};

u64 brk_cur;
static struct mapping maps[PSN_MAX_MAPPINGS];
static u32 nmaps;
static int oom_reported;

void memory_init(void) {
    brk_cur = boot->brk_start;
}

static u64 mmap_floor(void) {
    return PAGE_UP(brk_cur);
}

/* `nr` is the system call that ran out (the notice says which). */
static void oom(u64 bytes, u64 nr) {
    if (!oom_reported) {
        oom_reported = 1;
        notice(PSN_NOTICE_OUT_OF_MEMORY, bytes, nr);
    }
}

/* Removes [a, b) from the mapping list, clearing the released memory. */
static void unmap_range(u64 a, u64 b) {
    for (u32 i = 0; i < nmaps;) {
        struct mapping* m = &maps[i];
        if (m->end <= a || m->start >= b) {
            i++;
            continue;
        }
        u64 lo = m->start > a ? m->start : a;
        u64 hi = m->end < b ? m->end : b;
        memset((void*)lo, 0, hi - lo);
        if (m->start < a && m->end > b) { /* split */
            if (nmaps == PSN_MAX_MAPPINGS)
                panic("too many mappings");
            memmove(&maps[i + 2], &maps[i + 1], (nmaps - i - 1) * sizeof *m);
            maps[i + 1].start = b;
            maps[i + 1].end = m->end;
            m->end = a;
            nmaps++;
            i += 2;
        } else if (m->start < a) {
            m->end = a;
            i++;
        } else if (m->end > b) {
            m->start = b;
            i++;
        } else {
            memmove(&maps[i], &maps[i + 1], (nmaps - i - 1) * sizeof *m);
            nmaps--;
        }
    }
}
/* Records [a, b) as mapped; the caller has made sure it is free. */
static int add_mapping(u64 a, u64 b) {
    u32 i = 0;
    while (i < nmaps && maps[i].start < a)
        i++;
    if (i > 0 && maps[i - 1].end == a) { /* extend the neighbour below */
        maps[i - 1].end = b;
        if (i < nmaps && maps[i].start == b) {
            maps[i - 1].end = maps[i].end;
            memmove(&maps[i], &maps[i + 1], (nmaps - i - 1) * sizeof maps[0]);
            nmaps--;
        }
        return 1;
    }
    if (i < nmaps && maps[i].start == b) {
        maps[i].start = a;
        return 1;
    }
    if (nmaps == PSN_MAX_MAPPINGS)
        return 0;
    memmove(&maps[i + 1], &maps[i], (nmaps - i) * sizeof maps[0]);
    maps[i].start = a;
    maps[i].end = b;
    nmaps++;
    return 1;
}
static int range_free(u64 a, u64 b) {
    if (a < mmap_floor() || b > boot->mmap_top)
        return 0;
    for (u32 i = 0; i < nmaps; i++)
        if (maps[i].start < b && maps[i].end > a)
            return 0;
    return 1;
}
/* Top-down first fit, like Linux's default layout. */
static u64 find_gap(u64 len) {
    u64 top = boot->mmap_top;
    for (u32 i = nmaps; i-- > 0;) {
        if (maps[i].end <= top && top - maps[i].end >= len)
            return top - len;
        if (maps[i].start < top)
            top = maps[i].start;
    }
    if (top >= len && top - len >= mmap_floor())
        return top - len;
    return 0;
}

i64 sys_mmap(u64 addr, u64 len, u64 prot, u64 flags, i64 fd, u64 off) {
    (void)prot;
    if (len == 0 || (off & (PAGE - 1)))
        return -EINVAL;
    u64 plen = PAGE_UP(len);
    if (plen < len)
        return -ENOMEM;
    int anon = (flags & MAP_ANONYMOUS) != 0;
    struct fd* f = 0;
    if (!anon) {
        if (!fd_ok(fd))
            return -EBADF;
        f = &fds[fd];
        if (f->kind != FD_FILE && f->kind != FD_ZERO && f->kind != FD_NULL)
            return -EACCES;
    }
    if (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) {
        if ((addr & (PAGE - 1)) || !user_ok(addr, plen))
            return -EINVAL;
        if (flags & MAP_FIXED_NOREPLACE) {
            for (u32 i = 0; i < nmaps; i++)
                if (maps[i].start < addr + plen && maps[i].end > addr)
                    return -EEXIST;
        }
        unmap_range(addr, addr + plen); /* clears the old contents */
        memset((void*)addr, 0, plen);   /* e.g. over the brk heap */
        if (addr >= mmap_floor() && addr + plen <= boot->mmap_top &&
            !add_mapping(addr, addr + plen))
            return -ENOMEM;
    } else {
        addr = find_gap(plen);
        if (!addr || !add_mapping(addr, addr + plen)) {
            oom(len, SYS_mmap);
            return -ENOMEM;
        }
    }
    if (f && f->kind == FD_FILE)
        file_read(f, (u8*)addr, len, off);
    return (i64)addr;
}
/* Memory is always readable and writable. */
i64 sys_mprotect(u64 addr, u64 len) {
    return (addr & (PAGE - 1)) ? -EINVAL : user_ok(addr, len) ? 0 : -ENOMEM;
}
i64 sys_munmap(u64 addr, u64 len) {
    if ((addr & (PAGE - 1)) || len == 0 || !user_ok(addr, len))
        return -EINVAL;
    unmap_range(addr, addr + PAGE_UP(len));
    return 0;
}
i64 sys_mremap(u64 old, u64 old_len, u64 new_len, u64 flags, u64 new_addr) {
    (void)new_addr;
    if ((old & (PAGE - 1)) || new_len == 0 || (flags & ~(u64)(MREMAP_MAYMOVE | MREMAP_FIXED)) ||
        (flags & MREMAP_FIXED))
        return -EINVAL;
    old_len = PAGE_UP(old_len);
    new_len = PAGE_UP(new_len);
    u32 i = 0;
    while (i < nmaps && !(maps[i].start <= old && old < maps[i].end))
        i++;
    if (i == nmaps || old + old_len > maps[i].end)
        return -EFAULT;
    if (new_len <= old_len) {
        unmap_range(old + new_len, old + old_len);
        return (i64)old;
    }
    if (old + old_len == maps[i].end && range_free(old + old_len, old + new_len)) {
        add_mapping(old + old_len, old + new_len);
        return (i64)old;
    }
    if (!(flags & MREMAP_MAYMOVE))
        return -ENOMEM;
    u64 n = find_gap(new_len);
    if (!n || !add_mapping(n, n + new_len)) {
        oom(new_len, SYS_mremap);
        return -ENOMEM;
    }
    memcpy((void*)n, (void*)old, old_len);
    unmap_range(old, old + old_len);
    return (i64)n;
}
i64 sys_madvise(u64 addr, u64 len, u64 advice) {
    if ((addr & (PAGE - 1)) || !user_ok(addr, len))
        return -EINVAL;
    if (advice == MADV_DONTNEED) /* private anonymous memory reads back as zero */
        memset((void*)addr, 0, PAGE_UP(len));
    return 0;
}
i64 sys_brk(u64 want) {
    if (want < boot->brk_start)
        return (i64)brk_cur;
    u64 limit = boot->mmap_top;
    for (u32 i = 0; i < nmaps; i++)
        if (maps[i].start < limit && maps[i].start >= boot->brk_start)
            limit = maps[i].start;
    if (want > limit) {
        oom(want - brk_cur, SYS_brk);
        return (i64)brk_cur;
    }
    if (want < brk_cur)
        memset((void*)want, 0, brk_cur - want);
    brk_cur = want;
    return (i64)brk_cur;
}

/* ==== files ==== */

struct fd fds[PSN_MAX_FDS];

/* Standard input, output and error are the terminal, open for reading and
 * writing as a login shell's are. */
void files_init(void) {
    fds[0].kind = FD_TTY_IN;
    fds[0].flags = O_RDWR;
    fds[1].kind = FD_TTY_OUT;
    fds[1].flags = O_RDWR;
    fds[2].kind = FD_TTY_ERR;
    fds[2].flags = O_RDWR;
}

/* ---- file tree ---- */
static const struct psn_fs_header* fs(void) {
    return boot->rootfs_size ? (const struct psn_fs_header*)boot->rootfs_addr : 0;
}
static const struct psn_fs_entry* fs_entry(u64 i) {
    return (const struct psn_fs_entry*)(boot->rootfs_addr + fs()->entries_off) + i;
}
static const char* fs_path(u64 i) {
    return (const char*)(boot->rootfs_addr + fs_entry(i)->path_off);
}

#define GUEST_PATH_MAX 1024 /* longest path, NUL included (Linux's PATH_MAX is 4096) */
/* Resolves `path` against directory `base` into an absolute normalised path.
 * ".." at the root stays at the root, so no path leaves the tree. */
static int normalise(const char* base, const char* path, char* out) {
    u64 n = 0;
    out[n++] = '/';
    const char* parts[2] = {path[0] == '/' ? "" : base, path};
    for (int k = 0; k < 2; k++) {
        const char* p = parts[k];
        while (*p) {
            while (*p == '/')
                p++;
            const char* s = p;
            while (*p && *p != '/')
                p++;
            u64 len = (u64)(p - s);
            if (len == 0 || (len == 1 && s[0] == '.'))
                continue;
            if (len == 2 && s[0] == '.' && s[1] == '.') {
                while (n > 1 && out[n - 1] != '/')
                    n--;
                if (n > 1)
                    n--;
                continue;
            }
            if (n + len + 2 >= GUEST_PATH_MAX)
                return -ENAMETOOLONG;
            if (n > 1)
                out[n++] = '/';
            memcpy(out + n, s, len);
            n += len;
        }
    }
    out[n] = 0;
    return 0;
}
/* The entry index of an absolute normalised path, -1 for the root of an
 * empty tree, or -ENOENT. */
static i64 fs_lookup(const char* abs) {
    const struct psn_fs_header* h = fs();
    if (!h)
        return abs[0] == '/' && abs[1] == 0 ? -1 /* root of an empty tree */ : -ENOENT;
    u64 lo = 0, hi = h->count;
    while (lo < hi) {
        u64 mid = (lo + hi) / 2;
        int c = kstrcmp(fs_path(mid), abs);
        if (c == 0)
            return (i64)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -ENOENT;
}

enum special { SP_NONE, SP_NULL, SP_ZERO, SP_RANDOM, SP_TTY };
static int special_file(const char* abs) {
    if (!kstrcmp(abs, "/dev/null"))
        return SP_NULL;
    if (!kstrcmp(abs, "/dev/zero"))
        return SP_ZERO;
    if (!kstrcmp(abs, "/dev/urandom") || !kstrcmp(abs, "/dev/random"))
        return SP_RANDOM;
    if (!kstrcmp(abs, "/dev/tty"))
        return SP_TTY;
    return SP_NONE;
}

int fd_ok(i64 fd) {
    return fd >= 0 && fd < PSN_MAX_FDS && fds[fd].kind != FD_NONE;
}

static const char* dir_of(i64 dirfd, i64* err) {
    if (dirfd == AT_FDCWD) /* the working directory is "/" */
        return "/";
    if (!fd_ok(dirfd)) {
        *err = -EBADF;
        return 0;
    }
    if (fds[dirfd].kind != FD_DIR) {
        *err = -ENOTDIR;
        return 0;
    }
    return fds[dirfd].entry == FD_ROOT_OF_EMPTY_TREE ? "/" : fs_path(fds[dirfd].entry);
}

static char pathbuf[GUEST_PATH_MAX];
/* Resolves a user path: returns 0 and fills pathbuf, or -errno. */
static i64 resolve(i64 dirfd, const char* upath) {
    if (!user_str_ok(upath, GUEST_PATH_MAX))
        return user_ok((u64)upath, 1) ? -ENAMETOOLONG : -EFAULT;
    if (upath[0] == 0)
        return -ENOENT;
    i64 err = 0;
    const char* base = dir_of(dirfd, &err);
    if (!base && upath[0] != '/')
        return err;
    return normalise(base ? base : "/", upath, pathbuf);
}

/* ---- stat ---- */
#define FS_DEV 0x2a /* st_dev of every file */
/* Inode numbers: the root of an empty tree, the devices, then tree entries. */
#define INO_EMPTY_ROOT 2
#define INO_TTY 3
#define INO_NULL 4
#define INO_ZERO 5
#define INO_RANDOM 6
#define INO_FIRST_ENTRY 100

static void fill_stat(struct stat* st, u32 mode, u64 size, u64 ino, u64 rdev) {
    memset(st, 0, sizeof *st);
    st->st_dev = FS_DEV;
    st->st_ino = ino;
    st->st_nlink = 1;
    st->st_mode = mode;
    st->st_uid = GUEST_UID;
    st->st_gid = GUEST_UID;
    st->st_rdev = rdev;
    st->st_size = (i64)size;
    st->st_blksize = (mode & S_IFMT) == S_IFCHR ? 1024 : 4096;
    st->st_blocks = (i64)((size + 511) / 512);
}

/* The device files, the same whether reached by path or by descriptor. */
static i64 stat_special(int sp, struct stat* st) {
    switch (sp) {
    case SP_TTY:
        fill_stat(st, S_IFCHR | 0620, 0, INO_TTY, MKDEV(136, 0)); /* /dev/pts/0 */
        break;
    case SP_NULL:
        fill_stat(st, S_IFCHR | 0666, 0, INO_NULL, MKDEV(1, 3));
        break;
    case SP_ZERO:
        fill_stat(st, S_IFCHR | 0666, 0, INO_ZERO, MKDEV(1, 5));
        break;
    default: /* SP_RANDOM */
        fill_stat(st, S_IFCHR | 0666, 0, INO_RANDOM, MKDEV(1, 9));
        break;
    }
    return 0;
}

static i64 stat_fd(i64 fd, struct stat* st) {
    switch (fds[fd].kind) {
    case FD_TTY_IN:
    case FD_TTY_OUT:
    case FD_TTY_ERR:
        return stat_special(SP_TTY, st);
    case FD_NULL:
        return stat_special(SP_NULL, st);
    case FD_ZERO:
        return stat_special(SP_ZERO, st);
    case FD_RANDOM:
        return stat_special(SP_RANDOM, st);
    case FD_DIR:
        if (fds[fd].entry == FD_ROOT_OF_EMPTY_TREE) {
            fill_stat(st, S_IFDIR | 0555, 0, INO_EMPTY_ROOT, 0);
            return 0;
        }
        /* fall through */
    case FD_FILE: {
        const struct psn_fs_entry* e = fs_entry(fds[fd].entry);
        fill_stat(st, e->mode, e->size, INO_FIRST_ENTRY + fds[fd].entry, 0);
        return 0;
    }
    }
    return -EBADF;
}
i64 sys_fstat(i64 fd, u64 st) {
    if (!fd_ok(fd))
        return -EBADF;
    if (!user_ok(st, sizeof(struct stat)))
        return -EFAULT;
    return stat_fd(fd, (struct stat*)st);
}
/* Also stat and lstat (the tree has no symbolic links). */
i64 sys_newfstatat(i64 dirfd, const char* upath, u64 ust, u64 flags) {
    if (!user_ok(ust, sizeof(struct stat)))
        return -EFAULT;
    struct stat* st = (struct stat*)ust;
    if ((flags & AT_EMPTY_PATH) && user_str_ok(upath, 1) && upath[0] == 0)
        return fd_ok(dirfd) ? stat_fd(dirfd, st) : -EBADF;
    i64 r = resolve(dirfd, upath);
    if (r < 0)
        return r;
    int sp = special_file(pathbuf);
    if (sp)
        return stat_special(sp, st);
    i64 e = fs_lookup(pathbuf);
    if (e == -1) {
        fill_stat(st, S_IFDIR | 0555, 0, INO_EMPTY_ROOT, 0);
        return 0;
    }
    if (e < 0)
        return e;
    fill_stat(st, fs_entry((u64)e)->mode, fs_entry((u64)e)->size, INO_FIRST_ENTRY + (u64)e, 0);
    return 0;
}

/* ---- descriptors ---- */
static i64 alloc_fd(u64 from) {
    for (u64 i = from; i < PSN_MAX_FDS; i++)
        if (fds[i].kind == FD_NONE)
            return (i64)i;
    return -EMFILE;
}

i64 sys_openat(i64 dirfd, const char* upath, u64 flags) {
    i64 r = resolve(dirfd, upath);
    if (r < 0)
        return r;
    u64 acc = flags & O_ACCMODE;
    i64 fd = alloc_fd(3);
    if (fd < 0)
        return fd;
    struct fd* f = &fds[fd];
    f->offset = 0;
    f->flags = (u32)acc;
    switch (special_file(pathbuf)) {
    case SP_NULL:
        f->kind = FD_NULL;
        return fd;
    case SP_ZERO:
        f->kind = FD_ZERO;
        return fd;
    case SP_RANDOM:
        f->kind = FD_RANDOM;
        return fd;
    case SP_TTY:
        f->kind = acc == O_RDONLY ? FD_TTY_IN : FD_TTY_OUT;
        return fd;
    }
    i64 e = fs_lookup(pathbuf);
    if (e < 0 && e != -1)
        return (flags & O_CREAT) ? -EROFS : e; /* O_CREAT in a read-only tree */
    u32 mode = e == -1 ? S_IFDIR : fs_entry((u64)e)->mode;
    if (acc != O_RDONLY || (flags & O_TRUNC)) /* writing */
        return (mode & S_IFMT) == S_IFDIR ? -EISDIR : -EROFS;
    if ((flags & O_DIRECTORY) && (mode & S_IFMT) != S_IFDIR)
        return -ENOTDIR;
    f->kind = (mode & S_IFMT) == S_IFDIR ? FD_DIR : FD_FILE;
    f->entry = (u64)e;
    return fd;
}
i64 sys_close(i64 fd) {
    if (!fd_ok(fd))
        return -EBADF;
    fds[fd].kind = FD_NONE;
    return 0;
}

i64 file_read(struct fd* f, u8* p, u64 n, u64 off) {
    const struct psn_fs_entry* e = fs_entry(f->entry);
    if (off >= e->size)
        return 0;
    if (n > e->size - off)
        n = e->size - off;
    memcpy(p, (const u8*)(boot->rootfs_addr + e->data_off + off), n);
    return (i64)n;
}

i64 sys_read(i64 fd, u8* p, u64 n) {
    if (!fd_ok(fd))
        return -EBADF;
    if (!user_ok((u64)p, n))
        return -EFAULT;
    struct fd* f = &fds[fd];
    switch (f->kind) {
    case FD_TTY_IN:
        return read_stdin(p, n);
    case FD_NULL:
        return 0;
    case FD_ZERO:
        memset(p, 0, n);
        return (i64)n;
    case FD_RANDOM:
        random_fill(p, n);
        return (i64)n;
    case FD_FILE: {
        i64 r = file_read(f, p, n, f->offset);
        f->offset += (u64)r;
        return r;
    }
    case FD_DIR:
        return -EISDIR;
    }
    return -EBADF;
}
i64 sys_write(i64 fd, const u8* p, u64 n) {
    if (!fd_ok(fd))
        return -EBADF;
    if (!user_ok((u64)p, n))
        return -EFAULT;
    switch (fds[fd].kind) {
    case FD_TTY_OUT:
        write_out(p, n);
        return (i64)n;
    case FD_TTY_ERR:
        write_err(p, n);
        return (i64)n;
    case FD_NULL:
    case FD_ZERO:
    case FD_RANDOM:
        return (i64)n;
    }
    return -EBADF;
}
i64 sys_rwv(i64 fd, const struct iovec* iov, u64 cnt, int writing) {
    if (cnt > UIO_MAXIOV)
        return -EINVAL;
    if (!user_ok((u64)iov, cnt * sizeof *iov))
        return -EFAULT;
    i64 total = 0;
    for (u64 i = 0; i < cnt; i++) {
        if (!iov[i].iov_len)
            continue;
        i64 r = writing ? sys_write(fd, (const u8*)iov[i].iov_base, iov[i].iov_len)
                        : sys_read(fd, (u8*)iov[i].iov_base, iov[i].iov_len);
        if (r < 0)
            return total ? total : r;
        total += r;
        if ((u64)r < iov[i].iov_len)
            break;
    }
    return total;
}
i64 sys_pread64(i64 fd, u64 buf, u64 n, u64 off) {
    if ((i64)off < 0)
        return -EINVAL;
    if (!fd_ok(fd))
        return -EBADF;
    if (fds[fd].kind != FD_FILE)
        return -ESPIPE;
    if (!user_ok(buf, n))
        return -EFAULT;
    return file_read(&fds[fd], (u8*)buf, n, off);
}
i64 sys_lseek(i64 fd, i64 off, u64 whence) {
    if (!fd_ok(fd))
        return -EBADF;
    struct fd* f = &fds[fd];
    if (f->kind != FD_FILE && f->kind != FD_DIR)
        return f->kind == FD_NULL || f->kind == FD_ZERO || f->kind == FD_RANDOM ? 0 : -ESPIPE;
    i64 end = f->entry == FD_ROOT_OF_EMPTY_TREE ? 0 : (i64)fs_entry(f->entry)->size;
    i64 base = whence == SEEK_SET   ? 0
               : whence == SEEK_CUR ? (i64)f->offset
               : whence == SEEK_END ? end
                                    : -1;
    if (base < 0)
        return -EINVAL;
    i64 pos = base + off;
    if (pos < 0)
        return -EINVAL;
    f->offset = (u64)pos;
    return pos;
}

/* Also access and faccessat2 (whose flags are ignored). */
i64 sys_faccessat(i64 dirfd, const char* upath, u64 mode) {
    i64 r = resolve(dirfd, upath);
    if (r < 0)
        return r;
    if (special_file(pathbuf))
        return 0;
    i64 e = fs_lookup(pathbuf);
    if (e < 0 && e != -1)
        return e;
    return (mode & W_OK) ? -EROFS : 0;
}
/* Also readlink. */
i64 sys_readlinkat(i64 dirfd, const char* upath, u64 buf, u64 size) {
    i64 r = resolve(dirfd, upath);
    if (r < 0)
        return r;
    if (!kstrcmp(pathbuf, "/proc/self/exe")) {
        /* Only an absolute program path is meaningful (glibc asserts it). */
        const char* exe = (const char*)boot->exe_path;
        if (!exe || exe[0] != '/')
            return -ENOENT;
        u64 n = kstrlen(exe);
        if (n > size)
            n = size;
        if (!user_ok(buf, n))
            return -EFAULT;
        memcpy((void*)buf, exe, n);
        return (i64)n;
    }
    i64 e = fs_lookup(pathbuf);
    return e < 0 && e != -1 ? e : -EINVAL; /* the tree has no symlinks */
}
i64 sys_getcwd(u64 buf, u64 size) {
    if (size < 2)
        return -ERANGE;
    if (!user_ok(buf, 2))
        return -EFAULT;
    ((char*)buf)[0] = '/';
    ((char*)buf)[1] = 0;
    return 2;
}
i64 sys_fcntl(i64 fd, u64 cmd, u64 arg) {
    if (!fd_ok(fd))
        return -EBADF;
    switch (cmd) {
    case F_DUPFD:
    case F_DUPFD_CLOEXEC: {
        i64 n = alloc_fd(arg);
        if (n >= 0)
            fds[n] = fds[fd];
        return n;
    }
    case F_GETFD:
    case F_SETFD:
    case F_SETFL:
        return 0;
    case F_GETFL:
        return fds[fd].flags;
    }
    return -EINVAL;
}
i64 sys_dup(i64 fd) {
    if (!fd_ok(fd))
        return -EBADF;
    i64 n = alloc_fd(0);
    if (n >= 0)
        fds[n] = fds[fd];
    return n;
}
/* XXX: dup3 compares the whole argument registers for oldfd == newfd, where
 * Linux compares the low 32 bits; kept as it was. */
static i64 dup_onto(u64 oldfd, u64 newfd, int is_dup3) {
    if (!fd_ok((i64)(int)oldfd) || (int)newfd < 0 || (int)newfd >= (int)PSN_MAX_FDS)
        return -EBADF;
    if (is_dup3 && oldfd == newfd)
        return -EINVAL;
    fds[(int)newfd] = fds[(int)oldfd];
    return (int)newfd;
}
i64 sys_dup2(u64 oldfd, u64 newfd) {
    return dup_onto(oldfd, newfd, 0);
}
/* The flags (O_CLOEXEC) are ignored: nothing is ever executed. */
i64 sys_dup3(u64 oldfd, u64 newfd) {
    return dup_onto(oldfd, newfd, 1);
}

/* ==== process ==== */

static struct kernel_sigaction sigactions[NSIG + 1];
static kernel_sigset_t sigmask;

static kernel_sigset_t sig_bit(u64 sig) {
    return 1ull << (sig - 1);
}

i64 sys_rt_sigaction(u64 sig, u64 act, u64 oldact) {
    if (sig < 1 || sig > NSIG || sig == SIGKILL || sig == SIGSTOP)
        return -EINVAL;
    if (oldact && !user_ok(oldact, sizeof(struct kernel_sigaction)))
        return -EFAULT;
    if (act && !user_ok(act, sizeof(struct kernel_sigaction)))
        return -EFAULT;
    if (oldact)
        memcpy((void*)oldact, &sigactions[sig], sizeof(struct kernel_sigaction));
    if (act)
        memcpy(&sigactions[sig], (void*)act, sizeof(struct kernel_sigaction));
    return 0;
}
i64 sys_rt_sigprocmask(u64 how, u64 set, u64 oldset) {
    if (oldset && !user_ok(oldset, sizeof(kernel_sigset_t)))
        return -EFAULT;
    if (set && !user_ok(set, sizeof(kernel_sigset_t)))
        return -EFAULT;
    kernel_sigset_t old = sigmask;
    if (set) {
        kernel_sigset_t s = *(kernel_sigset_t*)set;
        if (how == SIG_BLOCK)
            sigmask |= s;
        else if (how == SIG_UNBLOCK)
            sigmask &= ~s;
        else if (how == SIG_SETMASK)
            sigmask = s;
        else
            return -EINVAL;
        sigmask &= ~(sig_bit(SIGKILL) | sig_bit(SIGSTOP));
    }
    if (oldset)
        *(kernel_sigset_t*)oldset = old;
    return 0;
}
/* Accepted, never used: the old stack reads as disabled. */
i64 sys_sigaltstack(u64 ss, u64 old_ss) {
    if (old_ss && !user_ok(old_ss, sizeof(stack_t)))
        return -EFAULT;
    if (old_ss) {
        memset((void*)old_ss, 0, sizeof(stack_t));
        ((stack_t*)old_ss)->ss_flags = SS_DISABLE;
    }
    return 0;
}

static i64 kill_self(u64 sig) {
    if (sig == 0)
        return 0;
    if (sig > NSIG)
        return -EINVAL;
    if (sigmask & sig_bit(sig))
        return 0; /* blocked: stays pending, never delivered */
    if (sigactions[sig].sa_handler == SIG_IGN)
        return 0;
    if (sig == SIGCHLD || sig == SIGURG || sig == SIGWINCH) /* ignored by default */
        return 0;
    /* Handlers are not run: a signal sent to itself ends the program, as the
     * default action would. */
    do_exit(128 + (int)sig, (u32)sig);
}
/* Only the program itself (pid 1, 0 for its group, -1 for everyone) can be
 * signalled. */
i64 sys_kill(u64 pid, u64 sig) {
    if (pid != GUEST_PID && pid != 0 && (i64)(int)pid != -1)
        return -ESRCH;
    return kill_self(sig);
}
i64 sys_tkill(u64 tid, u64 sig) {
    return kill_self(sig);
}
i64 sys_tgkill(u64 tgid, u64 tid, u64 sig) {
    return kill_self(sig);
}

static void copy_field(char* dst, const char* s) {
    memset(dst, 0, UTSNAME_FIELD);
    memcpy(dst, s, kstrlen(s));
}
i64 sys_uname(u64 buf) {
    if (!user_ok(buf, sizeof(struct new_utsname)))
        return -EFAULT;
    struct new_utsname* u = (struct new_utsname*)buf;
    copy_field(u->sysname, "Linux");
    copy_field(u->nodename, "presnap");
    copy_field(u->release, "6.1.0-presnap");
    copy_field(u->version, "#1 presnap guest");
    copy_field(u->machine, "x86_64");
    copy_field(u->domainname, "(none)");
    return 0;
}
i64 sys_sysinfo(u64 info) {
    if (!user_ok(info, sizeof(struct sysinfo)))
        return -EFAULT;
    struct sysinfo* s = (struct sysinfo*)info;
    memset(s, 0, sizeof *s);
    s->uptime = now_mono() / NSEC_PER_SEC;
    s->totalram = boot->mem_size;
    s->freeram = boot->mmap_top - brk_cur; /* roughly */
    s->procs = 1;
    s->mem_unit = 1;
    return 0;
}
/* One CPU. */
i64 sys_sched_getaffinity(u64 pid, u64 size, u64 mask) {
    if (size < CPUMASK_BYTES)
        return -EINVAL;
    if (!user_ok(mask, CPUMASK_BYTES))
        return -EFAULT;
    *(u64*)mask = 1;
    return CPUMASK_BYTES;
}
/* Limits cannot be changed: the new limit is ignored. */
i64 sys_getrlimit(u64 resource, u64 old) {
    if (old) {
        if (!user_ok(old, sizeof(struct rlimit)))
            return -EFAULT;
        u64 cur = RLIM_INFINITY, max = RLIM_INFINITY;
        if (resource == RLIMIT_STACK)
            cur = PSN_STACK_SIZE;
        else if (resource == RLIMIT_NOFILE)
            cur = max = PSN_MAX_FDS;
        ((struct rlimit*)old)->rlim_cur = cur;
        ((struct rlimit*)old)->rlim_max = max;
    }
    return 0;
}
i64 sys_prlimit64(u64 pid, u64 resource, u64 new_limit, u64 old) {
    if (pid != 0 && pid != GUEST_PID)
        return -ESRCH;
    return sys_getrlimit(resource, old);
}
/* No time or memory is accounted. */
i64 sys_getrusage(u64 who, u64 usage) {
    if (!user_ok(usage, sizeof(struct rusage)))
        return -EFAULT;
    memset((void*)usage, 0, sizeof(struct rusage));
    return 0;
}
i64 sys_arch_prctl(u64 code, u64 addr) {
    switch (code) {
    case ARCH_SET_FS:
        __asm__ volatile("wrfsbase %0" : : "r"(addr));
        return 0;
    case ARCH_SET_GS:
        __asm__ volatile("wrgsbase %0" : : "r"(addr));
        return 0;
    case ARCH_GET_FS:
    case ARCH_GET_GS: {
        if (!user_ok(addr, sizeof(u64)))
            return -EFAULT;
        u64 v;
        if (code == ARCH_GET_FS)
            __asm__ volatile("rdfsbase %0" : "=r"(v));
        else
            __asm__ volatile("rdgsbase %0" : "=r"(v));
        *(u64*)addr = v;
        return 0;
    }
    }
    return -EINVAL;
}
/* One thread, so a wake finds nobody and a wait without a timeout is forever:
 * the program is stopped as deadlocked, as SIGABRT would. */
i64 sys_futex(u64 uaddr, u64 op, u64 val, u64 timeout) {
    u64 cmd = op & (FUTEX_PRIVATE_FLAG - 1);
    if (cmd == FUTEX_WAKE || cmd == FUTEX_WAKE_BITSET)
        return 0;
    if (cmd == FUTEX_WAIT || cmd == FUTEX_WAIT_BITSET) {
        if (!user_ok(uaddr, sizeof(u32)))
            return -EFAULT;
        if (*(u32*)uaddr != (u32)val)
            return -EAGAIN;
        if (timeout)
            return -ETIMEDOUT;
        notice(PSN_NOTICE_DEADLOCK, uaddr, 0);
        do_exit(128 + SIGABRT, SIGABRT);
    }
    return -ENOSYS;
}

/* ==== syscall ==== */

static int initialised;
static u64 reported[8];                      /* unsupported syscalls already reported, by number */
#define REPORTED_LIMIT (sizeof reported * 8) /* numbers at or above are not reported */

/* The first system call sets the kernel up from the boot info. */
static void init(void) {
    if (boot->magic != PSN_BOOT_MAGIC || boot->abi_version != PSN_ABI_VERSION)
        panic("boot info has a wrong magic or ABI version");
    memory_init();
    reseed();
    set_clock(boot->realtime_ns, boot->monotonic_ns, boot->tsc_hz);
    files_init();
    initialised = 1;
}

/* Calls a function must not make here: reported as refused, not unsupported. */
static int refused(u64 nr) {
    switch (nr) {
    case SYS_socket:
    case SYS_connect:
    case SYS_accept:
    case SYS_bind:
    case SYS_listen:
    case SYS_clone:
    case SYS_fork:
    case SYS_vfork:
    case SYS_execve:
    case SYS_ptrace:
    case SYS_execveat:
    case SYS_clone3:
        return 1;
    }
    return 0;
}

/* File descriptors are C ints: like Linux, only the low 32 bits of an fd
 * argument count (glibc leaves the upper half of AT_FDCWD zero). */
#define FD(arg) ((i64)(int)(arg))

/* The system call table: the number decides the handler; arguments are
 * decoded here and checked by the handler. */
i64 psn_syscall(u64 nr, u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    if (!initialised)
        init();
    switch (nr) {
    /* files */
    case SYS_read:
        return sys_read(FD(a0), (u8*)a1, a2);
    case SYS_write:
        return sys_write(FD(a0), (const u8*)a1, a2);
    case SYS_readv:
        return sys_rwv(FD(a0), (const struct iovec*)a1, a2, 0);
    case SYS_writev:
        return sys_rwv(FD(a0), (const struct iovec*)a1, a2, 1);
    case SYS_pread64:
        return sys_pread64(FD(a0), a1, a2, a3);
    case SYS_open:
        return sys_openat(AT_FDCWD, (const char*)a0, a1);
    case SYS_openat:
        return sys_openat(FD(a0), (const char*)a1, a2);
    case SYS_close:
        return sys_close(FD(a0));
    case SYS_lseek:
        return sys_lseek(FD(a0), (i64)a1, a2);
    case SYS_stat:
    case SYS_lstat:
        return sys_newfstatat(AT_FDCWD, (const char*)a0, a1, 0);
    case SYS_fstat:
        return sys_fstat(FD(a0), a1);
    case SYS_newfstatat:
        return sys_newfstatat(FD(a0), (const char*)a1, a2, a3);
    case SYS_access:
        return sys_faccessat(AT_FDCWD, (const char*)a0, a1);
    case SYS_faccessat:
    case SYS_faccessat2:
        return sys_faccessat(FD(a0), (const char*)a1, a2);
    case SYS_readlink:
        return sys_readlinkat(AT_FDCWD, (const char*)a0, a1, a2);
    case SYS_readlinkat:
        return sys_readlinkat(FD(a0), (const char*)a1, a2, a3);
    case SYS_getcwd:
        return sys_getcwd(a0, a1);
    case SYS_fcntl:
        return sys_fcntl(FD(a0), a1, a2);
    case SYS_dup:
        return sys_dup(FD(a0));
    case SYS_dup2:
        return sys_dup2(a0, a1);
    case SYS_dup3:
        return sys_dup3(a0, a1);
    case SYS_ioctl:
        return sys_ioctl(FD(a0), a1, a2);

    /* memory */
    case SYS_mmap:
        return sys_mmap(a0, a1, a2, a3, FD(a4), a5);
    case SYS_mprotect:
        return sys_mprotect(a0, a1);
    case SYS_munmap:
        return sys_munmap(a0, a1);
    case SYS_mremap:
        return sys_mremap(a0, a1, a2, a3, a4);
    case SYS_madvise:
        return sys_madvise(a0, a1, a2);
    case SYS_brk:
        return sys_brk(a0);

    /* time */
    case SYS_clock_gettime:
        return sys_clock_gettime(a0, a1);
    case SYS_clock_getres:
        return sys_clock_getres(a0, a1);
    case SYS_gettimeofday:
        return sys_gettimeofday(a0);
    case SYS_time:
        return sys_time(a0);
    case SYS_times:
        return sys_times(a0);
    case SYS_nanosleep:
        return sys_nanosleep(a0);
    case SYS_clock_nanosleep:
        return sys_clock_nanosleep(a0, a1, a2);

    /* random */
    case SYS_getrandom:
        return sys_getrandom(a0, a1);

    /* signals */
    case SYS_rt_sigaction:
        return sys_rt_sigaction(a0, a1, a2);
    case SYS_rt_sigprocmask:
        return sys_rt_sigprocmask(a0, a1, a2);
    case SYS_sigaltstack:
        return sys_sigaltstack(a0, a1);
    case SYS_kill:
        return sys_kill(a0, a1);
    case SYS_tkill:
        return sys_tkill(a0, a1);
    case SYS_tgkill:
        return sys_tgkill(a0, a1, a2);

    /* the process */
    case SYS_getpid:
    case SYS_gettid:
        return GUEST_PID;
    case SYS_getppid:
        return GUEST_PPID;
    case SYS_getuid:
    case SYS_getgid:
    case SYS_geteuid:
    case SYS_getegid:
        return GUEST_UID;
    case SYS_set_tid_address:
        return GUEST_PID; /* the thread id */
    case SYS_set_robust_list:
        return 0;
    case SYS_rseq: /* not available; glibc carries on without it */
        return -ENOSYS;
    case SYS_uname:
        return sys_uname(a0);
    case SYS_sysinfo:
        return sys_sysinfo(a0);
    case SYS_sched_getaffinity:
        return sys_sched_getaffinity(a0, a1, a2);
    case SYS_sched_yield:
        return 0;
    case SYS_getrlimit:
        return sys_getrlimit(a0, a1);
    case SYS_prlimit64:
        return sys_prlimit64(a0, a1, a2, a3);
    case SYS_getrusage:
        return sys_getrusage(a0, a1);
    case SYS_arch_prctl:
        return sys_arch_prctl(a0, a1);
    case SYS_futex:
        return sys_futex(a0, a1, a2, a3);
    case SYS_exit:
    case SYS_exit_group:
        do_exit((int)(a0 & 0xff), 0);
    }
    if (nr < REPORTED_LIMIT && !(reported[nr / 64] & (1ull << (nr % 64)))) {
        reported[nr / 64] |= 1ull << (nr % 64);
        notice(refused(nr) ? PSN_NOTICE_REFUSED_SYSCALL : PSN_NOTICE_UNSUPPORTED_SYSCALL, nr, 0);
    }
    return -ENOSYS;
}
