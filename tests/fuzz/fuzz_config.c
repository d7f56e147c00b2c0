/*
 * fuzz_config.c: libFuzzer target for the config parser (cfg_load_buffer) and, for every
 * input that parses, the properties the daemon relies on: the result validates, its msgpack
 * form decodes back to the same config (minus the API key), and the printed INI parses back
 * to the same config.
 *
 * Built with -DKD_FUZZ=ON (clang) it is a libFuzzer binary:
 *   ./fuzz_config tests/fuzz/corpus/config
 * Every build also makes fuzz_config_corpus with the replay main() of tests/fuzz/replay.c, and
 * ctest runs it over the seed corpus, so the seeds stay a regression test in every build.
 */
#include "base/config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_config: property violated: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct cfg c, d, e;
    char err[512];
    if (cfg_load_buffer((const char *)data, size, "fuzz.conf", &c, err, sizeof(err)) != 0) {
        check(err[0] != '\0', "an error without a message");
        return 0;
    }
    check(cfg_validate(&c, err, sizeof(err)) == 0, "a loaded config does not validate");

    char *buf = NULL;
    size_t len = 0;
    check(cfg_encode(&c, &buf, &len) == 0, "encode failed");
    check(cfg_decode(buf, len, &d) == 0, "decode of an encoding failed");
    free(buf);
    size_t changed = cfg_diff(&c, &d, NULL, NULL, NULL);
    check(changed == (c.keepa_key[0] != '\0' ? 1u : 0u), "msgpack round trip changed keys");

    if (c.keepa_key[0] == '\0') {
        char *text = NULL;
        size_t tlen = 0;
        FILE *m = open_memstream(&text, &tlen);
        check(m != NULL, "open_memstream");
        cfg_print(&c, m);
        fclose(m);
        int rc = cfg_load_buffer(text, tlen, "printed.conf", &e, err, sizeof(err));
        /* A value near the line limit can print longer than CFG_LINE_MAX once quoted. */
        if (rc != 0 && strstr(err, "line longer than") != NULL) {
            free(text);
            return 0;
        }
        if (rc != 0)
            fprintf(stderr, "%s\n", err);
        check(rc == 0, "printed config does not parse");
        check(cfg_diff(&c, &e, NULL, NULL, NULL) == 0, "print round trip changed keys");
        free(text);
    }
    return 0;
}
