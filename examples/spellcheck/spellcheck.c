/*
 * spellcheck: a spell-checking request handler (static musl C).
 *
 * One request per line on stdin ("ROUTE WORD"), one response line on stdout.
 * The dictionary is a lexicon of generated stems (a fixed-seed generator
 * stands in for a word list until presnap's rootfs lets examples ship data
 * files). Each route needs its own index over the lexicon, and each index is
 * built the first time its route is used: a process that only checks words
 * never builds the suggestion index. That lazy, route-specific work is what
 * presnap's specialised snapshots capture.
 *
 * Routes and the global state each one builds on first use:
 *   check WORD     lexicon + spelled: 64-bit fingerprints of every stem and its
 *                  inflections (-s, -ed, -ing, -ly), open addressing, 4 MiB
 *   suggest WORD   lexicon + deletes: a SymSpell index from every one-letter
 *                  deletion of every stem to the stem, about 10 MiB
 *   complete PFX   lexicon + by_prefix: the stems sorted and deduplicated
 *   rhyme WORD     lexicon + by_suffix: the stems reversed, sorted, deduplicated
 * The lexicon (about 2 MiB) is shared: whichever route comes first builds it.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

enum {
    NSTEMS = 64000,
    MAX_STEM = 24, /* four syllables of two-letter onset, nucleus and coda */
    MAX_WORD = 48, /* longer requests are rejected */
    MAX_RESULTS = 5,
    SPELLED_BITS = 19, /* 512k slots for 320k forms: load factor 0.61 */
    DELETE_BITS = 20,
    RHYME_WINDOW = 24, /* neighbours examined either side in by_suffix */
};

static void* xmalloc(size_t size) {
    void* p = malloc(size);
    if (!p) {
        fputs("spellcheck: out of memory\n", stderr);
        exit(2);
    }
    return p;
}

static void* xcalloc(size_t n, size_t size) {
    void* p = calloc(n, size);
    if (!p) {
        fputs("spellcheck: out of memory\n", stderr);
        exit(2);
    }
    return p;
}

/* ---- the lexicon ------------------------------------------------------- */

/* Stems are NUL-terminated strings packed in one arena; stem[i] points into
 * it. The generator may repeat a stem; each index copes with that. */
static char** stem;
static size_t nstems;

/* xorshift64*: fixed seed, so the lexicon, and with it every response, is
 * the same in every run and in every VM. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rng(uint32_t bound) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545f4914f6cdd1dull) >> 32) % bound;
}

static const char* const onsets[] = {"",   "",   "b",  "c",  "d",  "f",  "g",  "h",  "j",
                                     "k",  "l",  "m",  "n",  "p",  "r",  "s",  "t",  "v",
                                     "w",  "z",  "br", "cr", "dr", "fl", "gr", "pl", "pr",
                                     "sh", "st", "th", "tr", "ch", "sl", "qu"};
static const char* const nuclei[] = {"a", "e",  "i",  "o",  "u",  "a",  "e",  "i",
                                     "o", "ai", "ea", "ee", "oo", "ou", "ie", "y"};
static const char* const codas[] = {"",  "",   "",   "",   "n",  "r",  "s",  "t",  "l",
                                    "m", "nd", "nt", "st", "rk", "ck", "ng", "sh", "th"};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static void build_lexicon(void) {
    char* arena = xmalloc((size_t)NSTEMS * (MAX_STEM + 1));
    stem = xmalloc(NSTEMS * sizeof *stem);
    char* at = arena;
    for (size_t i = 0; i < NSTEMS; i++) {
        /* Mostly two or three syllables, like an English word list. */
        static const unsigned syllables[] = {1, 2, 2, 2, 3, 3, 3, 4};
        const unsigned n = syllables[rng(COUNT(syllables))];
        stem[i] = at;
        for (unsigned s = 0; s < n; s++) {
            /* A bare vowel only starts a word: "baaint" reads as noise. */
            const unsigned onset = rng(COUNT(onsets));
            at = stpcpy(at, onsets[s > 0 && onset < 2 ? 2 + onset : onset]);
            at = stpcpy(at, nuclei[rng(COUNT(nuclei))]);
            at = stpcpy(at, codas[rng(COUNT(codas))]);
        }
        *at++ = '\0';
    }
    nstems = NSTEMS;
}

