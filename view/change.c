/*
 * change.c: a change of the log as JSON. See change.h.
 */
#include "view/change.h"

#include <errno.h>
#include <string.h>

#include "view/time.h"

static bool text(yajl_gen g, const char *s)
{
    return yajl_gen_string(g, (const unsigned char *)s, strlen(s)) == yajl_gen_status_ok;
}

static bool member_str(yajl_gen g, const char *k, const char *v)
{
    return text(g, k) && text(g, v);
}

static bool member_int(yajl_gen g, const char *k, long long v)
{
    return text(g, k) && yajl_gen_integer(g, v) == yajl_gen_status_ok;
}

int vw_json_change(yajl_gen g, const struct st_change *c, const char *event,
                   const struct st_record *r, const struct vw_out *o)
{
    char iso[40];
    vw_time_iso(c->at_ms, iso, sizeof(iso));
    bool ok = yajl_gen_map_open(g) == yajl_gen_status_ok;
    ok = ok && member_int(g, "seq", (long long)(c->seq & INT64_MAX));
    ok = ok && member_str(g, "event", event != NULL ? event : st_event_name(c->event));
    ok = ok && member_str(g, "asin", c->asin);
    ok = ok && member_int(g, "domain", c->domain);
    ok = ok && member_int(g, "revision", (long long)(c->revision & INT64_MAX));
    ok = ok && member_str(g, "state", st_state_name(c->state));
    ok = ok && member_str(g, "prev_state", st_state_name(c->prev_state));
    ok = ok && member_int(g, "at_ms", c->at_ms);
    ok = ok && member_str(g, "at", iso);
    ok = ok && text(g, "record");
    if (ok && r != NULL)
        ok = vw_json_record(g, r, o) == 0;
    else if (ok)
        ok = yajl_gen_null(g) == yajl_gen_status_ok;
    ok = ok && yajl_gen_map_close(g) == yajl_gen_status_ok;
    return ok ? 0 : -EINVAL;
}
