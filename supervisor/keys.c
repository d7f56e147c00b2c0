/*
 * keys.c: the supervisor's side of the key segments. See keys.h.
 */
#include "supervisor/keys.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"

#define SWEEP_INTERVAL_NS (1000LL * KD_NS_PER_MS)

_Static_assert(KD_KEYS_MAX == SHM_KEYS_MAX, "the instance segment lists every key");
_Static_assert(KD_KEY_FP_LEN < SHM_KEY_FP_MAX, "a fingerprint fits its slot");

int sup_keys_open(struct sup_keys *sk, const struct kd_keys *keys, const char *instance,
                  const struct cfg *c, struct shm_layout *l, char *err, size_t errlen)
{
    memset(sk, 0, sizeof(*sk));
    sk->owner = getpid();
    struct tb_params tp = {.bucket_minutes = c->tokens_bucket_minutes,
                           .max_deficit_tokens = c->tokens_max_deficit,
                           .minute_ns = c->tokens_minute_ms * KD_NS_PER_MS};
    int64_t now = kd_mono_ns();
    for (size_t i = 0; i < keys->n && i < KD_KEYS_MAX; i++) {
        char fp[KD_KEY_FP_LEN + 1];
        int rc = kd_key_fingerprint(keys->key[i], fp);
        if (rc == 0)
            rc = ks_open(&sk->ks[i], fp, &tp, err, errlen);
        else
            kd_seterr(err, errlen, "cannot compute the fingerprint of API key %zu", i + 1);
        if (rc != 0) {
            sup_keys_close(sk);
            return rc;
        }
        sk->n = (unsigned)i + 1;
        ks_sweep(&sk->ks[i], now, 0); /* an instance killed before us may have left traces */
        sk->member[i] = ks_join(&sk->ks[i], instance, sk->owner, c->tokens_weight, now);
        if (sk->member[i] < 0) {
            kd_seterr(err, errlen,
                      "key %.8s is used by %d running instances already, the most one key can "
                      "serve on a host (%d)",
                      fp, ks_members(&sk->ks[i]), SHM_KEY_MEMBERS);
            sup_keys_close(sk);
            return -ENOSPC;
        }
        const struct shm_tokens *tb = &sk->ks[i].layout->tokens;
        if (tb->minute_ns != tp.minute_ns && tp.minute_ns != 0)
            kd_warn("key %.8s: its bucket was set up with a Keepa minute of %lld ms by another "
                    "instance; this one's [tokens] minute differs and is not used for it",
                    fp, (long long)(tb->minute_ns / KD_NS_PER_MS));
        struct shm_key_ref *ref = &l->keys[i];
        memset(ref, 0, sizeof(*ref));
        snprintf(ref->fingerprint, sizeof(ref->fingerprint), "%s", fp);
        atomic_store(&ref->state, SHM_KEY_OK);
        int others = ks_members(&sk->ks[i]) - 1;
        kd_info("key %.8s: token bucket %s%s, weight %lld", fp, sk->ks[i].name,
                others > 0 ? ", shared with other instances" : "", (long long)c->tokens_weight);
    }
    atomic_store(&l->n_keys, sk->n);
    return 0;
}

int sup_keys_writeoff(struct sup_keys *sk, int64_t pid, int64_t now_ns)
{
    int released = 0;
    for (unsigned i = 0; i < sk->n; i++) {
        int n = tb_writeoff_owner(&sk->ks[i].layout->tokens, pid, now_ns);
        released += n > 0 ? n : 0;
    }
    return released;
}

void sup_keys_sweep(struct sup_keys *sk, int64_t now_ns)
{
    if (now_ns - sk->last_sweep_ns < SWEEP_INTERVAL_NS)
        return;
    sk->last_sweep_ns = now_ns;
    for (unsigned i = 0; i < sk->n; i++)
        ks_sweep(&sk->ks[i], now_ns, SWEEP_INTERVAL_NS / 2);
}

void sup_keys_set_weight(struct sup_keys *sk, int64_t weight)
{
    for (unsigned i = 0; i < sk->n; i++)
        ks_set_weight(&sk->ks[i], sk->member[i], sk->owner, weight);
}

void sup_keys_close(struct sup_keys *sk)
{
    for (unsigned i = 0; i < sk->n; i++) {
        char fp[SHM_KEY_FP_MAX];
        memcpy(fp, sk->ks[i].fingerprint, sizeof(fp));
        ks_leave(&sk->ks[i], sk->member[i], sk->owner);
        if (ks_close(&sk->ks[i]) == 1)
            kd_info("key %.8s: no instance uses it any more: its token bucket is removed", fp);
    }
    sk->n = 0;
}
