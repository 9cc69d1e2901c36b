/*
 * numtheory: a number-theory request handler (static glibc C).
 *
 * One request per line on stdin ("ROUTE ARG"), one response line on stdout.
 * Every route answers from a precomputed table, and each table is built the
 * first time its route is used rather than at start-up: a process that only
 * ever answers `factor` never pays for the prime sieve. That lazy,
 * route-specific work is what presnap's specialised snapshots capture, so the
 * tables are deliberately large enough to cost tens of milliseconds.
 *
 * Routes and the global state each one builds on first use:
 *   isprime N   sieve        odd-only sieve of Eratosthenes below 2^25 (16 MiB)
 *   pi N        sieve + pi_prefix   prime counts per 64-number block (2 MiB);
 *                            shares the sieve with isprime on purpose
 *   factor N    spf, primes  smallest-prime-factor table below 2^22 (16 MiB)
 *   totient N   phi          Euler's totient below 2^22 (16 MiB)
 *   collatz N   collatz_steps, collatz_best   chain lengths below 2^22 (8 MiB)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    SIEVE_LIMIT = 1 << 25,
    PI_BLOCK = 64,
    FACTOR_LIMIT = 1 << 22,
    TOTIENT_LIMIT = 1 << 22,
    COLLATZ_LIMIT = 1 << 22,
    COLLATZ_BLOCK = 1024,
};

/* Out of memory leaves nothing sensible to answer; a real service would be
 * restarted by its supervisor, so dying loudly is the honest behaviour. */
static void* xcalloc(size_t n, size_t size) {
    void* p = calloc(n, size);
    if (!p) {
        fputs("numtheory: out of memory\n", stderr);
        exit(2);
    }
    return p;
}

/* ---- isprime / pi ---------------------------------------------------- */

/* composite[i] != 0 iff 2i+1 is not prime. Even numbers are not stored: it
 * halves the table and the inner loop. */
static uint8_t* sieve;

static uint8_t* build_sieve(void) {
    const size_t n = SIEVE_LIMIT / 2;
    uint8_t* composite = xcalloc(n, 1);
    composite[0] = 1; /* 1 is not prime */
    for (size_t i = 1;; i++) {
        const size_t p = 2 * i + 1;
        if (p * p >= SIEVE_LIMIT)
            break;
        if (composite[i])
            continue;
        for (size_t j = p * p / 2; j < n; j += p)
            composite[j] = 1;
    }
    return composite;
}

static int is_prime_sieved(uint64_t v) {
    if (v < 2)
        return 0;
    if (v % 2 == 0)
        return v == 2;
    return !sieve[v / 2];
}

/* pi_prefix[b] = number of primes below b*PI_BLOCK, so pi(N) is one lookup
 * plus a scan of at most PI_BLOCK/2 sieve bytes. */
static uint32_t* pi_prefix;

static uint32_t* build_pi_prefix(void) {
    const size_t blocks = SIEVE_LIMIT / PI_BLOCK + 1;
    uint32_t* prefix = xcalloc(blocks, sizeof *prefix);
    uint32_t count = 0;
    for (size_t b = 0; b < blocks; b++) {
        prefix[b] = count;
        for (uint64_t v = (uint64_t)b * PI_BLOCK;
             v < (uint64_t)(b + 1) * PI_BLOCK && v < SIEVE_LIMIT; v++)
            count += (uint32_t)is_prime_sieved(v);
    }
    return prefix;
}

static void route_isprime(uint64_t n) {
    if (!sieve)
        sieve = build_sieve();
    if (n >= SIEVE_LIMIT) {
        printf("error: isprime: %" PRIu64 " out of range (0 .. %d)\n", n, SIEVE_LIMIT - 1);
        return;
    }
    printf("isprime %" PRIu64 ": %s\n", n, is_prime_sieved(n) ? "prime" : "not prime");
}

