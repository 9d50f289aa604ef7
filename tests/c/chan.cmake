# C tests of channels shared between threads (also run under ThreadSanitizer).
crt_c_test(chan_threads tests/c/test_chan_threads.c)