static void need_lexicon(void) {
    if (!stem)
        build_lexicon();
}

/* FNV-1a, 64-bit: cheap, and stable across libcs (unlike anything seeded). */
static uint64_t hash_bytes(const char* s, size_t len) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h;
}

/* ---- check ------------------------------------------------------------- */

/* Fingerprints only, not strings: 8 bytes per form keeps 1.5M forms in
 * 16 MiB, and a false "ok" needs a 64-bit collision. 0 marks an empty slot. */
static uint64_t* spelled;

static void spelled_insert(uint64_t* table, const char* word, size_t len) {
    uint64_t h = hash_bytes(word, len) | 1;
    const size_t mask = ((size_t)1 << SPELLED_BITS) - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        if (table[i] == h)
            return;
        if (table[i] == 0) {
            table[i] = h;
            return;
        }
    }
}

static int spelled_contains(const char* word) {
    const uint64_t h = hash_bytes(word, strlen(word)) | 1;
    const size_t mask = ((size_t)1 << SPELLED_BITS) - 1;
    for (size_t i = h & mask; spelled[i]; i = (i + 1) & mask)
        if (spelled[i] == h)
            return 1;
    return 0;
}

/* Writes stem + suffix into buf, with the usual English spelling changes, and
 * returns the length. Crude, but it is what makes "check" accept "runs". */
static size_t inflect(char* buf, const char* s, const char* suffix) {
    size_t len = strlen(s);
    memcpy(buf, s, len);
    const char last = len ? s[len - 1] : 0;
    if (suffix[0] == 's' && (last == 's' || last == 'x' || last == 'z' || last == 'h'))
        buf[len++] = 'e';
    else if (suffix[0] != 's' && suffix[0] != 'l' && last == 'e')
        len--; /* bake -> baked, baking */
    strcpy(buf + len, suffix);
    return len + strlen(suffix);
}

static uint64_t* build_spelled(void) {
    uint64_t* table = xcalloc((size_t)1 << SPELLED_BITS, sizeof *table);
    static const char* const suffixes[] = {"", "s", "ed", "ing", "ly"};
    char buf[64];
    for (size_t i = 0; i < nstems; i++)
        for (size_t k = 0; k < COUNT(suffixes); k++)
            spelled_insert(table, buf, inflect(buf, stem[i], suffixes[k]));
    return table;
}

static void route_check(const char* word) {
    need_lexicon();
    if (!spelled)
        spelled = build_spelled();
    printf("check %s: %s\n", word, spelled_contains(word) ? "ok" : "misspelled");
}

/* ---- suggest ----------------------------------------------------------- */

/* SymSpell with distance 1: a stem and a query are within one edit only if
 * they share a string obtained by deleting at most one letter from each. The
 * index maps every such string (by hash bucket) to its stems, as chains. */
struct delete_entry {
    uint32_t stem;
    uint32_t next; /* index + 1 into the entry array; 0 ends the chain */
};
static struct delete_entry* deletes;
static uint32_t* delete_heads;

static size_t delete_bucket(const char* s, size_t len) {
    return hash_bytes(s, len) & (((size_t)1 << DELETE_BITS) - 1);
}

static void build_deletes(void) {
    size_t total = 0;
    for (size_t i = 0; i < nstems; i++)
        total += strlen(stem[i]) + 1;
    struct delete_entry* entries = xmalloc(total * sizeof *entries);
    uint32_t* heads = xcalloc((size_t)1 << DELETE_BITS, sizeof *heads);
    size_t used = 0;
    char buf[MAX_WORD];
    for (size_t i = 0; i < nstems; i++) {
        const size_t len = strlen(stem[i]);
        /* d == len is "delete nothing": the stem itself. */
        for (size_t d = 0; d <= len; d++) {
            memcpy(buf, stem[i], d);
            memcpy(buf + d, stem[i] + d + (d < len), len - d - (d < len));
            const size_t b = delete_bucket(buf, len - (d < len));
            entries[used] = (struct delete_entry){(uint32_t)i, heads[b]};
            heads[b] = (uint32_t)++used;
        }
    }
    deletes = entries;
    delete_heads = heads;
}

