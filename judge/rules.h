/*
 * rules.h: the seller's rules for the judgement (struct jd_rules), read from the config's
 * [filter], [sell] and [costs] keys. Every stage builds its rules here, so they cannot judge
 * by different rules.
 */
#ifndef KD_JUDGE_RULES_H
#define KD_JUDGE_RULES_H

#include <stdbool.h>

#include "base/config.h"
#include "judge/judge.h"

/*
 * Fills OUT from C. Money keys are hundredths of the marketplace's currency ([keepa] domain):
 * on a marketplace without decimals (yen) they become whole units. C must be valid
 * (cfg_validate): an unparsable list leaves the defaults of jd_rules_default.
 */
void jd_rules_from_cfg(const struct cfg *c, struct jd_rules *out);

/* True when A and B judge differently: a reload that changes one of these keys re-judges. */
bool jd_rules_differ(const struct cfg *a, const struct cfg *b);

#endif
