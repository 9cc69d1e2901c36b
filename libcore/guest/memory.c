/* Memory management: the brk heap and the mmap area, which share the space
 * between the program and the stack. All guest memory is identity-mapped, so
 * a mapping is an entry in a sorted list; memory outside the list and the heap
 * is kept zero (see kernel.h). */
#include "kernel.h"
#include "syscall_nr.h"

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
/* Top-down first fit below `top`, like Linux's default layout. */
static u64 gap_below(u64 top, u64 len) {
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
/* A library snapshot's warm-up maps below its own window first, so that the
 * large allocations of two snapshots of one base do not overlap (snapmerge
 * rule d); otherwise, and when the window is full, below mmap_top. */
static u64 find_gap(u64 len) {
    u64 w = boot->mmap_window;
    if (w && !(w & (PAGE - 1)) && w <= boot->mmap_top && w > boot->brk_start) {
        u64 a = gap_below(w, len);
        if (a)
            return a;
    }
    return gap_below(boot->mmap_top, len);
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
