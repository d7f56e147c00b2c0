/*
 * tracking.c: per-key trackings and notifications (see tracking.h). Shapes follow Keepa's Java
 * client (Tracking, TrackingRequest, Notification); docs/keepa-api.md §2.6 lists the fields.
 */
#include "sim/tracking.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_MAX      80
#define META_MAX     501
#define NCSV_MAX     20 /* past notifications kept in a tracking's notificationCSV */
#define NOTIFY_TYPES 7  /* Tracking.NotificationType: EMAIL ... API (5) ... MOBILE_APP */
#define NT_API       5

struct threshold {
    int domain, csv_type, is_drop;
    int64_t value;
};

struct notify_if {
    int domain, csv_type, type;
};

struct track {
    char key[KEY_MAX], asin[11];
    int64_t create, ttl_hours;
    int expire_notify, main_domain, update_interval, individual_interval;
    int n_thr, n_nif, n_ncsv;
    struct threshold thr[SIM_TRACK_THRESHOLDS];
    struct notify_if nif[SIM_TRACK_NOTIFY_IF];
    unsigned char ntype[NOTIFY_TYPES];
    char meta[META_MAX];
    int64_t ncsv[NCSV_MAX][5]; /* [domain, csvType, notificationType, cause, time] */
};

struct note {
    char key[KEY_MAX], asin[11];
    int64_t create;
    int domain, csv_type, cause, read;
    int64_t prices[SIM_CSV_TYPES];
    unsigned char via[NOTIFY_TYPES];
    char meta[META_MAX];
};

struct hook {
    char key[KEY_MAX];
    char url[512];
};

struct sim_tracking {
    pthread_mutex_t mu;
    struct track *tracks;
    size_t n, cap;
    struct note *notes; /* oldest first */
    size_t nn, ncap;
    struct hook *hooks;
    size_t nh;
};

struct sim_tracking *sim_tracking_new(void)
{
    struct sim_tracking *t = calloc(1, sizeof(*t));
    if (t != NULL)
        pthread_mutex_init(&t->mu, NULL);
    return t;
}

void sim_tracking_free(struct sim_tracking *t)
{
    if (t == NULL)
        return;
    pthread_mutex_destroy(&t->mu);
    free(t->tracks);
    free(t->notes);
    free(t->hooks);
    free(t);
}

/* ---------- store (caller holds mu) ---------- */

static struct track *find(struct sim_tracking *t, const char *key, const char *asin)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->tracks[i].key, key) == 0 && strcmp(t->tracks[i].asin, asin) == 0)
            return &t->tracks[i];
    return NULL;
}

static void remove_at(struct sim_tracking *t, size_t i)
{
    t->tracks[i] = t->tracks[--t->n];
}

/* Appends a notification of tracking TR (its product at NOW is P). */
static void add_note(struct sim_tracking *t, struct track *tr, const struct sim_product *p,
                     int csv_type, int cause, int64_t now)
{
    if (t->nn == t->ncap) {
        if (t->ncap >= SIM_TRACK_NOTES_MAX) { /* full: drop the oldest */
            memmove(t->notes, t->notes + 1, (t->nn - 1) * sizeof(*t->notes));
            t->nn--;
        } else {
            size_t nc = t->ncap ? t->ncap * 2 : 64;
            struct note *nn = realloc(t->notes, nc * sizeof(*nn));
            if (nn == NULL)
                return;
            t->notes = nn;
            t->ncap = nc;
        }
    }
    struct note *n = &t->notes[t->nn++];
    memset(n, 0, sizeof(*n));
    memcpy(n->key, tr->key, sizeof(n->key));
    memcpy(n->asin, tr->asin, sizeof(n->asin));
    n->create = now;
    n->domain = tr->main_domain;
    n->csv_type = csv_type;
    n->cause = cause;
    for (int i = 0; i < SIM_CSV_TYPES; i++)
        n->prices[i] = p != NULL ? p->cur[i] : -1;
    memcpy(n->via, tr->ntype, sizeof(n->via));
    if (!tr->ntype[NT_API])
        n->via[NT_API] = 1; /* the API pull is how it reaches anyone here */
    memcpy(n->meta, tr->meta, sizeof(n->meta));
    if (tr->n_ncsv == NCSV_MAX) {
        memmove(tr->ncsv, tr->ncsv + 1, (NCSV_MAX - 1) * sizeof(tr->ncsv[0]));
        tr->n_ncsv--;
    }
    int64_t *e = tr->ncsv[tr->n_ncsv++];
    e[0] = tr->main_domain, e[1] = csv_type, e[2] = NT_API, e[3] = cause, e[4] = now;
}

