/* A tiny script library: table_routes.c uses it as a library whose bitcode
 * the analysis may not have. A script is a string of one-letter ops applied
 * to the request's argument; vm_compile keeps the compiled script inside
 * the VM and returns a handle to it (like luaL_ref). */
#ifndef MINIVM_H
#define MINIVM_H

#include <stddef.h>

#define VM_NOREF (-2)

struct vm;

struct vm* vm_new(void);
int vm_compile(struct vm* vm, const char* script);
void vm_define(struct vm* vm, const char* name, long value);
size_t vm_run(struct vm* vm, int ref, const char* arg, char* out, size_t cap);

#endif
