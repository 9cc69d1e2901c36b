/* The shape of issue 11: routes in a global table of structs { name,
 * script, handle }, found by a loop that compares the request's first word
 * with each entry's name; each route's lazy work is
 *   if (r->ref != VM_NOREF) return; r->ref = vm_compile(vm, r->script);
 * where r points into the table and the compiled script lives inside a
 * library (minivm.c) whose bitcode may not be given. */
#include <stdio.h>
#include <string.h>

#include "minivm.h"

struct route {
    const char* name;
    const char* script;
    int ref;
};

static struct route routes[] = {
    {"shout", "u", VM_NOREF},
    {"mirror", "r", VM_NOREF},
    {"measure", "l", VM_NOREF},
};

static struct vm* vm;

static struct route* find_route(const char* word) {
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (strcmp(routes[i].name, word) == 0)
            return &routes[i];
    return NULL;
}

static void load_route(struct route* r) {
    if (r->ref != VM_NOREF)
        return;
    r->ref = vm_compile(vm, r->script);
}

static void define(const char* name, const char* value) {
    vm_define(vm, name, (long)strlen(value));
}

int main(void) {
    char line[256], out[256];
    vm = vm_new();
    while (fgets(line, sizeof line, stdin)) {
        char* word = strtok(line, " \n");
        char* arg = strtok(NULL, "\n");
        if (!word)
            continue;
        if (strcmp(word, "define") == 0) {
            define(arg ? arg : "", arg ? arg : "");
            puts("ok");
            continue;
        }
        struct route* r = find_route(word);
        if (!r) {
            puts("?");
            continue;
        }
        load_route(r);
        vm_run(vm, r->ref, arg ? arg : "", out, sizeof out);
        puts(out);
    }
    return 0;
}
