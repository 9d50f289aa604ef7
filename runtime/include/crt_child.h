/*
 * crt_child.h - crt's private entry point for `crt --crt-child`: the crt
 * executable calls it when it is started as a child process by
 * crt.process.spawn. Not part of the public API (hosts use crt.h only).
 */
#ifndef CRT_CHILD_H
#define CRT_CHILD_H

#ifdef __cplusplus
extern "C" {
#endif

/* main() of a child: argv is {exe, "--crt-child", parent pid}. Runs the
 * function the parent sent as the main task of a new runtime, sends back
 * the results or the error and returns the exit status. */
int crt_child_main(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif
