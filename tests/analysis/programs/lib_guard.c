/* A lazy per-entry text that only a library call sets, through the field's
 * address (asprintf(&e->text, ...) behind !e->text), in a table whose names
 * are inline char arrays, found by a lookup whose result is also NULL when
 * there is no word (w ? find_entry(w) : NULL). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct entry {
    const char name[8];
    char* text;
};

static struct entry entries[] = {{"red", NULL}, {"green", NULL}};

static struct entry* find_entry(const char* w) {
    for (size_t i = 0; i < sizeof entries / sizeof entries[0]; i++)
        if (strcmp(entries[i].name, w) == 0)
            return &entries[i];
    return NULL;
}

static const char* describe(struct entry* e) {
    if (!e->text && asprintf(&e->text, "colour %s", e->name) < 0)
        return NULL;
    return e->text;
}

int main(void) {
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        char* w = strtok(line, " \n");
        struct entry* e = w ? find_entry(w) : NULL;
        const char* text = e ? describe(e) : NULL;
        puts(text ? text : "?");
    }
    return 0;
}
