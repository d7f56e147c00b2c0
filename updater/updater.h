/*
 * updater.h: the updater stage, as the worker runtime runs it (`kdeals worker updater`).
 *
 * The updater keeps stored deals true: it walks the schedule (stalest first), re-checks due
 * deals with light /product requests (stats, no offers, one token per ASIN) in batches of up
 * to [update] batch, applies free refreshes the scanner sends on the REFRESH ring, reschedules
 * every deal it checked, asks the committer for a full fetch (RECOMMIT ring, backed by the
 * pending db) when a change needs fresh offer data, and expires a deal only after it failed
 * expire_after_failures real re-checks in a row. The rules are in updater/rules.h.
 */
#ifndef KD_UPDATER_H
#define KD_UPDATER_H

#include "worker/worker.h"

extern const struct wk_stage updater_stage;

#endif
