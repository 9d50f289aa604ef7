/*
 * process.h - child crt processes: crt.process.spawn and crt.process.pool,
 * and the entry point of a child (the crt executable started with the
 * private flag --crt-child). See docs/processes.md.
 *
 * Loop thread only.
 */
#ifndef CRT_PROCESS_H
#define CRT_PROCESS_H

struct lua_State;
struct crt_runtime;

/* The private flag of the crt command line that makes it a child. */
#define CRT_CHILD_FLAG "--crt-child"
/* The descriptor of the pipe to the parent in a child. */
#define CRT_CHILD_FD 3

/* Add spawn and pool to crt.process (creating the table when absent) in the
 * crt table at the top of L's stack. */
void crt_open_process(struct lua_State *L, struct crt_runtime *rt);

/* main() of a child: argv is {exe, CRT_CHILD_FLAG, parent pid}. Reads the
 * function and its arguments from CRT_CHILD_FD, runs them as the main task
 * of a new runtime, sends back the results or the error and returns the
 * exit status. */
int crt_child_main(int argc, char **argv);

#endif