/* Drops the expired trackings of KEY (all keys when NULL), notifying where asked. */
static void expire(struct sim_tracking *t, const char *key, int64_t now)
{
    for (size_t i = 0; i < t->n;) {
        struct track *tr = &t->tracks[i];
        if ((key == NULL || strcmp(tr->key, key) == 0) && tr->ttl_hours > 0 &&
            now >= tr->create + tr->ttl_hours * 60) {
            if (tr->expire_notify)
                add_note(t, tr, NULL, -1, 0, now); /* EXPIRED */
            remove_at(t, i);
            continue;
        }
        i++;
    }
}

/* ---------- JSON ---------- */

static void render_track(struct sim_buf *b, const struct track *tr)
{
    sim_buf_puts(b, "{\"asin\":");
    sim_buf_str(b, tr->asin);
    sim_buf_printf(b,
                   ",\"createDate\":%lld,\"ttl\":%lld,\"expireNotify\":%s,\"mainDomainId\":%d,"
                   "\"thresholdValues\":[",
                   (long long)tr->create, (long long)tr->ttl_hours,
                   tr->expire_notify ? "true" : "false", tr->main_domain);
    for (int i = 0; i < tr->n_thr; i++) {
        const struct threshold *h = &tr->thr[i];
        sim_buf_printf(b,
                       "%s{\"thresholdValueCSV\":[%lld,%lld],\"domain\":%d,\"csvType\":%d,"
                       "\"isDrop\":%s,\"minDeltaAbsolute\":null,\"minDeltaPercentage\":null,"
                       "\"deltasAreBetweenNotifications\":false}",
                       i ? "," : "", (long long)tr->create, (long long)h->value, h->domain,
                       h->csv_type, h->is_drop ? "true" : "false");
    }
    sim_buf_puts(b, "],\"notifyIf\":[");
    for (int i = 0; i < tr->n_nif; i++)
        sim_buf_printf(b, "%s{\"domain\":%d,\"csvType\":%d,\"notifyIfType\":%d}", i ? "," : "",
                       tr->nif[i].domain, tr->nif[i].csv_type, tr->nif[i].type);
    sim_buf_puts(b, "],\"notificationType\":[");
    for (int i = 0; i < NOTIFY_TYPES; i++)
        sim_buf_puts(b, tr->ntype[i] ? (i ? ",true" : "true") : (i ? ",false" : "false"));
    sim_buf_puts(b, "],\"notificationCSV\":[");
    for (int i = 0; i < tr->n_ncsv; i++)
        for (int k = 0; k < 5; k++)
            sim_buf_printf(b, "%s%lld", i || k ? "," : "", (long long)tr->ncsv[i][k]);
    sim_buf_printf(b,
                   "],\"individualNotificationInterval\":%d,\"isActive\":true,"
                   "\"updateInterval\":%d,\"metaData\":",
                   tr->individual_interval, tr->update_interval);
    if (tr->meta[0])
        sim_buf_str(b, tr->meta);
    else
        sim_buf_puts(b, "null");
    sim_buf_putc(b, '}');
}

static void render_note(struct sim_buf *b, const struct sim_catalog *c, const struct note *n)
{
    char title[160] = "";
    int64_t idx = sim_catalog_resolve(c, n->asin);
    if (idx >= 0)
        sim_catalog_title(c, idx, title, sizeof(title));
    sim_buf_puts(b, "{\"asin\":");
    sim_buf_str(b, n->asin);
    sim_buf_puts(b, ",\"title\":");
    sim_buf_str(b, title);
    sim_buf_printf(b,
                   ",\"image\":\"41Sim%06lldL.jpg\",\"createDate\":%lld,\"domainId\":%d,"
                   "\"notificationDomainId\":%d,\"csvType\":%d,\"trackingNotificationCause\":%d,"
                   "\"currentPrices\":[",
                   (long long)((idx >= 0 ? idx : 0) % 1000000), (long long)n->create, n->domain,
                   n->domain, n->csv_type, n->cause);
    for (int i = 0; i < SIM_CSV_TYPES; i++)
        sim_buf_printf(b, "%s%lld", i ? "," : "", (long long)n->prices[i]);
    sim_buf_puts(b, "],\"sentNotificationVia\":[");
    for (int i = 0; i < NOTIFY_TYPES; i++)
        sim_buf_puts(b, n->via[i] ? (i ? ",true" : "true") : (i ? ",false" : "false"));
    sim_buf_puts(b, "],\"metaData\":");
    if (n->meta[0])
        sim_buf_str(b, n->meta);
    else
        sim_buf_puts(b, "null");
    sim_buf_putc(b, '}');
}

