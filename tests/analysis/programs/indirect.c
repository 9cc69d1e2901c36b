/* Recursion (mutual and self) and calls through a table of function
 * pointers: the estimate must stay finite and spread the indirect call over
 * the table's targets. */
#include <stdio.h>
#include <stdlib.h>

static long fib(long n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }
static int is_odd(unsigned n);
static int is_even(unsigned n) { return n == 0 ? 1 : is_odd(n - 1); }
static int is_odd(unsigned n) { return n == 0 ? 0 : is_even(n - 1); }

static long op_fib(long x) { return fib(x % 30); }
static long op_even(long x) { return is_even((unsigned)x % 1000); }
static long op_neg(long x) { return -x; }
static long (*const ops[])(long) = {op_fib, op_even, op_neg};

int main(void) {
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        long x = atol(line);
        printf("%ld\n", ops[(unsigned long)x % 3](x));
    }
    return 0;
}