static void route_pi(uint64_t n) {
    if (!sieve)
        sieve = build_sieve();
    if (!pi_prefix)
        pi_prefix = build_pi_prefix();
    if (n >= SIEVE_LIMIT) {
        printf("error: pi: %" PRIu64 " out of range (0 .. %d)\n", n, SIEVE_LIMIT - 1);
        return;
    }
    const uint64_t block = n / PI_BLOCK;
    uint32_t count = pi_prefix[block];
    for (uint64_t v = block * PI_BLOCK; v <= n; v++)
        count += (uint32_t)is_prime_sieved(v);
    printf("pi %" PRIu64 ": %" PRIu32 " primes <= %" PRIu64 "\n", n, count, n);
}

/* ---- factor ------------------------------------------------------------ */

/* Smallest prime factor of every number below FACTOR_LIMIT, from a linear
 * sieve: factoring is then a walk of at most log2(N) lookups. */
static uint32_t* spf;

static uint32_t* build_spf(void) {
    uint32_t* table = xcalloc(FACTOR_LIMIT, sizeof *table);
    /* By the prime number theorem there are < 300k primes below 2^22. */
    uint32_t* primes = xcalloc(FACTOR_LIMIT / 10, sizeof *primes);
    size_t nprimes = 0;
    for (uint32_t i = 2; i < FACTOR_LIMIT; i++) {
        if (table[i] == 0) {
            table[i] = i;
            primes[nprimes++] = i;
        }
        /* Each composite is written exactly once, by its smallest prime. */
        for (size_t k = 0; k < nprimes; k++) {
            const uint64_t m = (uint64_t)primes[k] * i;
            if (primes[k] > table[i] || m >= FACTOR_LIMIT)
                break;
            table[m] = primes[k];
        }
    }
    free(primes);
    return table;
}

static void route_factor(uint64_t n) {
    if (!spf)
        spf = build_spf();
    if (n < 2 || n >= FACTOR_LIMIT) {
        printf("error: factor: %" PRIu64 " out of range (2 .. %d)\n", n, FACTOR_LIMIT - 1);
        return;
    }
    char out[256];
    int len = snprintf(out, sizeof out, "factor %" PRIu64 " =", n);
    const char* sep = " ";
    for (uint64_t rest = n; rest > 1;) {
        const uint32_t p = spf[rest];
        unsigned exp = 0;
        while (rest % p == 0) {
            rest /= p;
            exp++;
        }
        /* 22 bits cannot hold more than 22 prime factors, so out[] is ample. */
        if (exp > 1)
            len += snprintf(out + len, sizeof out - (size_t)len, "%s%" PRIu32 "^%u", sep, p, exp);
        else
            len += snprintf(out + len, sizeof out - (size_t)len, "%s%" PRIu32, sep, p);
        sep = " * ";
    }
    puts(out);
}

/* ---- totient ----------------------------------------------------------- */

static uint32_t* phi;

static uint32_t* build_phi(void) {
    uint32_t* table = xcalloc(TOTIENT_LIMIT, sizeof *table);
    for (uint32_t i = 0; i < TOTIENT_LIMIT; i++)
        table[i] = i;
    /* table[p] == p still holds exactly when no smaller prime touched p. */
    for (uint32_t p = 2; p < TOTIENT_LIMIT; p++) {
        if (table[p] != p)
            continue;
        for (uint32_t m = p; m < TOTIENT_LIMIT; m += p)
            table[m] -= table[m] / p;
    }
    return table;
}

static void route_totient(uint64_t n) {
    if (!phi)
        phi = build_phi();
    if (n < 1 || n >= TOTIENT_LIMIT) {
        printf("error: totient: %" PRIu64 " out of range (1 .. %d)\n", n, TOTIENT_LIMIT - 1);
        return;
    }
    printf("totient %" PRIu64 ": %" PRIu32 "\n", n, phi[n]);
}

/* ---- collatz ----------------------------------------------------------- */

/* collatz_steps[n]: steps for n to reach 1. collatz_best[b]: the start below
 * b*COLLATZ_BLOCK with the longest chain, so "longest chain up to N" is one
 * lookup plus a scan of less than one block. */
static uint16_t* collatz_steps;
static uint32_t* collatz_best;

