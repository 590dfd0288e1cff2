/* Shared helpers of the libFuzzer targets: a byte reader over the fuzzer's input and
 * CHECK, which stops the run (a crash libFuzzer records, with the input that made it)
 * when an invariant a header promises does not hold. */
#ifndef FUZZ_H
#define FUZZ_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond) do { if (!(cond)) { \
        fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond); \
        abort(); } } while (0)

struct in {
    const uint8_t *p;
    size_t n;
};

static inline uint64_t take(struct in *in, unsigned bytes)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < bytes; i++) {
        v |= (uint64_t)(in->n ? *in->p : 0) << (8 * i);
        if (in->n) {
            in->p++;
            in->n--;
        }
    }
    return v;
}

#endif
