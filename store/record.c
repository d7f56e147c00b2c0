/*
 * record.c: the lifecycle of a judged-product record. See record.h.
 */
#include "store/record.h"

bool st_verdict_moved(const struct jd_verdict *a, const struct jd_verdict *b)
{
    return a->deal != b->deal || a->sell_cents != b->sell_cents || a->buy_cents != b->buy_cents ||
           a->landed_cents != b->landed_cents || a->profit_cents != b->profit_cents ||
           a->roi_bp != b->roi_bp || a->max_cost_cents != b->max_cost_cents ||
           a->priced != b->priced;
}

enum st_event st_record_judged(struct st_record *r, const struct jd_verdict *v, uint64_t rules_hash,
                               enum st_event event, int64_t now_ms, uint32_t expire_after,
                               int64_t next_check_ms)
{
    bool checked = event == ST_EV_COMMIT || event == ST_EV_RECHECK;
    bool was_deal = r->state == ST_STATE_DEAL || r->state == ST_STATE_FAILING;
    if (checked) {
        if (st_verdict_moved(&r->v, v) || r->last_checked_ms == 0)
            r->last_changed_ms = now_ms;
        r->last_checked_ms = now_ms;
    }
    r->v = *v;
    r->rules_hash = rules_hash;
    r->judged_ms = now_ms;
    enum st_event out = event;
    if (v->deal) {
        if (r->state != ST_STATE_DEAL)
            r->deal_since_ms = now_ms;
        r->state = ST_STATE_DEAL;
        r->check_failures = 0;
        r->expired_ms = 0;
        r->next_check_ms = next_check_ms > 0 ? next_check_ms : now_ms;
    } else if (checked && was_deal) {
        r->check_failures++;
        if (r->check_failures >= (expire_after > 0 ? expire_after : 1)) {
            r->state = ST_STATE_REJECTED;
            r->expired_ms = now_ms;
            r->deal_since_ms = 0;
            r->next_check_ms = 0;
            out = ST_EV_EXPIRE;
        } else {
            r->state = ST_STATE_FAILING;
            r->next_check_ms = next_check_ms > 0 ? next_check_ms : now_ms;
        }
    } else {
        r->state = ST_STATE_REJECTED;
        r->deal_since_ms = 0;
        r->next_check_ms = 0;
    }
    /* A product the seller marked (bought, ignored) is not re-checked: no tokens for it. */
    if (r->mark != ST_MARK_NONE)
        r->next_check_ms = 0;
    r->revision++;
    return out;
}

void st_record_mark(struct st_record *r, unsigned mark, int64_t cost_cents, int32_t qty,
                    int64_t now_ms)
{
    r->mark = (uint8_t)mark;
    r->mark_ms = now_ms;
    r->bought_cost_cents = mark == ST_MARK_BOUGHT ? cost_cents : -1;
    r->bought_qty = mark == ST_MARK_BOUGHT ? qty : 0;
    /* A marked product is the seller's decision made: it costs no more re-checks. Cleared, a
     * deal is checked again soon (its data may be old). */
    if (mark != ST_MARK_NONE)
        r->next_check_ms = 0;
    else if (r->state == ST_STATE_DEAL || r->state == ST_STATE_FAILING)
        r->next_check_ms = r->next_check_ms > 0 ? r->next_check_ms : now_ms;
    r->revision++;
}
