/* Eight routes whose lazy work writes only their own static tables, with no
 * heap and no stdio buffers (raw read/write on static buffers): the kind of
 * program whose route snapshots merge page by page. "tK N" (K in 0..7)
 * answers from table K, built the first time route K is used; any other
 * line is an error. Request bytes are wiped after use (as a program holding
 * secrets would), so that nothing request-scoped is left at the wait point.
 * Used by tests/kvm/merge.sh (static routes) and bench/merge.sh. */
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#define ROUTES 8
#define TABLE 65536

static uint32_t tables[ROUTES][TABLE];
static int ready[ROUTES];
static char line[4096], out[128];
static size_t have;

/* One lazy initialiser and one route function per table, so that the
 * analysis sees eight routes. */
#define ROUTE(k)                                                                                   \
    __attribute__((noinline)) static void build_##k(void) {                                        \
        for (uint32_t i = 0; i < TABLE; i++)                                                       \
            tables[k][i] = (i ^ (0x9e3779b9u * (uint32_t)(k + 1))) * 2654435761u;                  \
        ready[k] = 1;                                                                              \
    }
ROUTE(0)
ROUTE(1)
ROUTE(2)
ROUTE(3)
ROUTE(4)
ROUTE(5)
ROUTE(6)
ROUTE(7)

static uint64_t number(const char* s) {
    uint64_t n = 0;
    while (*s >= '0' && *s <= '9')
        n = n * 10 + (uint64_t)(*s++ - '0');
    return n;
}

static void answer(int k, uint32_t v) {
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    out[n++] = 't';
    out[n++] = (char)('0' + k);
    out[n++] = ' ';
    for (int i = 7; i >= 0; i--)
        out[n++] = hex[(v >> (4 * i)) & 15];
    out[n++] = '\n';
    write(1, out, n);
    memset(out, 0, sizeof out);
}

static void handle(const char* l) {
    uint64_t n = number(l + 3);
    if (strncmp(l, "t0 ", 3) == 0) {
        if (!ready[0])
            build_0();
        answer(0, tables[0][n % TABLE]);
    } else if (strncmp(l, "t1 ", 3) == 0) {
        if (!ready[1])
            build_1();
        answer(1, tables[1][n % TABLE]);
    } else if (strncmp(l, "t2 ", 3) == 0) {
        if (!ready[2])
            build_2();
        answer(2, tables[2][n % TABLE]);
    } else if (strncmp(l, "t3 ", 3) == 0) {
        if (!ready[3])
            build_3();
        answer(3, tables[3][n % TABLE]);
    } else if (strncmp(l, "t4 ", 3) == 0) {
        if (!ready[4])
            build_4();
        answer(4, tables[4][n % TABLE]);
    } else if (strncmp(l, "t5 ", 3) == 0) {
        if (!ready[5])
            build_5();
        answer(5, tables[5][n % TABLE]);
    } else if (strncmp(l, "t6 ", 3) == 0) {
        if (!ready[6])
            build_6();
        answer(6, tables[6][n % TABLE]);
    } else if (strncmp(l, "t7 ", 3) == 0) {
        if (!ready[7])
            build_7();
        answer(7, tables[7][n % TABLE]);
    } else {
        write(1, "error: unknown route\n", 21);
    }
}

int main(void) {
    for (;;) {
        char* nl = memchr(line, '\n', have);
        if (nl) {
            *nl = 0;
            handle(line);
            size_t used = (size_t)(nl - line) + 1;
            memmove(line, line + used, have - used);
            have -= used;
            memset(line + have, 0, sizeof line - have);
            continue;
        }
        if (have == sizeof line)
            have = 0; /* an over-long line is dropped */
        ssize_t n = read(0, line + have, sizeof line - have);
        if (n <= 0)
            return 0;
        have += (size_t)n;
    }
}
