/*
 * proc.c: process liveness. See proc.h.
 */
#include "base/proc.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

bool kd_pid_running(int64_t pid)
{
    if (pid < 1 || pid > INT_MAX)
        return false;
    if (kill((pid_t)pid, 0) != 0 && errno == ESRCH)
        return false;
    char path[64], text[512];
    snprintf(path, sizeof(path), "/proc/%lld/stat", (long long)pid);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return true; /* no /proc: kill() said it exists */
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    /* "pid (comm) S ...": the state follows the last ')' (comm may hold parentheses). */
    const char *paren = strrchr(text, ')');
    if (paren == NULL || paren[1] != ' ')
        return true;
    return paren[2] != 'Z' && paren[2] != 'X';
}
