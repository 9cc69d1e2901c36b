/* Signals and the process: one process with one thread. Signal handlers are
 * recorded but never run; a signal the program sends itself ends it as the
 * default action would. Also the ids, limits, uname, sysinfo, arch_prctl and
 * futex. */
#include "kernel.h"

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
