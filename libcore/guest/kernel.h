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
 * -EFAULT as on Linux. See man/presnap-guest.7 for the syscall table.
 *
 * This header is the kernel's own, shared by its parts: the types, the state
 * more than one part touches, the helpers, and each part's interface. The
 * parts, by concern:
 *   entry.S    the syscall entry (MSR_LSTAR) and the exception stubs
 *   syscall.c  the system call table: numbers (syscall_nr.h) to handlers
 *   core.c     memset/memcpy, hypercalls, notices, panic, exit, user checks
 *   memory.c   brk, mmap, munmap, mremap, madvise and the mapping list
 *   files.c    the file tree, descriptors, open, stat, read, write, lseek ...
 *   stdio.c    the input and output buffers, the wait point, the terminal
 *   time.c     the clocks and sleeping
 *   random.c   the ChaCha20 generator and getrandom
 *   process.c  signals, ids, limits, uname, sysinfo, arch_prctl, futex
 * linux_abi.h holds the Linux structs and constants they read and write. */
#ifndef PRESNAP_GUEST_KERNEL_H
#define PRESNAP_GUEST_KERNEL_H

#include "presnap/guest_abi.h"

#include "linux_abi.h"

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

extern struct fd fds[PSN_MAX_FDS]; /* files.c */
extern u64 brk_cur;                /* memory.c: the program break */
extern u64 psn_out_len;            /* stdio.c: bytes buffered at boot->out_buf */

/* ---- helpers (core.c) ---- */
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
/* syscall.c: entry.S calls it with the number and arguments of each call */
i64 psn_syscall(u64 nr, u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5);
/* memory.c */
void memory_init(void);
i64 sys_mmap(u64 addr, u64 len, u64 prot, u64 flags, i64 fd, u64 off);
i64 sys_mprotect(u64 addr, u64 len);
i64 sys_munmap(u64 addr, u64 len);
i64 sys_mremap(u64 old, u64 old_len, u64 new_len, u64 flags, u64 new_addr);
i64 sys_madvise(u64 addr, u64 len, u64 advice);
i64 sys_brk(u64 want);
/* files.c */
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
/* stdio.c */
void write_out(const u8* p, u64 n);
void write_err(const u8* p, u64 n);
i64 read_stdin(u8* p, u64 n);
i64 sys_ioctl(i64 fd, u64 req, u64 arg);
/* time.c */
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
/* random.c */
void reseed(void);
void reseed_if_restored(void);
void random_fill(u8* p, u64 n);
i64 sys_getrandom(u64 buf, u64 n);
/* process.c: signals and the process */
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

#endif /* PRESNAP_GUEST_KERNEL_H */
