/* The library of table_routes.c (minivm.h). Its own lazy initialiser (the
 * op table) is only visible when its bitcode is linked with the program's. */
#include "minivm.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { kMaxProgs = 16, kMaxVars = 16 };

struct op {
    char code;
    int cost;
};

struct vm {
    char* progs[kMaxProgs];
    int nprogs;
    const char* var_names[kMaxVars];
    long var_values[kMaxVars];
    int nvars;
};

static struct op* optable;

static struct op* build_optable(void) {
    struct op* t = calloc(256, sizeof *t);
    const char* codes = "ulrh";
    for (int i = 0; codes[i]; i++)
        t[(unsigned char)codes[i]] = (struct op){codes[i], i + 1};
    return t;
}

struct vm* vm_new(void) { return calloc(1, sizeof(struct vm)); }

int vm_compile(struct vm* vm, const char* script) {
    if (!optable)
        optable = build_optable();
    if (vm->nprogs == kMaxProgs)
        return VM_NOREF;
    size_t n = strlen(script);
    char* prog = malloc(n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (optable[(unsigned char)script[i]].code)
            prog[k++] = script[i];
    prog[k] = 0;
    vm->progs[vm->nprogs] = prog;
    return vm->nprogs++;
}

void vm_define(struct vm* vm, const char* name, long value) {
    if (vm->nvars < kMaxVars) {
        vm->var_names[vm->nvars] = name;
        vm->var_values[vm->nvars++] = value;
    }
}

size_t vm_run(struct vm* vm, int ref, const char* arg, char* out, size_t cap) {
    if (ref < 0 || ref >= vm->nprogs || cap == 0)
        return 0;
    size_t n = strlen(arg);
    if (n >= cap)
        n = cap - 1;
    memcpy(out, arg, n);
    out[n] = 0;
    for (const char* p = vm->progs[ref]; *p; p++) {
        if (*p == 'u')
            for (size_t i = 0; i < n; i++)
                out[i] = (char)toupper((unsigned char)out[i]);
        else if (*p == 'r')
            for (size_t i = 0; i < n / 2; i++) {
                char c = out[i];
                out[i] = out[n - 1 - i];
                out[n - 1 - i] = c;
            }
        else if (*p == 'l')
            n = (size_t)snprintf(out, cap, "%zu", n);
    }
    return n;
}
