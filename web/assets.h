/*
 * assets.h: the dashboard's page, served from the binary.
 *
 * web/static/ holds the page as plain HTML, CSS and JavaScript, written by hand: no build
 * tool, no third-party asset. At build time web/embed.cmake turns each file into a byte array
 * of the generated assets.c in the build folder, so the running binary needs no file of its
 * own and serves exactly what was built.
 */
#ifndef KD_WEB_ASSETS_H
#define KD_WEB_ASSETS_H

#include <stddef.h>

struct web_asset {
    const char *path; /* "/", "/app.js", ... */
    const char *type; /* Content-Type */
    const unsigned char *data;
    size_t len;
};

/* The asset served at PATH ("/" is index.html), or NULL. */
const struct web_asset *web_asset_find(const char *path);

#endif
