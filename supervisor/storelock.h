/*
 * storelock.h: one store, one instance: the supervisor's lock in the store folder.
 *
 * Two instances on one store would both run and pay twice for the same survivors, so the
 * supervisor takes an exclusive flock on <store>/kdeals.lock before anything else and keeps it
 * for its whole life; the file says who holds it (instance name, supervisor pid, start time),
 * and a second instance is refused with those. The lock is held by an open file description,
 * and every worker inherits a descriptor of it (worker/spawn.h WK_FD_STORE_LOCK) and keeps it
 * until it exits: the kernel releases the lock only when the last of them is closed. So a
 * supervisor killed with -9 leaves the store locked while its workers are still stopping
 * (finishing the batch in flight and writing it), and its successor waits for them rather than
 * starting new workers beside them. The lock file is a plain file: the supervisor still never
 * opens LMDB.
 */
#ifndef KD_SUPERVISOR_STORELOCK_H
#define KD_SUPERVISOR_STORELOCK_H

#include <stddef.h>
#include <stdint.h>

#define SUP_STORE_LOCK_FILE "kdeals.lock"

/*
 * Takes the store lock of STORE_PATH (the folder, created 0700 if missing) for INSTANCE.
 * When the holder is an earlier supervisor of the same instance that is gone (its workers are
 * still stopping), waits up to WAIT_MS for them. Returns the locked descriptor (close-on-exec;
 * hand it to the workers, close it last); -EBUSY when another instance holds the store, or the
 * wait ran out (ERR names the holder: instance, pid, and whether it is still running); another
 * negative errno. ERR (ERRLEN bytes) says what to do.
 */
int sup_store_lock(const char *store_path, const char *instance, int64_t wait_ms, char *err,
                   size_t errlen);

#endif
