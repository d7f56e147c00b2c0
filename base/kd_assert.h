/*
 * kd_assert.h: the one way kdeals aborts.
 *
 * KD_ASSERT is for broken invariants only, never for bad input or failed system calls:
 * those return a negative errno-style code. It is always on (release builds too), prints the
 * file, line, expression and an optional formatted explanation, then abort()s so a core file
 * or the sanitizer shows the stack.
 */
#ifndef KD_ASSERT_H
#define KD_ASSERT_H

#include <stdio.h>
#include <stdlib.h>

#define KD_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (__builtin_expect(!(cond), 0)) {                                                        \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* KD_ASSERTF(cond, fmt, ...): as KD_ASSERT, and prints the values that broke the invariant. */
#define KD_ASSERTF(cond, ...)                                                                      \
    do {                                                                                           \
        if (__builtin_expect(!(cond), 0)) {                                                        \
            fprintf(stderr, "%s:%d: assertion failed: %s: ", __FILE__, __LINE__, #cond);           \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define KD_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
