/*
 * proc.h: whether a process is still running, for the owner tags kept in shared memory and in
 * lock files (token reservations, key members, the store lock's holder).
 */
#ifndef KD_BASE_PROC_H
#define KD_BASE_PROC_H

#include <stdbool.h>
#include <stdint.h>

/*
 * True when PID names a running process: it exists (kill(pid, 0) does not say ESRCH; a process
 * of another user counts as running) and is not a zombie. A zombie holds nothing and will never
 * settle a reservation; where orphans are reaped late (a container whose init does not reap),
 * treating it as alive would keep what it held for good.
 */
bool kd_pid_running(int64_t pid);

#endif
