/* The system call entry from entry.S: sets the kernel up on the first call,
 * then dispatches by number (syscall_nr.h) to the handlers in the other parts.
 * A number with no handler returns -ENOSYS and is reported to the monitor
 * once, as refused (fork, socket ...) or unsupported. */
#include "kernel.h"
#include "syscall_nr.h"

static int initialised;
static u64 reported[8];                      /* unsupported syscalls already reported, by number */
#define REPORTED_LIMIT (sizeof reported * 8) /* numbers at or above are not reported */

/* What the monitor reads through the kernel header's stats_addr. */
struct psn_stats psn_stats;

/* Adds `len`, page rounded, to `counter` when `r` is not an error. */
static i64 count_bytes(i64 r, u64* counter, u64 len) {
    if ((u64)r < (u64)-4095)
        *counter += PAGE_UP(len);
    return r;
}

/* The first system call sets the kernel up from the boot info. */
static void init(void) {
    if (boot->magic != PSN_BOOT_MAGIC || boot->abi_version != PSN_ABI_VERSION)
        panic("boot info has a wrong magic or ABI version");
    memory_init();
    reseed();
    set_clock(boot->realtime_ns, boot->monotonic_ns, boot->tsc_hz);
    files_init();
    psn_stats.magic = PSN_STATS_MAGIC;
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
    psn_stats.syscalls[nr < PSN_STATS_SYSCALLS - 1 ? nr : PSN_STATS_SYSCALLS - 1]++;
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
        return count_bytes(sys_mmap(a0, a1, a2, a3, FD(a4), a5), &psn_stats.mmap_bytes, a1);
    case SYS_mprotect:
        return sys_mprotect(a0, a1);
    case SYS_munmap:
        return count_bytes(sys_munmap(a0, a1), &psn_stats.munmap_bytes, a1);
    case SYS_mremap:
        return count_bytes(count_bytes(sys_mremap(a0, a1, a2, a3, a4), &psn_stats.mmap_bytes, a2),
                           &psn_stats.munmap_bytes, a1);
    case SYS_madvise:
        return sys_madvise(a0, a1, a2);
    case SYS_brk: {
        i64 r = sys_brk(a0);
        psn_stats.brk_bytes = brk_cur - boot->brk_start;
        return r;
    }

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
