/*
 * committer.h: entry point of the committer worker process.
 */
#ifndef KD_COMMITTER_H
#define KD_COMMITTER_H

/*
 * Runs the committer worker until the supervisor tells it to stop or dies. Started by the
 * supervisor as `kdeals worker committer ...`. Returns the process exit code.
 */
int committer_main(int argc, char **argv);

#endif
