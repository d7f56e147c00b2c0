/*
 * doc.h: the parts of docs/view.md that are generated from the view's own tables, so the
 * documentation of the vocabulary and of the output fields cannot drift from the code.
 *
 * docs/view.md holds each generated part between two marker lines:
 *
 *     <!-- BEGIN GENERATED vocabulary: kdeals-view-doc --update docs/view.md -->
 *     ...
 *     <!-- END GENERATED vocabulary -->
 *
 * vw_doc_refresh() rewrites those parts from the tables; test_view fails when the committed
 * file differs from its refreshed self, and `kdeals-view-doc --update docs/view.md` fixes it.
 */
#ifndef KD_VIEW_DOC_H
#define KD_VIEW_DOC_H

#include <stdio.h>

/*
 * Writes generated part NAME ("vocabulary": every filter and sort key with its spellings,
 * value and meaning; "fields": every JSON/CSV field with its type, unit and source) to OUT as
 * Markdown. Returns 0, -ENOENT for an unknown NAME, -EIO when OUT failed.
 */
int vw_doc_part(FILE *out, const char *name);

/*
 * Writes TEXT (a Markdown document) to OUT with every generated part between its markers
 * replaced by vw_doc_part(). Returns 0, -EINVAL for a BEGIN marker without its END or naming an
 * unknown part, -EIO when OUT failed.
 */
int vw_doc_refresh(const char *text, FILE *out);

#endif
