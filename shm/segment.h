/*
 * segment.h: the instance's shared memory segment: create, attach, replace, retire.
 *
 * The supervisor creates the segment (/dev/shm/kdeals-<instance>, mode 0600) while holding an
 * exclusive flock on the instance's status file (<run_dir>/<instance>.status), which it keeps
 * for its whole life. That lock is what makes an instance single: a second supervisor fails
 * to take it and is refused with the pid of the first. Because the kernel drops the lock when
 * its holder dies, a supervisor that takes the lock and finds a segment knows the segment is
 * a leftover of a dead predecessor: it marks it retired (so readers still mapping it notice)
 * and replaces it with a new one whose generation is one higher.
 *
 * Creation is two-step: shm_segment_create() maps and formats everything but leaves the
 * header's layout_version at 0; the creator then initialises what it owns (token bucket,
 * config) and calls shm_segment_publish(), which stores the version with release order.
 * Attachers that see version 0 get -EAGAIN and retry.
 *
 * Workers attach read-write, `kdeals stat`/`status` attach read-only (a read-only mapping:
 * they cannot disturb the daemon). A reader calls shm_segment_check() now and then; when it
 * reports the segment replaced or gone, the reader detaches and attaches again.
 *
 * Other local users (docs/operations.md, "Signals, files, systemd"). The run folder must be a
 * real folder of the caller's own that nobody else may write in (shm_run_dir_open checks it,
 * opened without following a link); the status file is opened relative to it, without
 * following a link, and checked once open. A segment is attached only when it belongs to the
 * caller's uid and has mode 0600: a file another user put at /dev/shm/kdeals-<instance> is
 * refused with its owner named, never read. Every position, offset and length read from a
 * segment is checked against its size (shm_layout_check, ring.c), so a corrupt segment makes
 * a reader fail, never read out of bounds.
 *
 * A supervisor is identified by its pid and its start time as /proc/PID/stat gives it (clock
 * ticks since boot), recorded in the header and the status file: a dead supervisor whose pid
 * another process now has, or that is still an unreaped zombie, is dead (shm_proc_alive).
 */
#ifndef KD_SHM_SEGMENT_H
#define KD_SHM_SEGMENT_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "shm/layout.h"

#define SHM_DEFAULT_RING_CAPACITY (1u << 20)

enum shm_access { SHM_READ_ONLY, SHM_READ_WRITE };

struct shm_segment_options {
    const char *instance;                   /* [A-Za-z0-9_.-]{1,47} */
    const char *run_dir;                    /* holds <instance>.status */
    uint64_t ring_capacity[SHM_RING_COUNT]; /* 0: SHM_DEFAULT_RING_CAPACITY */
};

struct shm_segment {
    struct shm_layout *layout; /* the mapping; NULL when not attached */
    size_t size;
    int fd;
    int lock_fd;       /* creator only: the flocked status file, else -1 */
    int run_dir_fd;    /* creator only: the verified run folder, else -1 */
    size_t status_len; /* creator only: bytes of the status file as last written */
    bool writable;
    bool creator;
    uint64_t generation;
    dev_t dev;
    ino_t ino;
    char name[SHM_INSTANCE_MAX + 16]; /* "/kdeals-<instance>" for shm_open */
    char status_path[PATH_MAX];
    char status_name[SHM_INSTANCE_MAX + 16]; /* "<instance>.status" in the run folder */
};

/* Returns true when NAME is a valid instance name. */
bool shm_instance_valid(const char *name);

/*
 * Opens the run folder RUN_DIR (creating its last component with mode 0700 when CREATE) and
 * checks that it is a real folder, not a symbolic link, owned by the caller's effective uid,
 * that neither group nor others may write in. Returns the folder's descriptor (O_DIRECTORY,
 * close-on-exec), or a negative errno with the reason and what to do in ERR: -ENOENT (no such
 * folder), -EPERM (a link, another owner, open to others' writes), -ENOTDIR, -EACCES, ...
 */
int shm_run_dir_open(const char *run_dir, bool create, char *err, size_t errlen);

/*
 * Whether process PID is alive and, when START_TICKS is not 0, is the very process that
 * started at START_TICKS (a later process given the same pid is not). A zombie is dead.
 */
bool shm_proc_alive(int64_t pid, uint64_t start_ticks);

/* The start time of process PID in /proc/PID/stat (clock ticks since boot), 0 when unknown. */
uint64_t shm_proc_start_ticks(int64_t pid);

/*
 * Checks a mapping of SIZE bytes that claims to be a segment: magic, layout version, sizes,
 * ring count, the instance name, and each ring's capacity and data offset (inside the mapping,
 * aligned, not overlapping, the control block agreeing with the header). Returns 0, or
 * -EPROTO (ERR says what is wrong) / -EAGAIN (still being initialised).
 */
int shm_layout_check(const struct shm_layout *l, size_t size, char *err, size_t errlen);

