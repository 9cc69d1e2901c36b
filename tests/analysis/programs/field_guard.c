/* Lazy state in struct fields reached through pointers: &caches[k], a
 * pointer loaded from a global array of pointers (tables[k]), a sentinel
 * other than zero, a global passed by address (&totals). The same guard
 * on a struct that lives on the stack is not lazy state. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UNSET (-1)

struct cache {
    int ready;
    double* halves;
};

struct table {
    const char* name;
    unsigned* cache;
};

struct counter {
    int base;
};

static struct cache caches[4];
static struct table evens = {"evens", NULL}, odds = {"odds", NULL};
static struct table* const tables[] = {&evens, &odds};
static struct counter counters[2] = {{UNSET}, {UNSET}};

static void ensure_halves(struct cache* c, int k) {
    if (c->ready)
        return;
    c->halves = malloc(100 * sizeof *c->halves);
    for (int i = 0; i < 100; i++)
        c->halves[i] = (double)i / (k + 2);
    c->ready = 1;
}

static unsigned* table_cache(struct table* t, unsigned step) {
    if (!t->cache) {
        t->cache = calloc(256, sizeof *t->cache);
        for (unsigned i = 0; i < 256; i++)
            t->cache[i] = 2 * i + step;
    }
    return t->cache;
}

static int counter_base(struct counter* e, const char* seed) {
    if (e->base != UNSET)
        return e->base;
    e->base = (int)strlen(seed) * 7;
    return e->base;
}

static void fill_scratch(struct cache* c) {
    if (c->ready)
        return;
    c->halves = NULL;
    c->ready = 1;
}

static int scratch(int k) {
    struct cache tmp;
    memset(&tmp, 0, sizeof tmp);
    fill_scratch(&tmp);
    return tmp.ready + k;
}

static struct cache totals;

static double total_of(struct cache* c, int k) {
    if (!c->halves) {
        c->halves = calloc(100, sizeof *c->halves);
        for (int i = 0; i < 100; i++)
            c->halves[i] = i * 0.5;
    }
    return c->halves[k % 100];
}

int main(void) {
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        int k = atoi(line + 1);
        if (line[0] == 'h') {
            ensure_halves(&caches[k & 3], k & 3);
            printf("%g\n", caches[k & 3].halves[k % 100]);
        } else if (line[0] == 't') {
            printf("%u\n", table_cache(tables[k & 1], (unsigned)(k & 1))[k & 255]);
        } else if (line[0] == 's') {
            printf("%g\n", total_of(&totals, k));
        } else if (line[0] == 'c') {
            printf("%d\n", counter_base(&counters[k & 1], line));
        } else {
            printf("%d\n", scratch(k));
        }
    }
    return 0;
}