static void build_collatz(void) {
    uint16_t* steps = xcalloc(COLLATZ_LIMIT, sizeof *steps);
    uint32_t* best = xcalloc(COLLATZ_LIMIT / COLLATZ_BLOCK + 1, sizeof *best);
    uint32_t leader = 1;
    for (uint32_t n = 2; n < COLLATZ_LIMIT; n++) {
        if (n % COLLATZ_BLOCK == 0)
            best[n / COLLATZ_BLOCK] = leader;
        /* Walk until the chain drops below n, whose length is already known;
         * peaks for n < 2^22 stay far below 2^64. */
        uint64_t v = n;
        unsigned count = 0;
        while (v >= n) {
            v = (v & 1) ? 3 * v + 1 : v / 2;
            count++;
        }
        steps[n] = (uint16_t)(count + steps[v]);
        if (steps[n] > steps[leader])
            leader = n;
    }
    collatz_steps = steps;
    collatz_best = best;
}

static void route_collatz(uint64_t n) {
    if (!collatz_steps)
        build_collatz();
    if (n < 1 || n >= COLLATZ_LIMIT) {
        printf("error: collatz: %" PRIu64 " out of range (1 .. %d)\n", n, COLLATZ_LIMIT - 1);
        return;
    }
    uint64_t start = n / COLLATZ_BLOCK * COLLATZ_BLOCK;
    uint32_t best = collatz_best[n / COLLATZ_BLOCK];
    if (start == 0) { /* block 0 has no recorded leader: 0 is not a start */
        best = 1;
        start = 1;
    }
    for (uint64_t v = start; v <= n; v++)
        if (collatz_steps[v] > collatz_steps[best])
            best = (uint32_t)v;
    printf("collatz %" PRIu64 ": %u steps; longest chain up to %" PRIu64 " starts at %" PRIu32
           " (%u steps)\n",
           n, collatz_steps[n], n, best, collatz_steps[best]);
}

/* ---- dispatch ---------------------------------------------------------- */

/* Parses a non-negative decimal argument; rejects signs, junk and overflow
 * so that every malformed request gets the same error line. */
static int parse_u64(const char* s, uint64_t* out) {
    if (!s || *s < '0' || *s > '9')
        return -1;
    char* end;
    errno = 0;
    const unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

/* Every route takes exactly one integer; reports the error line itself so
 * each branch of handle() stays one line. */
static int one_arg(const char* route, const char* arg, uint64_t* n) {
    if (parse_u64(arg, n) != 0 || strtok(NULL, " \t")) {
        printf("error: %s: expected one non-negative integer\n", route);
        return -1;
    }
    return 0;
}

static void handle(char* line) {
    const char* route = strtok(line, " \t");
    const char* arg = strtok(NULL, " \t");
    uint64_t n;
    if (!route)
        puts("error: empty request");
    /* Route names are literals compared in place (not a table) so that
     * presnap's static analysis can read each branch's token. */
    else if (strcmp(route, "isprime") == 0) {
        if (one_arg(route, arg, &n) == 0)
            route_isprime(n);
    } else if (strcmp(route, "pi") == 0) {
        if (one_arg(route, arg, &n) == 0)
            route_pi(n);
    } else if (strcmp(route, "factor") == 0) {
        if (one_arg(route, arg, &n) == 0)
            route_factor(n);
    } else if (strcmp(route, "totient") == 0) {
        if (one_arg(route, arg, &n) == 0)
            route_totient(n);
    } else if (strcmp(route, "collatz") == 0) {
        if (one_arg(route, arg, &n) == 0)
            route_collatz(n);
    } else
        printf("error: unknown route '%s'\n", route);
}

int main(void) {
    char* line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, stdin)) != -1) {
        if (len > 0 && line[len - 1] == '\n')
            line[--len] = '\0';
        if (len > 0 && line[len - 1] == '\r')
            line[--len] = '\0';
        handle(line);
        /* Stdout is a pipe natively: flush so each request gets its answer
         * before we block reading the next one. */
        fflush(stdout);
    }
    free(line);
    return 0;
}
