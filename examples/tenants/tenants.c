/*
 * tenants: a multi-tenant pricing service (static glibc C).
 *
 * One request per line on stdin, the tenant's name and a JSON body, one
 * response line on stdout:
 *
 *   acme {"op":"price","sku":42}
 *
 * Each tenant has its own price table, built the first time one of its
 * requests arrives (a deterministic walk seeded per tenant, about 10 ms). The
 * tables live in a cache that holds only CACHE_SLOTS of them at once: loading
 * a third tenant frees the least recently used one. That is the kind of
 * state that cannot all be warm at once: a snapshot that replays every
 * tenant's first request keeps only the last two, so the right snapshot for a
 * request is its own tenant's.
 *
 * Tenants: acme, globex, initech, umbrella, hooli. Ops: price (the SKU's
 * price), stock (units in stock), and sum (the sum of prices of SKUs
 * 0..sku). Anything else, or a malformed line, is answered `error: ...` and
 * loads nothing.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    TABLE_SKUS = 1 << 17, /* 128 Ki SKUs: 512 KiB of prices per tenant */
    WALK_ROUNDS = 48,     /* what makes a load cost milliseconds */
    CACHE_SLOTS = 2,      /* tenants resident at once */
    FIELD_MAX = 64,
};

struct table {
    uint32_t price[TABLE_SKUS];
    uint64_t loaded_at; /* the request number that loaded it */
    uint64_t used_at;   /* the last request that used it (LRU) */
};

/* The cache: each tenant's table pointer is its own global, so a lazy guard
 * `if (!acme)` is what builds it; the slots point at the globals so that an
 * eviction can clear the owner's pointer. */
static struct table *acme, *globex, *initech, *umbrella, *hooli;
static struct table** resident[CACHE_SLOTS];
static uint64_t request_no;

static void* xmalloc(size_t n) {
    void* p = malloc(n);
    if (!p) {
        fputs("tenants: out of memory\n", stderr);
        exit(2);
    }
    return p;
}

/* Frees the least recently used resident table when the cache is full and
 * returns the slot the new table goes into. */
static size_t free_slot(void) {
    size_t victim = 0;
    for (size_t i = 0; i < CACHE_SLOTS; i++) {
        if (!resident[i])
            return i;
        if ((*resident[i])->used_at < (*resident[victim])->used_at)
            victim = i;
    }
    free(*resident[victim]);
    *resident[victim] = NULL;
    resident[victim] = NULL;
    return victim;
}

static struct table* load_tenant(struct table** owner, uint64_t seed) {
    size_t slot = free_slot();
    struct table* t = xmalloc(sizeof *t);
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < TABLE_SKUS; i++) {
        for (int r = 0; r < WALK_ROUNDS; r++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        t->price[i] = (uint32_t)(x % 100000u) + 1u;
    }
    t->loaded_at = request_no;
    resident[slot] = owner;
    return t;
}

static struct table* tenant_table(const char* name) {
    if (strcmp(name, "acme") == 0) {
        if (!acme)
            acme = load_tenant(&acme, 1);
        return acme;
    }
    if (strcmp(name, "globex") == 0) {
        if (!globex)
            globex = load_tenant(&globex, 2);
        return globex;
    }
    if (strcmp(name, "initech") == 0) {
        if (!initech)
            initech = load_tenant(&initech, 3);
        return initech;
    }
    if (strcmp(name, "umbrella") == 0) {
        if (!umbrella)
            umbrella = load_tenant(&umbrella, 4);
        return umbrella;
    }
    if (strcmp(name, "hooli") == 0) {
        if (!hooli)
            hooli = load_tenant(&hooli, 5);
        return hooli;
    }
    return NULL;
}

/* A deliberately small JSON reader for the body: one flat object of string
 * and non-negative integer values, keys at most FIELD_MAX-1 bytes. */
struct request {
    char op[FIELD_MAX];
    long long sku; /* -1: absent */
};

static const char* skip_ws(const char* p) {
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

static const char* read_string(const char* p, char* out) {
    if (*p != '"')
        return NULL;
    p++;
    size_t n = 0;
    while (*p && *p != '"') {
        if (*p == '\\' || n + 1 >= FIELD_MAX)
            return NULL;
        out[n++] = *p++;
    }
    if (*p != '"')
        return NULL;
    out[n] = '\0';
    return p + 1;
}

/* 0 on success, else a static error text. */
static const char* parse_request(const char* p, struct request* r) {
    r->op[0] = '\0';
    r->sku = -1;
    p = skip_ws(p);
    if (*p++ != '{')
        return "not a JSON object";
    p = skip_ws(p);
    while (*p != '}') {
        char key[FIELD_MAX];
        if (!(p = read_string(p, key)))
            return "bad key";
        p = skip_ws(p);
        if (*p++ != ':')
            return "expected ':'";
        p = skip_ws(p);
        if (*p == '"') {
            char value[FIELD_MAX];
            if (!(p = read_string(p, value)))
                return "bad string";
            if (strcmp(key, "op") == 0)
                strcpy(r->op, value);
        } else if (*p >= '0' && *p <= '9') {
            long long v = 0;
            while (*p >= '0' && *p <= '9') {
                if (v > 1000000000)
                    return "number too large";
                v = v * 10 + (*p++ - '0');
            }
            if (strcmp(key, "sku") == 0)
                r->sku = v;
        } else {
            return "bad value";
        }
        p = skip_ws(p);
        if (*p == ',')
            p = skip_ws(p + 1);
        else if (*p != '}')
            return "expected ',' or '}'";
    }
    p = skip_ws(p + 1);
    if (*p != '\0')
        return "trailing bytes";
    return NULL;
}

static void handle(char* line) {
    /* "TENANT {json}": the tenant's name, one space, the JSON body. */
    char* body = strchr(line, ' ');
    if (!body || body == line || body - line >= FIELD_MAX) {
        printf("error: expected 'TENANT {\"op\":...,\"sku\":N}'\n");
        return;
    }
    *body++ = '\0';
    struct request r;
    const char* bad = parse_request(body, &r);
    if (bad) {
        printf("error: %s\n", bad);
        return;
    }
    if (!r.op[0] || r.sku < 0) {
        printf("error: need op and sku\n");
        return;
    }
    int op = strcmp(r.op, "price") == 0   ? 1
             : strcmp(r.op, "stock") == 0 ? 2
             : strcmp(r.op, "sum") == 0   ? 3
                                          : 0;
    if (!op) {
        printf("error: unknown op '%s'\n", r.op);
        return;
    }
    struct table* t = tenant_table(line);
    if (!t) {
        printf("error: unknown tenant '%s'\n", line);
        return;
    }
    t->used_at = request_no;
    const size_t sku = (size_t)r.sku % TABLE_SKUS;
    uint64_t value = 0;
    if (op == 1)
        value = t->price[sku];
    else if (op == 2)
        value = (t->price[sku] * 2654435761u) % 1000u;
    else
        for (size_t i = 0; i <= sku; i++)
            value += t->price[i];
    printf("%s %s %lld: %llu\n", line, r.op, r.sku, (unsigned long long)value);
}

int main(void) {
    char* line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, stdin)) != -1) {
        if (len > 0 && line[len - 1] == '\n')
            line[len - 1] = '\0';
        request_no++;
        handle(line);
        fflush(stdout);
    }
    free(line);
    return 0;
}
