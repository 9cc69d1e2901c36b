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

typedef uint64_t u64;
typedef int64_t i64;
typedef uint32_t u32;
typedef uint8_t u8;

#define EPERM 1
#define ENOENT 2
#define EBADF 9
#define EAGAIN 11
#define ENOMEM 12
#define EACCES 13
#define EFAULT 14
#define ENOTDIR 20
#define EISDIR 21
#define EINVAL 22
#define EMFILE 24
#define ENOTTY 25
#define ESPIPE 29
#define EROFS 30
#define ERANGE 34
#define ENAMETOOLONG 36
#define ENOSYS 38
#define ETIMEDOUT 110

#define PAGE PSN_PAGE_SIZE
#define PAGE_UP(x) (((x) + PAGE - 1) & ~(PAGE - 1))

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
static u64 kstrlen(const char* s) {
    u64 n = 0;
    while (s[n])
        n++;
    return n;
}
static int kstrcmp(const char* a, const char* b) {
    while (*a && *a == *b)
        a++, b++;
    return (u8)*a - (u8)*b;
}

static struct psn_boot_info* const boot = (struct psn_boot_info*)PSN_BOOT_INFO_ADDR;

static void hypercall(u32 nr, void* arg) {
    __asm__ volatile("outl %0, %w1"
                     :
                     : "a"((u32)(u64)arg), "Nd"((uint16_t)(PSN_HC_PORT_BASE + nr))
                     : "memory");
}
static u64 rdtsc(void) {
    u32 lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((u64)hi << 32) | lo;
}

/* ---- state ---- */
struct mapping {
    u64 start, end;
};
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
struct k_sigaction {
    u64 handler, flags, restorer, mask;
};

static int initialised;
static u64 in_pos, in_len, eof;
u64 psn_out_len; /* read by the monitor when it stops the guest */
static u64 brk_cur;
static struct mapping maps[PSN_MAX_MAPPINGS];
static u32 nmaps;
static struct fd fds[PSN_MAX_FDS];
static struct k_sigaction sigactions[65];
static u64 sigmask;
static u64 reported[8]; /* unsupported syscalls already reported, by number */
static int oom_reported;
/* clock */
static u64 tsc_hz, tsc_mult, base_tsc;
static i64 base_real, base_mono, last_mono;
static i64 virt_ns;
static u64 request_index;
/* random: ChaCha20 keystream */
static u32 rng_key[8];
static u64 rng_counter;
static u8 rng_buf[64];
static u32 rng_left;

static struct psn_hc_input hc_in;
static struct psn_hc_write hc_wr;
static struct psn_hc_exit hc_exit;
static struct psn_hc_notice hc_note;
static struct psn_hc_sleep hc_sleep;

static void notice(u32 kind, u64 a0, u64 a1) {
    hc_note.kind = kind;
    hc_note.arg0 = a0;
    hc_note.arg1 = a1;
    hypercall(PSN_HC_NOTICE, &hc_note);
}

static _Noreturn void panic(const char* msg) {
    notice(PSN_NOTICE_KERNEL_PANIC, (u64)msg, kstrlen(msg));
    for (;;)
        hypercall(PSN_HC_EXIT, &hc_exit);
}

/* ---- user memory checks ---- */
static int user_ok(u64 addr, u64 len) {
    if (addr < PSN_USER_BASE || addr + len < addr || addr + len > boot->stack_top)
        return 0;
    /* the guard page below the stack is not mapped */
    u64 guard = boot->stack_low - PAGE;
    if (addr < guard + PAGE && addr + len > guard)
        return 0;
    return 1;
}
static int user_str_ok(const char* s, u64 max) {
    for (u64 i = 0; i < max; i++) {
        if (!user_ok((u64)s + i, 1))
            return 0;
        if (s[i] == 0)
            return 1;
    }
    return 0;
}

