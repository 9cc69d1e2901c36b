/* A request server with two lazy initialisers: a table behind a pointer
 * guard (`if (!table)`) and a flag guard whose initialiser is a separate
 * function that sets the flag itself. pea-analyze must flag both guards as
 * lazy and warmable. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int* table;
static int ready;
static char banner[64];

static int* build_table(void) {
    int* t = malloc(1024 * sizeof *t);
    for (int i = 0; i < 1024; i++)
        t[i] = i * i;
    return t;
}

static void prepare_banner(void) {
    snprintf(banner, sizeof banner, "squares v1");
    ready = 1;
}

static int square(int n) {
    if (!table)
        table = build_table();
    return table[n & 1023];
}

static const char* get_banner(void) {
    if (!ready)
        prepare_banner();
    return banner;
}

int main(void) {
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        if (line[0] == 'b')
            puts(get_banner());
        else
            printf("%d\n", square(atoi(line)));
        fflush(stdout);
    }
    return 0;
}
