/* The presnap guest ABI: the one contract between the monitor (host) and the
 * guest kernel. Both sides include this header; it uses only <stdint.h> so
 * that the freestanding guest kernel can include it too.
 *
 * Versioning: PSN_ABI_VERSION changes whenever a struct, a constant or the
 * meaning of a field below changes. The monitor refuses to run a guest kernel
 * (or, later, restore a snapshot) built for another ABI version.
 *
 * Address space: guest virtual == guest physical (identity map, 4 KiB pages).
 * Page 0 is never mapped. The monitor writes the system tables, the boot info
 * page and the page tables, loads the program and builds its stack; the guest
 * kernel only serves syscalls and reports exceptions. There is no guest boot
 * code: the vCPU starts at the program's entry point at CPL3.
 *
 * Hypercalls: `out %eax, %dx` with %dx = PSN_HC_PORT_BASE + number and %eax =
 * guest physical address of the number's argument struct (below 4 GiB). Fields
 * marked IN are written by the guest, OUT by the monitor. Number 0 is reserved.
 */
#ifndef PRESNAP_GUEST_ABI_H
#define PRESNAP_GUEST_ABI_H

#include <stdint.h>

#define PSN_ABI_VERSION 4u

/* ---- Fixed layout (guest physical = guest virtual) ---- */
#define PSN_PAGE_SIZE 4096ull
#define PSN_GDT_ADDR 0x1000ull /* GDT (8 entries) then the TSS at +0x80 */
#define PSN_TSS_ADDR 0x1080ull
#define PSN_IDT_ADDR 0x2000ull       /* 256 gates x 16 bytes */
#define PSN_BOOT_INFO_ADDR 0x3000ull /* struct psn_boot_info, one page */
#define PSN_EXC_STACK_TOP 0x10000ull /* TSS.RSP0: exception handler stack */
#define PSN_KERNEL_BASE 0x100000ull  /* guest kernel image: text, data, bss */
#define PSN_KERNEL_LIMIT 0x400000ull /* kernel image must end below this */
#define PSN_USER_BASE 0x400000ull    /* lowest address a program may occupy */
#define PSN_PIE_BASE 0x400000ull     /* where static-pie programs are loaded */

/* GDT selectors. */
#define PSN_SEL_KCODE 0x08u
#define PSN_SEL_KDATA 0x10u
#define PSN_SEL_UDATA 0x1bu /* 0x18 | 3 */
#define PSN_SEL_UCODE 0x23u /* 0x20 | 3 */
#define PSN_SEL_TSS 0x28u

/* ---- Limits ---- */
#define PSN_IO_BUFFER_SIZE (1ull << 20) /* input and output buffers, each */
#define PSN_STACK_SIZE (8ull << 20)     /* program stack, like Linux's default */
#define PSN_MAX_FDS 64u
#define PSN_MAX_MAPPINGS 1024u /* distinct mmap regions the guest tracks */
#define PSN_MAX_ARGS_BYTES (128u << 10)

/* The guest kernel image starts with this header (at PSN_KERNEL_BASE). */
#define PSN_KERNEL_MAGIC 0x314e524b4e535350ull /* "PSSNKRN1" */
struct psn_kernel_header {
    uint64_t magic;         /* PSN_KERNEL_MAGIC */
    uint32_t abi_version;   /* PSN_ABI_VERSION */
    uint32_t stats_addr;    /* struct psn_stats in the kernel image; 0: none (see below) */
    uint64_t syscall_entry; /* MSR_LSTAR */
    uint64_t exc_table;     /* 32 handler addresses for vectors 0..31 */
    uint64_t image_end;     /* end of text+data+bss (page aligned) */
    uint64_t out_len_addr;  /* u64: stdout bytes buffered at boot_info.out_buf; the
                               monitor flushes them when the guest is stopped */
};

/* Counters the guest kernel keeps while it serves syscalls, for the monitor
 * to read at wait points (snapgen's records of what a warm-up did: memory
 * growth, syscalls by number). Only the guest writes them; the host reads
 * them and never trusts them for anything but the report. The header's
 * stats_addr was padding, always 0, before them: a kernel without counters
 * still says 0, an older monitor ignores the field, so this addition kept
 * PSN_ABI_VERSION. */
#define PSN_STATS_MAGIC 0x315354544e53504eull /* "NPSNTTS1" */
#define PSN_STATS_SYSCALLS 512u /* one counter per number below 511; the last counts the rest */
struct psn_stats {
    uint64_t magic;      /* PSN_STATS_MAGIC */
    uint64_t brk_bytes;  /* the program break's distance above brk_start, now */
    uint64_t mmap_bytes; /* bytes mapped by successful mmap and mremap calls, page rounded, ever */
    uint64_t munmap_bytes; /* bytes released by successful munmap and mremap calls, ever */
    uint64_t syscalls[PSN_STATS_SYSCALLS]; /* calls by number, ever */
};

#define PSN_BOOT_MAGIC 0x50534e424f4f5431ull /* "PSNBOOT1" */

/* Boot info: written by the monitor before the first instruction, read by the
 * guest kernel on its first syscall. */
