/*
 * committer.h: the committer stage, as the worker runtime runs it (`kdeals worker committer`).
 *
 * Survivors (from the scanner) and recommit requests (from the updater) arrive on two rings,
 * backed by the `pending` db; batches of up to [commit] batch go out as one full /product fetch,
 * each product is judged (judge/dealmath.h), and one write transaction per batch stores the
 * outcome. committer.c has the details.
 */
#ifndef KD_COMMITTER_H
#define KD_COMMITTER_H

#include "worker/worker.h"

extern const struct wk_stage committer_stage;

#endif