static yajl_val member(yajl_val o, const char *key)
{
    if (!YAJL_IS_OBJECT(o))
        return NULL;
    for (size_t i = 0; i < o->u.object.len; i++)
        if (strcmp(o->u.object.keys[i], key) == 0)
            return o->u.object.values[i];
    return NULL;
}

static int64_t int_or(yajl_val v, int64_t dflt)
{
    if (YAJL_IS_INTEGER(v))
        return YAJL_GET_INTEGER(v);
    if (YAJL_IS_DOUBLE(v))
        return (int64_t)YAJL_GET_DOUBLE(v);
    if (YAJL_IS_STRING(v)) {
        int64_t n;
        if (sim_parse_i64(v->u.string, &n) == 0)
            return n;
    }
    return dflt;
}

static int bool_of(yajl_val v)
{
    return YAJL_IS_TRUE(v) || int_or(v, 0) != 0;
}

/* Reads one TrackingRequest O into TR (ASIN, settings); 0 or -EINVAL with a reason. */
static int parse_request(yajl_val o, struct track *tr, int *ttl_given, char *err, size_t errsz)
{
    memset(tr, 0, sizeof(*tr));
    yajl_val v = member(o, "asin");
    if (!YAJL_IS_STRING(v) || !sim_asin_wellformed(v->u.string)) {
        snprintf(err, errsz, "every tracking needs a well-formed asin");
        return -EINVAL;
    }
    memcpy(tr->asin, v->u.string, 11);
    int64_t ttl = int_or(member(o, "ttl"), 24 * 365 * 2);
    *ttl_given = (int)(ttl < 0 ? -1 : 1);
    tr->ttl_hours = ttl < 0 ? -ttl : ttl;
    tr->expire_notify = bool_of(member(o, "expireNotify"));
    tr->main_domain = (int)int_or(member(o, "mainDomainId"), 1);
    tr->update_interval = (int)int_or(member(o, "updateInterval"), 1);
    tr->individual_interval = (int)int_or(member(o, "individualNotificationInterval"), -1);
    if (tr->main_domain < 1 || tr->main_domain > 12 || tr->main_domain == 7 ||
        tr->update_interval < 0 || tr->update_interval > 25) {
        snprintf(err, errsz, "mainDomainId must be a Keepa domain, updateInterval 0..25");
        return -EINVAL;
    }
    v = member(o, "metaData");
    if (YAJL_IS_STRING(v)) {
        if (strlen(v->u.string) >= META_MAX) {
            snprintf(err, errsz, "metaData is longer than 500 characters");
            return -EINVAL;
        }
        snprintf(tr->meta, sizeof(tr->meta), "%s", v->u.string);
    }
    v = member(o, "thresholdValues");
    for (size_t i = 0; YAJL_IS_ARRAY(v) && i < v->u.array.len; i++) {
        yajl_val x = v->u.array.values[i];
        if (tr->n_thr >= SIM_TRACK_THRESHOLDS)
            break;
        struct threshold *h = &tr->thr[tr->n_thr++];
        h->value = int_or(member(x, "thresholdValue"), -1);
        h->domain = (int)int_or(member(x, "domain"), tr->main_domain);
        h->csv_type = (int)int_or(member(x, "csvType"), 1);
        h->is_drop = member(x, "isDrop") == NULL || bool_of(member(x, "isDrop"));
    }
    v = member(o, "notifyIf");
    for (size_t i = 0; YAJL_IS_ARRAY(v) && i < v->u.array.len; i++) {
        yajl_val x = v->u.array.values[i];
        if (tr->n_nif >= SIM_TRACK_NOTIFY_IF)
            break;
        struct notify_if *f = &tr->nif[tr->n_nif++];
        f->domain = (int)int_or(member(x, "domain"), tr->main_domain);
        f->csv_type = (int)int_or(member(x, "csvType"), 1);
        f->type = (int)int_or(member(x, "notifyIfType"), 0);
    }
    v = member(o, "notificationType");
    for (size_t i = 0; YAJL_IS_ARRAY(v) && i < v->u.array.len && i < NOTIFY_TYPES; i++)
        tr->ntype[i] = (unsigned char)bool_of(v->u.array.values[i]);
    if (!YAJL_IS_ARRAY(v))
        tr->ntype[NT_API] = 1;
    return 0;
}