struct psn_boot_info {
    uint64_t magic;       /* PSN_BOOT_MAGIC */
    uint32_t abi_version; /* PSN_ABI_VERSION */
    uint32_t flags;       /* PSN_BOOT_* */
    uint64_t mem_size;    /* bytes of guest physical memory */
    uint64_t brk_start;   /* first byte after the program image (page aligned) */
    uint64_t mmap_top;    /* mmap area grows down from here (page aligned) */
    uint64_t stack_low;   /* lowest stack byte; mmap never goes at or above */
    uint64_t stack_top;
    uint64_t in_buf;             /* input buffer, PSN_IO_BUFFER_SIZE bytes */
    uint64_t out_buf;            /* output buffer, PSN_IO_BUFFER_SIZE bytes */
    uint64_t rootfs_addr;        /* read-only file tree image (struct psn_fs_header) */
    uint64_t rootfs_size;        /* 0 if no --rootfs */
    uint64_t tsc_hz;             /* 0 if unknown (clock then ticks from exits only) */
    int64_t realtime_ns;         /* host CLOCK_REALTIME at the first KVM_RUN */
    int64_t monotonic_ns;        /* host CLOCK_MONOTONIC at the first KVM_RUN */
    uint64_t restore_generation; /* 0 on a cold boot; +1 per restore */
    uint8_t random_seed[32];     /* seeds the guest's ChaCha20 generator */
    uint64_t exe_path;           /* guest address of the program path string */
    uint64_t mmap_window;        /* 0, or the top of this snapshot's own mmap window
                                    (snapgen's library builds; merge rule d): new
                                    mappings go top-down below it first */
    uint64_t reserved[7];
};

#define PSN_BOOT_DETERMINISTIC 1u /* virtual clock, fixed seed */

/* ---- Hypercalls ---- */
#define PSN_HC_PORT_BASE 0x500u
enum psn_hypercall {
    PSN_HC_RESERVED = 0,
    PSN_HC_INPUT = 1,  /* struct psn_hc_input: need input (maybe a wait point) */
    PSN_HC_WRITE = 2,  /* struct psn_hc_write: pass bytes to host stdout/stderr */
    PSN_HC_EXIT = 3,   /* struct psn_hc_exit: the program exited */
    PSN_HC_FAULT = 4,  /* struct psn_hc_fault: CPU exception in the guest */
    PSN_HC_NOTICE = 5, /* struct psn_hc_notice: report once (unsupported ...) */
    PSN_HC_SLEEP = 6,  /* struct psn_hc_sleep: sleep on the host */
    PSN_HC_COUNT = 7,
};

/* PSN_HC_INPUT. The guest's input buffer is used up. If the last chunk the
 * monitor delivered ended a request, this is a wait point: out_* is the whole
 * rest of the response. The monitor fills in_buf with the next chunk. */
struct psn_hc_input {
    uint64_t out_addr;      /* IN: buffered stdout bytes */
    uint64_t out_len;       /* IN */
    uint64_t in_len;        /* OUT: bytes placed at boot_info.in_buf */
    uint32_t eof;           /* OUT: 1 = no more input ever */
    uint32_t request_start; /* OUT: 1 = the chunk starts a new request */
    int64_t realtime_ns;    /* OUT: host time just before resuming */
    int64_t monotonic_ns;   /* OUT */
    uint64_t tsc_hz;        /* OUT: refined TSC frequency, 0 if unknown */
    uint64_t request_index; /* OUT: 1-based number of the current request */
};

struct psn_hc_write {
    uint32_t fd; /* IN: 1 or 2 */
    uint32_t pad;
    uint64_t addr; /* IN */
    uint64_t len;  /* IN */
};

struct psn_hc_exit {
    int32_t status;    /* IN: exit_group status, or 128 + signal for a kill */
    uint32_t signal;   /* IN: nonzero when the program killed itself with it */
    uint64_t out_addr; /* IN: buffered stdout bytes to flush first */
    uint64_t out_len;  /* IN */
};

/* PSN_HC_FAULT. Every exception but #BP (vector 3) is final: the monitor
 * never resumes the vCPU. A #BP may be resumed (the monitor's tracer placed
 * the int3, see snaprun --trace): the monitor then writes `rip` and the
 * handler continues the program there with every register as it was. */
struct psn_hc_fault {
    uint64_t vector; /* IN: exception vector */
    uint64_t error_code;
    uint64_t rip; /* IN: the frame's rip; OUT (#BP resumed): where to continue */
    uint64_t cs;
    uint64_t rflags;
    uint64_t rsp;
    uint64_t cr2; /* IN: faulting address for #PF */
};

enum psn_notice_kind {
    PSN_NOTICE_UNSUPPORTED_SYSCALL = 1, /* arg0 = number */
    PSN_NOTICE_OUT_OF_MEMORY = 2,       /* arg0 = bytes asked, arg1 = syscall */
    PSN_NOTICE_REFUSED_SYSCALL = 3,     /* arg0 = number (fork, socket ...) */
    PSN_NOTICE_KERNEL_PANIC = 4,        /* arg0 = guest address of message, arg1 = length */
    PSN_NOTICE_DEADLOCK = 5,            /* arg0 = futex address: waits forever */
};

struct psn_hc_notice {
    uint32_t kind; /* IN: psn_notice_kind */
    uint32_t pad;
    uint64_t arg0; /* IN */
    uint64_t arg1; /* IN */
};

struct psn_hc_sleep {
    uint64_t ns; /* IN */
};

/* ---- The read-only file tree image (--rootfs) ----
 * header, then `count` entries sorted by path (bytewise), then a string table
 * and file data. Offsets are from the start of the image. Paths are absolute,
 * normalised ("/", "/data", "/data/a.txt"); the root itself is entry 0. */
#define PSN_FS_MAGIC 0x3153464e53505350ull /* "PSPSNFS1" */
struct psn_fs_header {
    uint64_t magic;
    uint64_t count;
    uint64_t entries_off;
};
struct psn_fs_entry {
    uint64_t path_off; /* NUL-terminated path */
    uint64_t data_off; /* files: contents; directories: 0 */
    uint64_t size;
    uint32_t mode; /* S_IFREG / S_IFDIR | permission bits */
    uint32_t pad;
};

#endif /* PRESNAP_GUEST_ABI_H */
