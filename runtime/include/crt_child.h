/*
 * crt_child.h - PRIVATE: how the crt executable becomes a child process of
 * crt.process.spawn. NOT part of the public API (crt.h is): no stability
 * promise, not for hosts to include; only cli/main.c (which dispatches the
 * flag), the process engine (runtime/proc.c, which starts children with it)
 * and bindings/process_child.c (which implements crt_child_main) use it.
 *
 * Loop thread of the child (crt_child_main is its main()).
 *
 * A child is the crt executable started as
 *     <crt> CRT_CHILD_FLAG <parent pid>
 * with a socket to its parent on CRT_CHILD_FD; see docs/processes.md.
 */
#ifndef CRT_CHILD_H
#define CRT_CHILD_H

/* The private flag of the crt command line that makes it a child. */
#define CRT_CHILD_FLAG "--crt-child"
/* The descriptor of the socket to the parent in a child. */
#define CRT_CHILD_FD 3

/* main() of a child: argv is {exe, CRT_CHILD_FLAG, parent pid}. Reads the
 * function and its arguments from CRT_CHILD_FD, runs them as the main task
 * of a new runtime, sends back the results or the error and returns the
 * exit status. */
int crt_child_main(int argc, char **argv);

#endif
