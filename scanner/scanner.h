/*
 * scanner.h: entry point of the scanner worker process.
 */
#ifndef KD_SCANNER_H
#define KD_SCANNER_H

/*
 * Runs the scanner worker until the supervisor tells it to stop or dies. Started by the
 * supervisor as `kdeals worker scanner ...`. Returns the process exit code.
 */
int scanner_main(int argc, char **argv);

#endif