/* ---- clock ---- */
static void set_clock(i64 real, i64 mono, u64 hz) {
    if (boot->flags & PSN_BOOT_DETERMINISTIC)
        return; /* the virtual clock; a TSC reading would make memory differ run to run */
    base_tsc = rdtsc();
    base_real = real;
    base_mono = mono;
    if (hz) {
        tsc_hz = hz;
        tsc_mult = (1000000000ull << 32) / hz;
    }
}
static i64 now_mono(void) {
    if (boot->flags & PSN_BOOT_DETERMINISTIC) {
        virt_ns += 1000; /* each reading advances a microsecond */
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
        return 1767225600ll * 1000000000ll + m; /* 2026-01-01T00:00:00Z */
    return base_real + (m - base_mono);
}

/* ---- random: ChaCha20 (RFC 8439 block function) ---- */
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
static void random_fill(u8* p, u64 n) {
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

static u64 seen_generation;
/* Keys the generator from the seed the monitor put in the boot info. A
 * restored snapshot gets a new seed and a new generation: clones of one
 * snapshot must never share random bytes. */
static void reseed(void) {
    for (int i = 0; i < 8; i++)
        rng_key[i] = (u32)boot->random_seed[4 * i] | (u32)boot->random_seed[4 * i + 1] << 8 |
                     (u32)boot->random_seed[4 * i + 2] << 16 |
                     (u32)boot->random_seed[4 * i + 3] << 24;
    rng_counter = 0;
    memset(rng_buf, 0, sizeof rng_buf);
    rng_left = 0;
    seen_generation = boot->restore_generation;
}

static void init(void) {
    if (boot->magic != PSN_BOOT_MAGIC || boot->abi_version != PSN_ABI_VERSION)
        panic("boot info has a wrong magic or ABI version");
    brk_cur = boot->brk_start;
    reseed();
    set_clock(boot->realtime_ns, boot->monotonic_ns, boot->tsc_hz);
    fds[0].kind = FD_TTY_IN;
    fds[0].flags = 2;
    fds[1].kind = FD_TTY_OUT;
    fds[1].flags = 2;
    fds[2].kind = FD_TTY_ERR;
    fds[2].flags = 2;
    initialised = 1;
}

/* ---- stdio ---- */
static void flush_out(void) {
    if (!psn_out_len)
        return;
    hc_wr.fd = 1;
    hc_wr.addr = boot->out_buf;
    hc_wr.len = psn_out_len;
    hypercall(PSN_HC_WRITE, &hc_wr);
    psn_out_len = 0;
}
static void write_out(const u8* p, u64 n) {
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
static void write_err(const u8* p, u64 n) {
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
    if (boot->restore_generation != seen_generation)
        reseed();
    set_clock(hc_in.realtime_ns, hc_in.monotonic_ns, hc_in.tsc_hz);
    if (hc_in.request_start) {
        request_index = hc_in.request_index;
        if ((boot->flags & PSN_BOOT_DETERMINISTIC) && virt_ns < (i64)request_index * 1000000000ll)
            virt_ns = (i64)request_index * 1000000000ll;
    }
}
static i64 read_stdin(u8* p, u64 n) {
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

static _Noreturn void do_exit(int status, u32 sig) {
    hc_exit.status = status;
    hc_exit.signal = sig;
    hc_exit.out_addr = boot->out_buf;
    hc_exit.out_len = psn_out_len;
    for (;;)
        hypercall(PSN_HC_EXIT, &hc_exit);
}

/* ---- memory ---- */
static u64 mmap_floor(void) {
    return PAGE_UP(brk_cur);
}

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

#define PATH_MAX_ 1024
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
            if (n + len + 2 >= PATH_MAX_)
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

static int fd_ok(i64 fd) {
    return fd >= 0 && fd < PSN_MAX_FDS && fds[fd].kind != FD_NONE;
}

static const char* dir_of(i64 dirfd, i64* err) {
    if (dirfd == -100) /* AT_FDCWD: the working directory is "/" */
        return "/";
    if (!fd_ok(dirfd)) {
        *err = -EBADF;
        return 0;
    }
    if (fds[dirfd].kind != FD_DIR) {
        *err = -ENOTDIR;
        return 0;
    }
    return fds[dirfd].entry == (u64)-1 ? "/" : fs_path(fds[dirfd].entry);
}

static char pathbuf[PATH_MAX_];
/* Resolves a user path: returns 0 and fills pathbuf, or -errno. */
static i64 resolve(i64 dirfd, const char* upath) {
    if (!user_str_ok(upath, PATH_MAX_))
        return user_ok((u64)upath, 1) ? -ENAMETOOLONG : -EFAULT;
    if (upath[0] == 0)
        return -ENOENT;
    i64 err = 0;
    const char* base = dir_of(dirfd, &err);
    if (!base && upath[0] != '/')
        return err;
    return normalise(base ? base : "/", upath, pathbuf);
}

static void fill_stat(u8* st, u32 mode, u64 size, u64 ino, u64 rdev) {
    memset(st, 0, 144);
    *(u64*)(st + 0) = 0x2a;  /* st_dev */
    *(u64*)(st + 8) = ino;   /* st_ino */
    *(u64*)(st + 16) = 1;    /* st_nlink */
    *(u32*)(st + 24) = mode; /* st_mode */
    *(u32*)(st + 28) = 1000; /* st_uid */
    *(u32*)(st + 32) = 1000; /* st_gid */
    *(u64*)(st + 40) = rdev;
    *(i64*)(st + 48) = (i64)size;
    *(i64*)(st + 56) = (mode & 0170000) == 0020000 ? 1024 : 4096; /* st_blksize */
    *(i64*)(st + 64) = (i64)((size + 511) / 512);
}
#define S_IFCHR 0020000u
#define S_IFDIR 0040000u
#define S_IFREG 0100000u

/* The device files, the same whether reached by path or by descriptor. */
static i64 stat_special(int sp, u8* st) {
    switch (sp) {
    case SP_TTY:
        fill_stat(st, S_IFCHR | 0620, 0, 3, (136ull << 8) | 0); /* /dev/pts/0 */
        break;
    case SP_NULL:
        fill_stat(st, S_IFCHR | 0666, 0, 4, (1ull << 8) | 3);
        break;
    case SP_ZERO:
        fill_stat(st, S_IFCHR | 0666, 0, 5, (1ull << 8) | 5);
        break;
    default: /* SP_RANDOM */
        fill_stat(st, S_IFCHR | 0666, 0, 6, (1ull << 8) | 9);
        break;
    }
    return 0;
}

static i64 stat_fd(i64 fd, u8* st) {
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
        if (fds[fd].entry == (u64)-1) {
            fill_stat(st, S_IFDIR | 0555, 0, 2, 0);
            return 0;
        }
        /* fall through */
    case FD_FILE: {
        const struct psn_fs_entry* e = fs_entry(fds[fd].entry);
        fill_stat(st, e->mode, e->size, 100 + fds[fd].entry, 0);
        return 0;
    }
    }
    return -EBADF;
}
static i64 stat_path(i64 dirfd, const char* upath, u8* st, u64 flags) {
    if (!user_ok((u64)st, 144))
        return -EFAULT;
    if ((flags & 0x1000) && user_str_ok(upath, 1) && upath[0] == 0) /* AT_EMPTY_PATH */
        return fd_ok(dirfd) ? stat_fd(dirfd, st) : -EBADF;
    i64 r = resolve(dirfd, upath);
    if (r < 0)
        return r;
    int sp = special_file(pathbuf);
    if (sp)
        return stat_special(sp, st);
    i64 e = fs_lookup(pathbuf);
    if (e == -1) {
        fill_stat(st, S_IFDIR | 0555, 0, 2, 0);
        return 0;
    }
    if (e < 0)
        return e;
    fill_stat(st, fs_entry((u64)e)->mode, fs_entry((u64)e)->size, 100 + (u64)e, 0);
    return 0;
}

static i64 alloc_fd(u64 from) {
    for (u64 i = from; i < PSN_MAX_FDS; i++)
        if (fds[i].kind == FD_NONE)
            return (i64)i;
    return -EMFILE;
}

static i64 sys_openat(i64 dirfd, const char* upath, u64 flags) {
    i64 r = resolve(dirfd, upath);
    if (r < 0)
        return r;
    u64 acc = flags & 3;
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
        f->kind = acc == 0 ? FD_TTY_IN : FD_TTY_OUT;
        return fd;
    }
    i64 e = fs_lookup(pathbuf);
    if (e < 0 && e != -1)
        return (flags & 0x40) ? -EROFS : e; /* O_CREAT in a read-only tree */
    u32 mode = e == -1 ? S_IFDIR : fs_entry((u64)e)->mode;
    if (acc != 0 || (flags & 0x200)) /* writing or O_TRUNC */
        return (mode & 0170000) == S_IFDIR ? -EISDIR : -EROFS;
    if ((flags & 0x10000) && (mode & 0170000) != S_IFDIR) /* O_DIRECTORY */
        return -ENOTDIR;
    f->kind = (mode & 0170000) == S_IFDIR ? FD_DIR : FD_FILE;
    f->entry = (u64)e;
    return fd;
}

static i64 file_read(struct fd* f, u8* p, u64 n, u64 off) {
    const struct psn_fs_entry* e = fs_entry(f->entry);
    if (off >= e->size)
        return 0;
    if (n > e->size - off)
        n = e->size - off;
    memcpy(p, (const u8*)(boot->rootfs_addr + e->data_off + off), n);
    return (i64)n;
}

static i64 sys_read(i64 fd, u8* p, u64 n) {
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
static i64 sys_write(i64 fd, const u8* p, u64 n) {
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
struct iovec {
    u64 base, len;
};
static i64 sys_rwv(i64 fd, const struct iovec* iov, u64 cnt, int writing) {
    if (cnt > 1024)
        return -EINVAL;
    if (!user_ok((u64)iov, cnt * sizeof *iov))
        return -EFAULT;
    i64 total = 0;
    for (u64 i = 0; i < cnt; i++) {
        if (!iov[i].len)
            continue;
        i64 r = writing ? sys_write(fd, (const u8*)iov[i].base, iov[i].len)
                        : sys_read(fd, (u8*)iov[i].base, iov[i].len);
        if (r < 0)
            return total ? total : r;
        total += r;
        if ((u64)r < iov[i].len)
            break;
    }
    return total;
}

static i64 sys_mmap(u64 addr, u64 len, u64 prot, u64 flags, i64 fd, u64 off) {
    (void)prot;
    if (len == 0 || (off & (PAGE - 1)))
        return -EINVAL;
    u64 plen = PAGE_UP(len);
    if (plen < len)
        return -ENOMEM;
    int anon = (flags & 0x20) != 0;
    struct fd* f = 0;
    if (!anon) {
        if (!fd_ok(fd))
            return -EBADF;
        f = &fds[fd];
        if (f->kind != FD_FILE && f->kind != FD_ZERO && f->kind != FD_NULL)
            return -EACCES;
    }
    if (flags & (0x10 | 0x100000)) { /* MAP_FIXED, MAP_FIXED_NOREPLACE */
        if ((addr & (PAGE - 1)) || !user_ok(addr, plen))
            return -EINVAL;
        if (flags & 0x100000) {
            for (u32 i = 0; i < nmaps; i++)
                if (maps[i].start < addr + plen && maps[i].end > addr)
                    return -17; /* EEXIST */
        }
        unmap_range(addr, addr + plen); /* clears the old contents */
        memset((void*)addr, 0, plen);   /* e.g. over the brk heap */
        if (addr >= mmap_floor() && addr + plen <= boot->mmap_top &&
            !add_mapping(addr, addr + plen))
            return -ENOMEM;
    } else {
        addr = find_gap(plen);
        if (!addr || !add_mapping(addr, addr + plen)) {
            oom(len, 9);
            return -ENOMEM;
        }
    }
    if (f && f->kind == FD_FILE)
        file_read(f, (u8*)addr, len, off);
    return (i64)addr;
}
static i64 sys_munmap(u64 addr, u64 len) {
    if ((addr & (PAGE - 1)) || len == 0 || !user_ok(addr, len))
        return -EINVAL;
    unmap_range(addr, addr + PAGE_UP(len));
    return 0;
}
static i64 sys_mremap(u64 old, u64 old_len, u64 new_len, u64 flags, u64 new_addr) {
    (void)new_addr;
    if ((old & (PAGE - 1)) || new_len == 0 || (flags & ~3ull) || (flags & 2))
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
    if (!(flags & 1)) /* MREMAP_MAYMOVE */
        return -ENOMEM;
    u64 n = find_gap(new_len);
    if (!n || !add_mapping(n, n + new_len)) {
        oom(new_len, 25);
        return -ENOMEM;
    }
    memcpy((void*)n, (void*)old, old_len);
    unmap_range(old, old + old_len);
    return (i64)n;
}
static i64 sys_brk(u64 want) {
    if (want < boot->brk_start)
        return (i64)brk_cur;
    u64 limit = boot->mmap_top;
    for (u32 i = 0; i < nmaps; i++)
        if (maps[i].start < limit && maps[i].start >= boot->brk_start)
            limit = maps[i].start;
    if (want > limit) {
        oom(want - brk_cur, 12);
        return (i64)brk_cur;
    }
    if (want < brk_cur)
        memset((void*)want, 0, brk_cur - want);
    brk_cur = want;
    return (i64)brk_cur;
}

static i64 sys_ioctl(i64 fd, u64 req, u64 arg) {
    if (!fd_ok(fd))
        return -EBADF;
    u32 k = fds[fd].kind;
    if (k != FD_TTY_IN && k != FD_TTY_OUT && k != FD_TTY_ERR)
        return -ENOTTY;
    if (req == 0x5401) { /* TCGETS: a terminal in canonical mode */
        if (!user_ok(arg, 36))
            return -EFAULT;
        u8* t = (u8*)arg;
        memset(t, 0, 36);
        *(u32*)(t + 0) = 0x500;   /* ICRNL | IXON */
        *(u32*)(t + 4) = 0x5;     /* OPOST | ONLCR */
        *(u32*)(t + 8) = 0xbf;    /* B38400 | CS8 | CREAD */
        *(u32*)(t + 12) = 0x8a3b; /* ISIG ICANON ECHO ECHOE ECHOK ECHOCTL ECHOKE IEXTEN */
        return 0;
    }
    if (req == 0x5413) { /* TIOCGWINSZ */
        if (!user_ok(arg, 8))
            return -EFAULT;
        uint16_t* w = (uint16_t*)arg;
        w[0] = 24;
        w[1] = 80;
        w[2] = w[3] = 0;
        return 0;
    }
    return -EINVAL;
}

static i64 put_timespec(u64 p, i64 ns) {
    if (!user_ok(p, 16))
        return -EFAULT;
    ((i64*)p)[0] = ns / 1000000000;
    ((i64*)p)[1] = ns % 1000000000;
    return 0;
}
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
static i64 sys_nanosleep(u64 req) {
    if (!user_ok(req, 16))
        return -EFAULT;
    i64 s = ((i64*)req)[0], ns = ((i64*)req)[1];
    if (s < 0 || ns < 0 || ns >= 1000000000)
        return -EINVAL;
    return sleep_ns(s * 1000000000 + ns);
}

static void copy_field(char* dst, const char* s) {
    memset(dst, 0, 65);
    memcpy(dst, s, kstrlen(s));
}

static i64 kill_self(u64 sig) {
    if (sig == 0)
        return 0;
    if (sig > 64)
        return -EINVAL;
    if (sigmask & (1ull << (sig - 1)))
        return 0;                     /* blocked: stays pending, never delivered */
    if (sigactions[sig].handler == 1) /* SIG_IGN */
        return 0;
    if (sig == 17 || sig == 23 || sig == 28) /* SIGCHLD SIGURG SIGWINCH: ignored by default */
        return 0;
    /* Handlers are not run: a signal sent to itself ends the program, as the
     * default action would. */
    do_exit(128 + (int)sig, (u32)sig);
}

static int refused(u64 nr) {
    switch (nr) {
    case 41:
    case 42:
    case 43:
    case 49:
    case 50: /* socket connect accept bind listen */
    case 56:
    case 57:
    case 58:
    case 59: /* clone fork vfork execve */
    case 101:
    case 322:
    case 435: /* ptrace execveat clone3 */
        return 1;
    }
    return 0;
}

/* File descriptors are C ints: like Linux, only the low 32 bits of an fd
 * argument count (glibc leaves the upper half of AT_FDCWD zero). */
i64 psn_syscall(u64 nr, u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    if (!initialised)
        init();
    switch (nr) {
    case 0: /* read */
        return sys_read((i64)(int)a0, (u8*)a1, a2);
    case 1: /* write */
        return sys_write((i64)(int)a0, (const u8*)a1, a2);
    case 2: /* open */
        return sys_openat(-100, (const char*)a0, a1);
    case 257: /* openat */
        return sys_openat((i64)(int)a0, (const char*)a1, a2);
    case 3: /* close */
        if (!fd_ok((i64)(int)a0))
            return -EBADF;
        fds[(int)a0].kind = FD_NONE;
        return 0;
    case 4: /* stat */
    case 6: /* lstat */
        return stat_path(-100, (const char*)a0, (u8*)a1, 0);
    case 5: /* fstat */
        if (!fd_ok((i64)(int)a0))
            return -EBADF;
        if (!user_ok(a1, 144))
            return -EFAULT;
        return stat_fd((i64)(int)a0, (u8*)a1);
    case 262: /* newfstatat */
        return stat_path((i64)(int)a0, (const char*)a1, (u8*)a2, a3);
    case 8: { /* lseek */
        if (!fd_ok((i64)(int)a0))
            return -EBADF;
        struct fd* f = &fds[(int)a0];
        if (f->kind != FD_FILE && f->kind != FD_DIR)
            return f->kind == FD_NULL || f->kind == FD_ZERO || f->kind == FD_RANDOM ? 0 : -ESPIPE;
        i64 end =
            f->entry == (u64)-1 ? 0 : (i64)fs_entry(f->entry)->size; /* "/" of an empty tree */
        i64 base = a2 == 0 ? 0 : a2 == 1 ? (i64)f->offset : a2 == 2 ? end : -1;
        if (base < 0)
            return -EINVAL;
        i64 pos = base + (i64)a1;
        if (pos < 0)
            return -EINVAL;
        f->offset = (u64)pos;
        return pos;
    }
    case 17: { /* pread64 */
        if ((i64)a3 < 0)
            return -EINVAL;
        if (!fd_ok((i64)(int)a0))
            return -EBADF;
        if (fds[(int)a0].kind != FD_FILE)
            return -ESPIPE;
        if (!user_ok(a1, a2))
            return -EFAULT;
        return file_read(&fds[(int)a0], (u8*)a1, a2, a3);
    }
    case 19: /* readv */
        return sys_rwv((i64)(int)a0, (const struct iovec*)a1, a2, 0);
    case 20: /* writev */
        return sys_rwv((i64)(int)a0, (const struct iovec*)a1, a2, 1);
    case 9: /* mmap */
        return sys_mmap(a0, a1, a2, a3, (i64)(int)a4, a5);
    case 10: /* mprotect: memory is always readable and writable */
        return (a0 & (PAGE - 1)) ? -EINVAL : user_ok(a0, a1) ? 0 : -ENOMEM;
    case 11: /* munmap */
        return sys_munmap(a0, a1);
    case 12: /* brk */
        return sys_brk(a0);
    case 25: /* mremap */
        return sys_mremap(a0, a1, a2, a3, a4);
    case 28: /* madvise */
        if ((a0 & (PAGE - 1)) || !user_ok(a0, a1))
            return -EINVAL;
        if (a2 == 4) /* MADV_DONTNEED: private anonymous memory reads back as zero */
            memset((void*)a0, 0, PAGE_UP(a1));
        return 0;
    case 13: { /* rt_sigaction */
        if (a0 < 1 || a0 > 64 || a0 == 9 || a0 == 19)
            return -EINVAL;
        if (a2 && !user_ok(a2, sizeof(struct k_sigaction)))
            return -EFAULT;
        if (a1 && !user_ok(a1, sizeof(struct k_sigaction)))
            return -EFAULT;
        if (a2)
            memcpy((void*)a2, &sigactions[a0], sizeof(struct k_sigaction));
        if (a1)
            memcpy(&sigactions[a0], (void*)a1, sizeof(struct k_sigaction));
        return 0;
    }
    case 14: { /* rt_sigprocmask */
        if (a2 && !user_ok(a2, 8))
            return -EFAULT;
        if (a1 && !user_ok(a1, 8))
            return -EFAULT;
        u64 old = sigmask;
        if (a1) {
            u64 set = *(u64*)a1;
            if (a0 == 0)
                sigmask |= set;
            else if (a0 == 1)
                sigmask &= ~set;
            else if (a0 == 2)
                sigmask = set;
            else
                return -EINVAL;
            sigmask &= ~((1ull << 8) | (1ull << 18)); /* SIGKILL, SIGSTOP */
        }
        if (a2)
            *(u64*)a2 = old;
        return 0;
    }
    case 131: /* sigaltstack: accepted, never used */
        if (a1 && !user_ok(a1, 24))
            return -EFAULT;
        if (a1)
            memset((void*)a1, 0, 24), ((u32*)a1)[2] = 2; /* SS_DISABLE */
        return 0;
    case 16: /* ioctl */
        return sys_ioctl((i64)(int)a0, a1, a2);
    case 21:    /* access */
    case 269:   /* faccessat */
    case 439: { /* faccessat2 */
        i64 dirfd = nr == 21 ? -100 : (i64)(int)a0;
        const char* p = (const char*)(nr == 21 ? a0 : a1);
        u64 mode = nr == 21 ? a1 : a2;
        i64 r = resolve(dirfd, p);
        if (r < 0)
            return r;
        if (special_file(pathbuf))
            return 0;
        i64 e = fs_lookup(pathbuf);
        if (e < 0 && e != -1)
            return e;
        return (mode & 2) ? -EROFS : 0;
    }
    case 89:    /* readlink */
    case 267: { /* readlinkat */
        const char* p = (const char*)(nr == 89 ? a0 : a1);
        u64 buf = nr == 89 ? a1 : a2, sz = nr == 89 ? a2 : a3;
        i64 r = resolve(nr == 89 ? -100 : (i64)(int)a0, p);
        if (r < 0)
            return r;
        if (!kstrcmp(pathbuf, "/proc/self/exe")) {
            /* Only an absolute program path is meaningful (glibc asserts it). */
            const char* exe = (const char*)boot->exe_path;
            if (!exe || exe[0] != '/')
                return -ENOENT;
            u64 n = kstrlen(exe);
            if (n > sz)
                n = sz;
            if (!user_ok(buf, n))
                return -EFAULT;
            memcpy((void*)buf, exe, n);
            return (i64)n;
        }
        i64 e = fs_lookup(pathbuf);
        return e < 0 && e != -1 ? e : -EINVAL; /* the tree has no symlinks */
    }
    case 79: /* getcwd */
        if (a1 < 2)
            return -ERANGE;
        if (!user_ok(a0, 2))
            return -EFAULT;
        ((char*)a0)[0] = '/';
        ((char*)a0)[1] = 0;
        return 2;
    case 72: { /* fcntl */
        if (!fd_ok((i64)(int)a0))
            return -EBADF;
        switch (a1) {
        case 0:      /* F_DUPFD */
        case 1030: { /* F_DUPFD_CLOEXEC */
            i64 n = alloc_fd(a2);
            if (n >= 0)
                fds[n] = fds[(int)a0];
            return n;
        }
        case 1: /* F_GETFD */
        case 2: /* F_SETFD */
        case 4: /* F_SETFL */
            return 0;
        case 3: /* F_GETFL */
            return fds[(int)a0].flags;
        }
        return -EINVAL;
    }
    case 32: { /* dup */
        if (!fd_ok((i64)(int)a0))
            return -EBADF;
        i64 n = alloc_fd(0);
        if (n >= 0)
            fds[n] = fds[(int)a0];
        return n;
    }
    case 33:  /* dup2 */
    case 292: /* dup3 */
        if (!fd_ok((i64)(int)a0) || (int)a1 < 0 || (int)a1 >= (int)PSN_MAX_FDS)
            return -EBADF;
        if (nr == 292 && a0 == a1)
            return -EINVAL;
        fds[(int)a1] = fds[(int)a0];
        return (int)a1;
    case 39:  /* getpid */
    case 186: /* gettid */
        return 1;
    case 110: /* getppid */
        return 0;
    case 102: /* getuid */
    case 104: /* getgid */
    case 107: /* geteuid */
    case 108: /* getegid */
        return 1000;
    case 63: { /* uname */
        if (!user_ok(a0, 6 * 65))
            return -EFAULT;
        char* u = (char*)a0;
        copy_field(u, "Linux");
        copy_field(u + 65, "presnap");
        copy_field(u + 130, "6.1.0-presnap");
        copy_field(u + 195, "#1 presnap guest");
        copy_field(u + 260, "x86_64");
        copy_field(u + 325, "(none)");
        return 0;
    }
    case 99: { /* sysinfo */
        if (!user_ok(a0, 112))
            return -EFAULT;
        u8* s = (u8*)a0;
        memset(s, 0, 112);
        *(i64*)s = now_mono() / 1000000000;
        *(u64*)(s + 32) = boot->mem_size;           /* totalram */
        *(u64*)(s + 40) = boot->mmap_top - brk_cur; /* freeram, roughly */
        *(uint16_t*)(s + 80) = 1;                   /* procs */
        *(u32*)(s + 104) = 1;                       /* mem_unit */
        return 0;
    }
    case 204: /* sched_getaffinity: one CPU */
        if (a1 < 8)
            return -EINVAL;
        if (!user_ok(a2, 8))
            return -EFAULT;
        *(u64*)a2 = 1;
        return 8;
    case 24: /* sched_yield */
        return 0;
    case 97:    /* getrlimit */
    case 302: { /* prlimit64 */
        u64 res = nr == 97 ? a0 : a1, out = nr == 97 ? a1 : a3;
        if (nr == 302 && a0 != 0 && a0 != 1)
            return -3; /* ESRCH */
        if (out) {
            if (!user_ok(out, 16))
                return -EFAULT;
            u64 cur = ~0ull, max = ~0ull;
            if (res == 3) /* RLIMIT_STACK */
                cur = PSN_STACK_SIZE;
            else if (res == 7) /* RLIMIT_NOFILE */
                cur = max = PSN_MAX_FDS;
            ((u64*)out)[0] = cur;
            ((u64*)out)[1] = max;
        }
        return 0;
    }
    case 98: /* getrusage */
        if (!user_ok(a1, 144))
            return -EFAULT;
        memset((void*)a1, 0, 144);
        return 0;
    case 100: /* times */
        if (a0 && !user_ok(a0, 32))
            return -EFAULT;
        if (a0)
            memset((void*)a0, 0, 32);
        return now_mono() / 10000000;
    case 158: /* arch_prctl */
        switch (a0) {
        case 0x1002: /* ARCH_SET_FS */
            __asm__ volatile("wrfsbase %0" : : "r"(a1));
            return 0;
        case 0x1001: /* ARCH_SET_GS */
            __asm__ volatile("wrgsbase %0" : : "r"(a1));
            return 0;
        case 0x1003:   /* ARCH_GET_FS */
        case 0x1004: { /* ARCH_GET_GS */
            if (!user_ok(a1, 8))
                return -EFAULT;
            u64 v;
            if (a0 == 0x1003)
                __asm__ volatile("rdfsbase %0" : "=r"(v));
            else
                __asm__ volatile("rdgsbase %0" : "=r"(v));
            *(u64*)a1 = v;
            return 0;
        }
        }
        return -EINVAL;
    case 218: /* set_tid_address */
        return 1;
    case 273: /* set_robust_list */
        return 0;
    case 334: /* rseq: not available; glibc carries on without it */
        return -ENOSYS;
    case 318: /* getrandom */
        if (!user_ok(a0, a1))
            return -EFAULT;
        random_fill((u8*)a0, a1);
        return (i64)a1;
    case 228: /* clock_gettime */
        if (a0 > 11)
            return -EINVAL;
        return put_timespec(a1,
                            (a0 == 0 || a0 == 5 || a0 == 8 || a0 == 11) ? now_real() : now_mono());
    case 229: /* clock_getres */
        return a1 ? put_timespec(a1, 1) : 0;
    case 96: { /* gettimeofday */
        if (a0) {
            if (!user_ok(a0, 16))
                return -EFAULT;
            i64 t = now_real();
            ((i64*)a0)[0] = t / 1000000000;
            ((i64*)a0)[1] = (t % 1000000000) / 1000;
        }
        return 0;
    }
    case 201: { /* time */
        i64 t = now_real() / 1000000000;
        if (a0) {
            if (!user_ok(a0, 8))
                return -EFAULT;
            *(i64*)a0 = t;
        }
        return t;
    }
    case 35: /* nanosleep */
        return sys_nanosleep(a0);
    case 230:         /* clock_nanosleep */
        if (a1 & 1) { /* TIMER_ABSTIME */
            if (!user_ok(a2, 16))
                return -EFAULT;
            i64 target = ((i64*)a2)[0] * 1000000000 + ((i64*)a2)[1];
            return sleep_ns(target - (a0 == 0 ? now_real() : now_mono()));
        }
        return sys_nanosleep(a2);
    case 202: { /* futex: one thread, so a wake finds nobody and a wait is forever */
        u64 op = a1 & 0x7f;
        if (op == 1 || op == 10) /* FUTEX_WAKE, FUTEX_WAKE_BITSET */
            return 0;
        if (op == 0 || op == 9) { /* FUTEX_WAIT, FUTEX_WAIT_BITSET */
            if (!user_ok(a0, 4))
                return -EFAULT;
            if (*(u32*)a0 != (u32)a2)
                return -EAGAIN;
            if (a3)
                return -ETIMEDOUT;
            notice(PSN_NOTICE_DEADLOCK, a0, 0);
            do_exit(128 + 6, 6);
        }
        return -ENOSYS;
    }
    case 62:  /* kill */
    case 200: /* tkill */
        if (nr == 62 && a0 != 1 && a0 != 0 && (i64)(int)a0 != -1)
            return -3; /* ESRCH */
        return kill_self(a1);
    case 234: /* tgkill */
        return kill_self(a2);
    case 60:  /* exit */
    case 231: /* exit_group */
        do_exit((int)(a0 & 0xff), 0);
    }
    if (nr < 512 && !(reported[nr / 64] & (1ull << (nr % 64)))) {
        reported[nr / 64] |= 1ull << (nr % 64);
        notice(refused(nr) ? PSN_NOTICE_REFUSED_SYSCALL : PSN_NOTICE_UNSUPPORTED_SYSCALL, nr, 0);
    }
    return -ENOSYS;
}
