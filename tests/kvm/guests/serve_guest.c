/* A function for the serving mode's tests (tests/kvm/serve.sh): one route
 * per line's first word.
 *   put TEXT   keep TEXT in static memory and on the heap: "ok"
 *   get        what an earlier put kept: "stored=TEXT heap=TEXT" (empty
 *              after a fresh restore: a request must not see another's writes)
 *   count      a static counter, incremented: "count=N"
 *   rand       16 random bytes (getrandom), in hex
 *   echo TEXT  "echo TEXT"
 *   sum N      builds a table once (lazily, the route's warm-up), then the
 *              sum of its first N entries
 *   big N      a response of N bytes ('x' ... newline)
 *   fault      writes through a null pointer
 *   loop       never answers
 * anything else: "error: unknown route"
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

static char stored[256];
static char* heap_copy;
static unsigned long counter;
static unsigned long* table;
enum { kTable = 1 << 18 };

static unsigned long* get_table(void) {
    if (!table) {
        table = malloc(kTable * sizeof *table);
        unsigned long x = 88172645463325252ul;
        for (int i = 0; i < kTable; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            table[i] = x % 1000;
        }
    }
    return table;
}

int main(void) {
    static char line[1 << 16];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = 0;
        char* arg = strchr(line, ' ');
        if (arg)
            *arg++ = 0;
        else
            arg = line + strlen(line);
        if (!strcmp(line, "put")) {
            snprintf(stored, sizeof stored, "%s", arg);
            free(heap_copy);
            heap_copy = strdup(arg);
            puts("ok");
        } else if (!strcmp(line, "get")) {
            printf("stored=%s heap=%s\n", stored, heap_copy ? heap_copy : "");
        } else if (!strcmp(line, "count")) {
            printf("count=%lu\n", ++counter);
        } else if (!strcmp(line, "rand")) {
            unsigned char b[16];
            if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) {
                puts("error: getrandom");
                continue;
            }
            for (int i = 0; i < 16; i++)
                printf("%02x", b[i]);
            putchar('\n');
        } else if (!strcmp(line, "echo")) {
            printf("echo %s\n", arg);
        } else if (!strcmp(line, "sum")) {
            long n = atol(arg);
            if (n < 0 || n > kTable) {
                puts("error: out of range");
                continue;
            }
            unsigned long *t = get_table(), s = 0;
            for (long i = 0; i < n; i++)
                s += t[i];
            printf("sum %ld = %lu\n", n, s);
        } else if (!strcmp(line, "big")) {
            long n = atol(arg);
            for (long i = 0; i + 1 < n; i++)
                putchar('x');
            putchar('\n');
        } else if (!strcmp(line, "fault")) {
            *(volatile int*)0 = 1;
        } else if (!strcmp(line, "loop")) {
            for (volatile unsigned long i = 0;; i++)
                ;
        } else {
            puts("error: unknown route");
        }
        fflush(stdout);
    }
    return 0;
}