/* ---------- requests ---------- */

static unsigned add(struct sim_tracking *t, const char *key, int64_t now, const char *json,
                    size_t len, struct sim_buf *out, int64_t *cost, char *err, size_t errsz)
{
    int rc;
    yajl_val root = sim_json_parse(json, len, 0, err, errsz, &rc);
    if (root == NULL)
        return 400;
    size_t n = YAJL_IS_ARRAY(root) ? root->u.array.len : 1;
    if (n == 0 || n > SIM_TRACK_BATCH) {
        yajl_tree_free(root);
        snprintf(err, errsz, "add takes 1 to %d trackings", SIM_TRACK_BATCH);
        return 400;
    }
    struct track *batch = calloc(n, sizeof(*batch));
    int *ttl_given = calloc(n, sizeof(*ttl_given));
    unsigned status = 200;
    if (batch == NULL || ttl_given == NULL) {
        snprintf(err, errsz, "out of memory");
        status = 400;
        goto done;
    }
    for (size_t i = 0; i < n; i++)
        if (parse_request(YAJL_IS_ARRAY(root) ? root->u.array.values[i] : root, &batch[i],
                          &ttl_given[i], err, errsz) != 0) {
            status = 400;
            goto done;
        }
    pthread_mutex_lock(&t->mu);
    expire(t, key, now);
    sim_buf_puts(out, "\"trackings\":[");
    for (size_t i = 0; i < n; i++) {
        struct track *tr = find(t, key, batch[i].asin);
        if (tr == NULL) {
            if (t->n >= SIM_TRACK_MAX)
                continue;
            if (t->n == t->cap) {
                size_t nc = t->cap ? t->cap * 2 : 64;
                struct track *nt = realloc(t->tracks, nc * sizeof(*nt));
                if (nt == NULL)
                    continue;
                t->tracks = nt;
                t->cap = nc;
            }
            tr = &t->tracks[t->n++];
            *tr = batch[i];
            tr->create = now;
        } else { /* an update keeps the creation date, and its ttl when asked to */
            int64_t create = tr->create, ttl = tr->ttl_hours;
            int n_ncsv = tr->n_ncsv;
            int64_t ncsv[NCSV_MAX][5];
            memcpy(ncsv, tr->ncsv, sizeof(ncsv));
            *tr = batch[i];
            tr->create = create;
            if (ttl_given[i] < 0)
                tr->ttl_hours = ttl;
            tr->n_ncsv = n_ncsv;
            memcpy(tr->ncsv, ncsv, sizeof(ncsv));
        }
        snprintf(tr->key, sizeof(tr->key), "%s", key);
        render_track(out, tr);
        sim_buf_putc(out, ',');
        *cost += 1;
    }
    sim_buf_uncomma(out);
    sim_buf_puts(out, "],");
    pthread_mutex_unlock(&t->mu);
done:
    free(batch);
    free(ttl_given);
    yajl_tree_free(root);
    return status;
}

