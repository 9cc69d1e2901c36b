/* Two routes whose lazy work writes only their own static tables, with no
 * heap and no stdio buffers (raw read/write on static buffers): the kind of
 * program whose route snapshots merge page by page. "alpha N" and "beta N"
 * answer from a table built the first time the route is used; any other
 * line is an error. Request bytes are wiped after use (as a program holding
 * secrets would), so that nothing request-scoped is left at the wait point.
 * Used by tests/kvm/merge.sh (merged-pair). */
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#define TABLE 65536

static uint32_t alpha_table[TABLE], beta_table[TABLE];
static int alpha_ready, beta_ready;
static char line[4096], out[128];
static size_t have;

__attribute__((noinline)) static void build_alpha(void) {
    for (uint32_t i = 0; i < TABLE; i++)
        alpha_table[i] = i * 2654435761u;
    alpha_ready = 1;
}

__attribute__((noinline)) static void build_beta(void) {
    for (uint32_t i = 0; i < TABLE; i++)
        beta_table[i] = (i ^ 0x5bd1e995u) * 40503u;
    beta_ready = 1;
}

static uint64_t number(const char* s) {
    uint64_t n = 0;
    while (*s >= '0' && *s <= '9')
        n = n * 10 + (uint64_t)(*s++ - '0');
    return n;
}

static void answer(const char* name, uint32_t v) {
    static const char hex[] = "0123456789abcdef";
    size_t k = strlen(name);
    memcpy(out, name, k);
    out[k++] = ' ';
    for (int i = 7; i >= 0; i--)
        out[k++] = hex[(v >> (4 * i)) & 15];
    out[k++] = '\n';
    write(1, out, k);
    memset(out, 0, sizeof out);
}

__attribute__((noinline)) static void route_alpha(uint64_t n) {
    if (!alpha_ready)
        build_alpha();
    answer("alpha", alpha_table[n % TABLE]);
}

__attribute__((noinline)) static void route_beta(uint64_t n) {
    if (!beta_ready)
        build_beta();
    answer("beta", beta_table[n % TABLE]);
}

static void handle(const char* l) {
    if (strncmp(l, "alpha ", 6) == 0)
        route_alpha(number(l + 6));
    else if (strncmp(l, "beta ", 5) == 0)
        route_beta(number(l + 5));
    else
        write(1, "error: unknown route\n", 21);
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
