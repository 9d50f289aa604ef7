# tests/c/chan.cmake - C tests of channels shared between threads, included by
# tests/tests.cmake. Labelled tsan: they also run under ThreadSanitizer.
crt_c_test(chan_threads tests/c/test_chan_threads.c LABELS tsan)
