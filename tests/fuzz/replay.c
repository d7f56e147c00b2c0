/*
 * replay.c: the main() of every fuzz_NAME_corpus binary (tests/CMakeLists.txt, "fuzz
 * targets"): runs the target's LLVMFuzzerTestOneInput once over every file of the folders (or
 * files) given as arguments, so ctest replays the committed corpus as a regression test in every
 * build. A libFuzzer build links libFuzzer's own main instead of this file.
 *
 * Each file is read whole, whatever its size. Exit 1 when an argument cannot be read or nothing
 * was replayed (an empty or missing corpus folder is a broken test, not a pass); a broken
 * property aborts inside the target.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *prog = "fuzz";

/* Reads PATH whole into a malloc'ed buffer (*LEN bytes); NULL with errno set on failure. */
static uint8_t *read_whole(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    while (buf != NULL) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        uint8_t *more = cap < (SIZE_MAX >> 1) ? realloc(buf, cap * 2) : NULL;
        if (more == NULL) {
            free(buf);
            buf = NULL;
            errno = ENOMEM;
            break;
        }
        buf = more;
        cap *= 2;
    }
    if (buf != NULL && ferror(f)) {
        free(buf);
        buf = NULL;
        errno = EIO;
    }
    fclose(f);
    *len = n;
    return buf;
}

/* Replays the file PATH; counts it in *COUNT. Returns 0, or 1 when it cannot be read. */
static int replay_file(const char *path, unsigned *count)
{
    size_t len = 0;
    uint8_t *buf = read_whole(path, &len);
    if (buf == NULL) {
        fprintf(stderr, "%s: %s: %s\n", prog, path, strerror(errno));
        return 1;
    }
    LLVMFuzzerTestOneInput(buf, len);
    free(buf);
    (*count)++;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 0 && argv[0] != NULL) {
        const char *slash = strrchr(argv[0], '/');
        prog = slash != NULL ? slash + 1 : argv[0];
    }
    unsigned count = 0;
    int bad = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "%s: %s: %s\n", prog, argv[i], strerror(errno));
            bad = 1;
            continue;
        }
        if (!S_ISDIR(st.st_mode)) {
            bad |= replay_file(argv[i], &count);
            continue;
        }
        DIR *dir = opendir(argv[i]);
        if (dir == NULL) {
            fprintf(stderr, "%s: %s: %s\n", prog, argv[i], strerror(errno));
            bad = 1;
            continue;
        }
        struct dirent *de;
        while ((de = readdir(dir)) != NULL) {
            if (de->d_name[0] == '.')
                continue;
            char path[4096];
            int w = snprintf(path, sizeof(path), "%s/%s", argv[i], de->d_name);
            if (w < 0 || (size_t)w >= sizeof(path)) {
                fprintf(stderr, "%s: %s/%s: path too long\n", prog, argv[i], de->d_name);
                bad = 1;
                continue;
            }
            bad |= replay_file(path, &count);
        }
        closedir(dir);
    }
    printf("%s: %u inputs replayed\n", prog, count);
    return bad || count == 0 ? 1 : 0;
}