unsigned sim_tracking_request(struct sim_tracking *t, const struct sim_catalog *c, const char *key,
                              int64_t now, sim_param_fn get, void *get_ctx, const char *body,
                              size_t body_len, struct sim_buf *out, int64_t *cost, char *err,
                              size_t errsz)
{
    const char *type = get(get_ctx, "type"), *asin = get(get_ctx, "asin");
    *cost = 0;
    if (key == NULL)
        key = "";
    if (type == NULL || *type == '\0') {
        snprintf(err, errsz,
                 "type is required: add, get, list, remove, removeAll, notification "
                 "or webhook");
        return 400;
    }
    if (strcmp(type, "add") == 0) {
        const char *json = get(get_ctx, "tracking");
        size_t len = json != NULL ? strlen(json) : 0;
        if (json == NULL || *json == '\0') {
            json = body;
            len = body_len;
        }
        return add(t, key, now, json, len, out, cost, err, errsz);
    }
    unsigned status = 200;
    pthread_mutex_lock(&t->mu);
    expire(t, key, now);
    if (strcmp(type, "get") == 0) {
        struct track *tr = asin != NULL ? find(t, key, asin) : NULL;
        if (asin == NULL) {
            snprintf(err, errsz, "get needs asin");
            status = 400;
        } else {
            sim_buf_puts(out, "\"trackings\":[");
            if (tr != NULL)
                render_track(out, tr);
            sim_buf_puts(out, "],");
        }
    } else if (strcmp(type, "list") == 0) {
        const char *ao = get(get_ctx, "asins-only");
        int asins_only = ao != NULL && strcmp(ao, "1") == 0;
        sim_buf_puts(out, asins_only ? "\"asinList\":[" : "\"trackings\":[");
        for (size_t i = 0; i < t->n; i++) {
            if (strcmp(t->tracks[i].key, key) != 0)
                continue;
            if (asins_only)
                sim_buf_str(out, t->tracks[i].asin);
            else
                render_track(out, &t->tracks[i]);
            sim_buf_putc(out, ',');
        }
        sim_buf_uncomma(out);
        sim_buf_puts(out, "],");
    } else if (strcmp(type, "remove") == 0) {
        if (asin == NULL) {
            snprintf(err, errsz, "remove needs asin");
            status = 400;
        } else {
            for (size_t i = 0; i < t->n; i++)
                if (strcmp(t->tracks[i].key, key) == 0 && strcmp(t->tracks[i].asin, asin) == 0) {
                    remove_at(t, i);
                    break;
                }
        }
    } else if (strcmp(type, "removeAll") == 0) {
        for (size_t i = 0; i < t->n;)
            if (strcmp(t->tracks[i].key, key) == 0)
                remove_at(t, i);
            else
                i++;
    } else if (strcmp(type, "notification") == 0) {
        const char *since_s = get(get_ctx, "since"), *revise_s = get(get_ctx, "revise");
        int64_t since = 0;
        if (since_s != NULL && *since_s)
            sim_parse_i64(since_s, &since);
        int revise = revise_s != NULL && strcmp(revise_s, "1") == 0;
        sim_buf_puts(out, "\"notifications\":[");
        for (size_t i = 0; i < t->nn; i++) {
            struct note *n = &t->notes[i];
            if (strcmp(n->key, key) != 0 || n->create < since || (n->read && !revise))
                continue;
            render_note(out, c, n);
            sim_buf_putc(out, ',');
            n->read = 1;
        }
        sim_buf_uncomma(out);
        sim_buf_puts(out, "],");
    } else if (strcmp(type, "webhook") == 0) {
        const char *url = get(get_ctx, "url");
        size_t i = 0;
        while (i < t->nh && strcmp(t->hooks[i].key, key) != 0)
            i++;
        if (i == t->nh) {
            struct hook *nh = realloc(t->hooks, (t->nh + 1) * sizeof(*nh));
            if (nh != NULL) {
                t->hooks = nh;
                memset(&t->hooks[t->nh], 0, sizeof(*nh));
                snprintf(t->hooks[t->nh].key, KEY_MAX, "%s", key);
                t->nh++;
            }
        }
        if (i < t->nh)
            snprintf(t->hooks[i].url, sizeof(t->hooks[i].url), "%s", url ? url : "");
    } else {
        snprintf(err, errsz,
                 "type must be add, get, list, remove, removeAll, notification or "
                 "webhook");
        status = 400;
    }
    pthread_mutex_unlock(&t->mu);
    return status;
}

int sim_tracking_notify(struct sim_tracking *t, const struct sim_catalog *c, const char *key,
                        const char *asin, int csv_type, int cause, int64_t now)
{
    int64_t idx = sim_catalog_resolve(c, asin);
    struct sim_product *p = idx >= 0 ? malloc(sizeof(*p)) : NULL;
    if (p != NULL)
        sim_catalog_product(c, idx, now, p);
    int raised = 0;
    pthread_mutex_lock(&t->mu);
    expire(t, key, now);
    for (size_t i = 0; i < t->n; i++) {
        struct track *tr = &t->tracks[i];
        if (strcmp(tr->asin, asin) != 0 || (key != NULL && strcmp(tr->key, key) != 0))
            continue;
        int type = csv_type >= 0 ? csv_type : tr->n_thr > 0 ? tr->thr[0].csv_type : 1;
        add_note(t, tr, p, type, cause, now);
        raised++;
    }
    pthread_mutex_unlock(&t->mu);
    free(p);
    return raised;
}
