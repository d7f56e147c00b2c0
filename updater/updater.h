/*
 * updater.h: entry point of the updater worker process.
 */
#ifndef KD_UPDATER_H
#define KD_UPDATER_H

/*
 * Runs the updater worker until the supervisor tells it to stop or dies. Started by the
 * supervisor as `kdeals worker updater ...`. Returns the process exit code.
 */
int updater_main(int argc, char **argv);

#endif