/*
 * Creates (or replaces a dead predecessor's) segment for opt->instance and takes the
 * instance lock. The segment is mapped read-write, formatted (header without version, rings,
 * process table) and not yet visible to attachers: call shm_segment_publish() when the rest
 * is initialised. Returns 0; -EBUSY when another live supervisor holds the instance (ERR
 * names its pid); -EINVAL for a bad instance name or ring capacity; another negative errno
 * for a failed system call. ERR (ERRLEN bytes) receives a one-line reason on failure.
 */
int shm_segment_create(struct shm_segment *seg, const struct shm_segment_options *opt, char *err,
                       size_t errlen);

/* Makes a created segment visible to attachers (stores the layout version, release). */
void shm_segment_publish(struct shm_segment *seg);

/*
 * Attaches to the running instance's segment. Returns 0; -ENOENT when no segment exists (the
 * daemon is not running); -EAGAIN while it is being initialised; -EPROTO for a segment of
 * another layout version or a foreign file (ERR says which); -EPERM for a segment that belongs
 * to another user or has a mode other than 0600 (ERR names the owner); -EACCES; another
 * negative errno. ERR receives a one-line reason on failure.
 */
int shm_segment_attach(struct shm_segment *seg, const char *instance, enum shm_access access,
                       char *err, size_t errlen);

/*
 * As shm_segment_attach, through FD, a descriptor of the segment the caller was handed (a
 * worker's, worker/spawn.h): the segment is used even when its name was removed meanwhile.
 * SEG owns FD afterwards, also on failure (it is closed).
 */
int shm_segment_attach_fd(struct shm_segment *seg, int fd, const char *instance,
                          enum shm_access access, char *err, size_t errlen);

/*
 * Tells an attached process whether its segment is still the instance's current one.
 * Returns 0 if so; -ESTALE when it was retired or replaced by a newer generation (detach
 * and attach again); -ENOENT when the instance's segment is gone.
 */
int shm_segment_check(const struct shm_segment *seg);

/* Unmaps and closes. For the creator, also releases the instance lock (see destroy). */
void shm_segment_detach(struct shm_segment *seg);

/*
 * Creator's clean shutdown: marks the segment retired, unlinks it, records the stopped
 * state in the status file, releases the instance lock and unmaps.
 */
void shm_segment_destroy(struct shm_segment *seg);

/* Start of ring ID's data area in this mapping. */
void *shm_segment_ring_data(const struct shm_segment *seg, enum shm_ring_id id);

/* Creator: rewrites the status file (pid, start time, generation, STATE). 0 or -errno. */
int shm_status_write(struct shm_segment *seg, const char *state);

/*
 * Creator, now and then: when the status file was truncated or rewritten by someone else, it
 * is written again with STATE; when it was removed or replaced, a new one is created, locked
 * and written (if another process holds the new file's lock, the old lock is kept). Returns 1
 * when something was repaired, 0 when nothing needed it, or a negative errno.
 */
int shm_status_repair(struct shm_segment *seg, const char *state);

struct shm_status {
    int64_t pid;
    int64_t start_ms;
    uint64_t start_ticks; /* the supervisor's start in /proc/PID/stat; 0 unknown */
    uint64_t generation;
    char state[32];
    bool locked; /* a live supervisor holds the instance lock */
};

/*
 * Reads <run_dir>/<instance>.status without taking the lock, through the checked run folder
 * (shm_run_dir_open) and without following a link. Returns 0, -ENOENT when the folder or the
 * file does not exist, -EPERM when the folder or the file is not safe (shm_run_dir_open says
 * why), or another negative errno (-EACCES).
 */
int shm_status_read(const char *run_dir, const char *instance, struct shm_status *st);

/*
 * Supervisor only: publishes LEN bytes (the msgpack config) in the double-buffered config
 * slot and bumps its generation with release order. Returns the new generation, or -E2BIG
 * when LEN exceeds SHM_CONFIG_MAX.
 */
int64_t shm_config_publish(struct shm_layout *l, const void *buf, size_t len);

/*
 * Copies the current config into BUF (CAP bytes) and its length into *LEN, retrying while
 * the supervisor publishes concurrently. Returns the generation read (> 0), 0 when nothing
 * was published yet, or -E2BIG / -EAGAIN (the writer kept moving).
 */
int64_t shm_config_read(const struct shm_layout *l, void *buf, size_t cap, size_t *len);

/*
 * Names as shown to operators, from the tables beside the enums in layout.h: roles
 * ("scanner"), process states ("waiting-tokens"; STATE is the slot's raw word, so a value out
 * of range gives "?") and rings ("survivors").
 */
const char *shm_role_name(enum shm_role role);
const char *shm_proc_state_name(uint32_t state);
const char *shm_ring_name(enum shm_ring_id ring);

/* Parses a role name. Returns the role, or -EINVAL. */
int shm_role_parse(const char *name);

#endif
