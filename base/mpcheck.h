/*
 * mpcheck.h: refuse msgpack input that would make an unpacker allocate without bound.
 */
#ifndef KD_MPCHECK_H
#define KD_MPCHECK_H

#include <stddef.h>

/*
 * Checks that BUF (LEN bytes) holds exactly one well-formed msgpack object and that no
 * container claims more elements than bytes remain, so unpacking it allocates O(LEN).
 * Returns 0 or -EBADMSG. Any input is safe.
 */
int kd_msgpack_precheck(const void *buf, size_t len);

#endif
