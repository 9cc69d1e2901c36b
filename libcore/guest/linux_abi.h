/* The part of the Linux x86-64 user ABI that the guest kernel serves: error
 * numbers, flag values and the structs that system calls read or write in
 * user memory. Values and layouts are Linux's (arch/x86 uapi headers); the
 * guest has no libc, so they are spelled out here, under the kernel's names,
 * and every struct's size is pinned. Include it only from the guest kernel.
 *
 * A layout here is what static programs were compiled against: a wrong size
 * or offset corrupts the program's memory, so change one only to match Linux.
 */
#ifndef PRESNAP_GUEST_LINUX_ABI_H
#define PRESNAP_GUEST_LINUX_ABI_H

#include <stddef.h>
#include <stdint.h>

#define LINUX_ABI_STRUCT(type, size)                                                               \
    _Static_assert(sizeof(type) == (size), #type " must match the Linux x86-64 layout")

/* ---- Error numbers (returned negated) ---- */
#define EPERM 1
#define ENOENT 2
#define ESRCH 3
#define EBADF 9
#define EAGAIN 11
#define ENOMEM 12
#define EACCES 13
#define EFAULT 14
#define EEXIST 17
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

/* ---- Files ---- */
#define O_RDONLY 0x0
#define O_WRONLY 0x1
#define O_RDWR 0x2
#define O_ACCMODE 0x3
#define O_CREAT 0x40
#define O_TRUNC 0x200
#define O_DIRECTORY 0x10000

#define AT_FDCWD (-100)
#define AT_EMPTY_PATH 0x1000

#define W_OK 2 /* access(2) mode bit */

#define SEEK_SET 0
#define SEEK_CUR 1
#define SEEK_END 2

#define F_DUPFD 0
#define F_GETFD 1
#define F_SETFD 2
#define F_GETFL 3
#define F_SETFL 4
#define F_DUPFD_CLOEXEC 1030

#define S_IFMT 0170000u
#define S_IFCHR 0020000u
#define S_IFDIR 0040000u
#define S_IFREG 0100000u

#define S_BLKSIZE 512 /* the unit of st_blocks */

#define UIO_MAXIOV 1024 /* most iovecs one readv/writev takes */

/* A device number as stat reports it (the kernel's new_encode_dev for major
 * and minor numbers below 256). */
#define MKDEV(major, minor) (((uint64_t)(major) << 8) | (uint64_t)(minor))

struct stat {
    uint64_t st_dev;
    uint64_t st_ino;
    uint64_t st_nlink;
    uint32_t st_mode;
    uint32_t st_uid;
    uint32_t st_gid;
    uint32_t pad0;
    uint64_t st_rdev;
    int64_t st_size;
    int64_t st_blksize;
    int64_t st_blocks;
    uint64_t st_atime, st_atime_nsec;
    uint64_t st_mtime, st_mtime_nsec;
    uint64_t st_ctime, st_ctime_nsec;
    int64_t unused[3];
};
LINUX_ABI_STRUCT(struct stat, 144);
_Static_assert(offsetof(struct stat, st_rdev) == 40, "struct stat layout");
_Static_assert(offsetof(struct stat, st_blocks) == 64, "struct stat layout");

struct iovec {
    uint64_t iov_base;
    uint64_t iov_len;
};
LINUX_ABI_STRUCT(struct iovec, 16);

/* ---- Terminals (ioctl) ---- */
#define TCGETS 0x5401
#define TIOCGWINSZ 0x5413

/* c_iflag */
#define ICRNL 0000400u
#define IXON 0002000u
/* c_oflag */
#define OPOST 0000001u
#define ONLCR 0000004u
/* c_cflag */
#define B38400 0000017u
#define CS8 0000060u
#define CREAD 0000200u
/* c_lflag */
#define ISIG 0000001u
#define ICANON 0000002u
#define ECHO 0000010u
#define ECHOE 0000020u
#define ECHOK 0000040u
#define ECHOCTL 0001000u
#define ECHOKE 0004000u
#define IEXTEN 0100000u

/* The kernel's struct termios (TCGETS), not glibc's larger one. */
#define NCCS 19
struct termios {
    uint32_t c_iflag;
    uint32_t c_oflag;
    uint32_t c_cflag;
    uint32_t c_lflag;
    uint8_t c_line;
    uint8_t c_cc[NCCS];
};
LINUX_ABI_STRUCT(struct termios, 36);

struct winsize {
    uint16_t ws_row;
    uint16_t ws_col;
    uint16_t ws_xpixel;
    uint16_t ws_ypixel;
};
LINUX_ABI_STRUCT(struct winsize, 8);

/* ---- Memory ---- */
#define MAP_FIXED 0x10
#define MAP_ANONYMOUS 0x20
#define MAP_FIXED_NOREPLACE 0x100000

#define MREMAP_MAYMOVE 1
#define MREMAP_FIXED 2

#define MADV_DONTNEED 4

/* ---- Time ---- */
#define NSEC_PER_SEC 1000000000ll
#define NSEC_PER_USEC 1000ll
#define USER_HZ 100 /* clock ticks of times(2) */

#define CLOCK_REALTIME 0
#define CLOCK_REALTIME_COARSE 5
#define CLOCK_REALTIME_ALARM 8
#define CLOCK_TAI 11 /* the highest clock id */

#define TIMER_ABSTIME 1

struct timespec {
    int64_t tv_sec;
    int64_t tv_nsec;
};
LINUX_ABI_STRUCT(struct timespec, 16);

struct timeval {
    int64_t tv_sec;
    int64_t tv_usec;
};
LINUX_ABI_STRUCT(struct timeval, 16);

struct tms {
    int64_t tms_utime;
    int64_t tms_stime;
    int64_t tms_cutime;
    int64_t tms_cstime;
};
LINUX_ABI_STRUCT(struct tms, 32);

/* ---- Signals ---- */
#define NSIG 64 /* signals are 1..NSIG */
#define SIGABRT 6
#define SIGKILL 9
#define SIGCHLD 17
#define SIGSTOP 19
#define SIGURG 23
#define SIGWINCH 28

#define SIG_IGN 1 /* sa_handler value */

#define SIG_BLOCK 0
#define SIG_UNBLOCK 1
#define SIG_SETMASK 2

#define SS_DISABLE 2

typedef uint64_t kernel_sigset_t; /* one bit per signal, bit sig - 1 */

/* rt_sigaction's struct: the kernel's, not libc's. */
struct kernel_sigaction {
    uint64_t sa_handler;
    uint64_t sa_flags;
    uint64_t sa_restorer;
    kernel_sigset_t sa_mask;
};
LINUX_ABI_STRUCT(struct kernel_sigaction, 32);

typedef struct sigaltstack {
    uint64_t ss_sp;
    int32_t ss_flags;
    uint64_t ss_size;
} stack_t;
LINUX_ABI_STRUCT(stack_t, 24);
_Static_assert(offsetof(stack_t, ss_flags) == 8, "stack_t layout");

/* ---- Process ---- */
#define RLIMIT_STACK 3
#define RLIMIT_NOFILE 7
#define RLIM_INFINITY (~0ull)

struct rlimit {
    uint64_t rlim_cur;
    uint64_t rlim_max;
};
LINUX_ABI_STRUCT(struct rlimit, 16);

struct rusage {
    struct timeval ru_utime;
    struct timeval ru_stime;
    int64_t ru_maxrss, ru_ixrss, ru_idrss, ru_isrss, ru_minflt, ru_majflt, ru_nswap, ru_inblock,
        ru_oublock, ru_msgsnd, ru_msgrcv, ru_nsignals, ru_nvcsw, ru_nivcsw;
};
LINUX_ABI_STRUCT(struct rusage, 144);

#define UTSNAME_FIELD 65
struct new_utsname {
    char sysname[UTSNAME_FIELD];
    char nodename[UTSNAME_FIELD];
    char release[UTSNAME_FIELD];
    char version[UTSNAME_FIELD];
    char machine[UTSNAME_FIELD];
    char domainname[UTSNAME_FIELD];
};
LINUX_ABI_STRUCT(struct new_utsname, 6 * 65);

struct sysinfo {
    int64_t uptime;
    uint64_t loads[3];
    uint64_t totalram;
    uint64_t freeram;
    uint64_t sharedram;
    uint64_t bufferram;
    uint64_t totalswap;
    uint64_t freeswap;
    uint16_t procs;
    uint16_t pad;
    uint64_t totalhigh;
    uint64_t freehigh;
    uint32_t mem_unit;
};
LINUX_ABI_STRUCT(struct sysinfo, 112);
_Static_assert(offsetof(struct sysinfo, procs) == 80, "struct sysinfo layout");
_Static_assert(offsetof(struct sysinfo, mem_unit) == 104, "struct sysinfo layout");

#define CPUMASK_BYTES 8 /* sched_getaffinity's mask: one unsigned long */

#define ARCH_SET_GS 0x1001
#define ARCH_SET_FS 0x1002
#define ARCH_GET_FS 0x1003
#define ARCH_GET_GS 0x1004

/* ---- futex ---- */
#define FUTEX_WAIT 0
#define FUTEX_WAKE 1
#define FUTEX_WAIT_BITSET 9
#define FUTEX_WAKE_BITSET 10
#define FUTEX_PRIVATE_FLAG 128

#endif /* PRESNAP_GUEST_LINUX_ABI_H */