/* Optimal string alignment distance, capped: we only need to know 0, 1, or
 * "more", and the SymSpell lookup over-approximates. */
static int edit_distance(const char* a, const char* b) {
    const size_t la = strlen(a), lb = strlen(b);
    int d[MAX_WORD + 1][MAX_WORD + 1];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            int best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < best)
                best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[la][lb];
}

struct candidate {
    int distance;
    const char* word;
};

static int by_distance_then_word(const void* pa, const void* pb) {
    const struct candidate *a = pa, *b = pb;
    if (a->distance != b->distance)
        return a->distance - b->distance;
    return strcmp(a->word, b->word);
}

static void route_suggest(const char* word) {
    need_lexicon();
    if (!deletes)
        build_deletes();
    const size_t len = strlen(word);
    /* A chain walk can meet the same stem through several deletions, so
     * collect everything, then sort and drop repeats. */
    struct candidate found[256];
    size_t nfound = 0;
    char buf[MAX_WORD];
    for (size_t d = 0; d <= len; d++) {
        memcpy(buf, word, d);
        memcpy(buf + d, word + d + (d < len), len - d - (d < len));
        for (uint32_t e = delete_heads[delete_bucket(buf, len - (d < len))]; e;
             e = deletes[e - 1].next) {
            const char* s = stem[deletes[e - 1].stem];
            const int dist = edit_distance(word, s);
            if (dist <= 1 && nfound < COUNT(found))
                found[nfound++] = (struct candidate){dist, s};
        }
    }
    qsort(found, nfound, sizeof found[0], by_distance_then_word);
    printf("suggest %s:", word);
    size_t shown = 0;
    for (size_t i = 0; i < nfound && shown < MAX_RESULTS; i++) {
        if (i > 0 && strcmp(found[i].word, found[i - 1].word) == 0)
            continue;
        printf(" %s", found[i].word);
        shown++;
    }
    puts(shown ? "" : " (none)");
}

/* ---- complete / rhyme -------------------------------------------------- */

static int by_string(const void* a, const void* b) {
    return strcmp(*(char* const*)a, *(char* const*)b);
}

/* Returns a sorted, deduplicated copy of words[0..n) and its new length. */
static char** sorted_unique(char** words, size_t n, size_t* out_n) {
    char** sorted = xmalloc(n * sizeof *sorted);
    memcpy(sorted, words, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, by_string);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++)
        if (kept == 0 || strcmp(sorted[i], sorted[kept - 1]) != 0)
            sorted[kept++] = sorted[i];
    *out_n = kept;
    return sorted;
}

/* First index in sorted[0..n) whose word is not less than key (past == 0) or
 * greater than key (past == 1), comparing only the first keylen bytes, or
 * whole words when keylen == 0. */
static size_t lower_bound(char** sorted, size_t n, const char* key, size_t keylen, int past) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        const int c = keylen ? strncmp(sorted[mid], key, keylen) : strcmp(sorted[mid], key);
        if (c < 0 || (past && c == 0))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static char** by_prefix;
static size_t nby_prefix;

static void route_complete(const char* prefix) {
    need_lexicon();
    if (!by_prefix)
        by_prefix = sorted_unique(stem, nstems, &nby_prefix);
    const size_t plen = strlen(prefix);
    const size_t first = lower_bound(by_prefix, nby_prefix, prefix, plen, 0);
    const size_t end = lower_bound(by_prefix, nby_prefix, prefix, plen, 1);
    printf("complete %s: %zu words", prefix, end - first);
    for (size_t i = first; i < end && i < first + MAX_RESULTS; i++)
        printf(" %s", by_prefix[i]);
    putchar('\n');
}

/* by_suffix holds reversed stems, so words ending alike sort together. */
static char** by_suffix;
static size_t nby_suffix;

