/* The guest kernel's helpers: the freestanding memset/memcpy/memmove the
 * compiler may call, string helpers, the hypercall instruction, one-time
 * notices, panic and exit, and the checks every user pointer goes through. */
#include "kernel.h"

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
