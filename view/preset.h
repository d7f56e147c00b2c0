/*
 * preset.h: named views in the config, `[view.NAME]` sections (base/config.h, CFG_NAMED_KINDS),
 * used as `kdeals deals --view NAME`.
 *
 * A preset holds keys of the view's vocabulary (filter.h) in their config spelling, the
 * command line's flags without the dashes (`min_roi = 30`, `no_amazon = true`): one vocabulary
 * for the command line, the presets and the web API. Applying a preset sets its keys in a
 * filter as if given on the command line, in the file's order; flags given after `--view`
 * then replace single keys, because setting a key again replaces it. Money is read in the
 * config's marketplace's currency ([keepa] domain).
 *
 * The config checker (vw_preset_checker) is what makes a bad preset an error at load and at
 * reload with the file's line, like any other key: `kdeals` checks the file it loads, and the
 * supervisor checks a reloaded file with the checkers `kdeals` hands it (cli/sections.c). It
 * links no store (library kd_view_vocab), so the supervisor's library stays store-free.
 */
#ifndef KD_VIEW_PRESET_H
#define KD_VIEW_PRESET_H

#include <stddef.h>

#include "base/config.h"
#include "view/filter.h"

/* The checker of [view.NAME] keys for cfg_named_check (see cfg_named_checker). */
extern const struct cfg_named_checker vw_preset_checker;

/*
 * Sets the keys of preset NAME of C in F (in file order). Returns 0; -ENOENT when C has no
 * [view.NAME] (ERR lists the presets there are); -EINVAL when a key does not parse (a config
 * that passed the checker never does), ERR naming file:line, the key and what it allows.
 * ERR has ERRLEN bytes. F is changed only on success.
 */
int vw_preset_apply(const struct cfg *c, const char *name, struct vw_filter *f, char *err,
                    size_t errlen);

#endif