static void reverse(char* s) {
    for (size_t i = 0, j = strlen(s); i + 1 < j; i++, j--) {
        const char t = s[i];
        s[i] = s[j - 1];
        s[j - 1] = t;
    }
}

static void build_by_suffix(void) {
    char* arena = xmalloc((size_t)NSTEMS * (MAX_STEM + 1));
    char** reversed = xmalloc(nstems * sizeof *reversed);
    char* at = arena;
    for (size_t i = 0; i < nstems; i++) {
        reversed[i] = at;
        at = stpcpy(at, stem[i]) + 1;
        reverse(reversed[i]);
    }
    by_suffix = sorted_unique(reversed, nstems, &nby_suffix);
    free(reversed);
}

static size_t common_prefix(const char* a, const char* b) {
    size_t n = 0;
    while (a[n] && a[n] == b[n])
        n++;
    return n;
}

struct rhyme {
    size_t shared;
    char word[MAX_WORD];
};

static int by_shared_then_word(const void* pa, const void* pb) {
    const struct rhyme *a = pa, *b = pb;
    if (a->shared != b->shared)
        return a->shared < b->shared ? 1 : -1;
    return strcmp(a->word, b->word);
}

static void route_rhyme(const char* word) {
    need_lexicon();
    if (!by_suffix)
        build_by_suffix();
    char key[MAX_WORD];
    strcpy(key, word);
    reverse(key);
    /* The best rhymes are the reversed stems sorted next to the reversed
     * word; a fixed window either side keeps the answer cheap and stable. */
    const size_t at = lower_bound(by_suffix, nby_suffix, key, 0, 0);
    const size_t from = at > RHYME_WINDOW ? at - RHYME_WINDOW : 0;
    const size_t to = at + RHYME_WINDOW < nby_suffix ? at + RHYME_WINDOW : nby_suffix;
    struct rhyme found[2 * RHYME_WINDOW];
    size_t nfound = 0;
    for (size_t i = from; i < to; i++) {
        const size_t shared = common_prefix(key, by_suffix[i]);
        if (shared < 2 || strcmp(key, by_suffix[i]) == 0)
            continue;
        found[nfound].shared = shared;
        strcpy(found[nfound].word, by_suffix[i]);
        reverse(found[nfound].word);
        nfound++;
    }
    qsort(found, nfound, sizeof found[0], by_shared_then_word);
    printf("rhyme %s:", word);
    for (size_t i = 0; i < nfound && i < MAX_RESULTS; i++)
        printf(" %s", found[i].word);
    puts(nfound ? "" : " (none)");
}

/* ---- dispatch ---------------------------------------------------------- */

/* Words are lowercase ASCII letters; anything else would only ever be
 * "misspelled", so it is rejected up front with one error line. */
static int valid_word(const char* route, const char* word, const char* extra) {
    if (!word || extra) {
        printf("error: %s: expected one word\n", route);
        return 0;
    }
    size_t len = 0;
    for (; word[len]; len++) {
        if (word[len] < 'a' || word[len] > 'z') {
            printf("error: %s: '%s' is not a lowercase word\n", route, word);
            return 0;
        }
    }
    if (len >= MAX_WORD) {
        printf("error: %s: word longer than %d letters\n", route, MAX_WORD - 1);
        return 0;
    }
    return 1;
}

static void handle(char* line) {
    const char* route = strtok(line, " \t");
    const char* word = strtok(NULL, " \t");
    const char* extra = strtok(NULL, " \t");
    if (!route)
        puts("error: empty request");
    /* Route names are literals compared in place (not a table) so that
     * presnap's static analysis can read each branch's token. */
    else if (strcmp(route, "check") == 0) {
        if (valid_word(route, word, extra))
            route_check(word);
    } else if (strcmp(route, "suggest") == 0) {
        if (valid_word(route, word, extra))
            route_suggest(word);
    } else if (strcmp(route, "complete") == 0) {
        if (valid_word(route, word, extra))
            route_complete(word);
    } else if (strcmp(route, "rhyme") == 0) {
        if (valid_word(route, word, extra))
            route_rhyme(word);
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
