# tests/c/thread.cmake - C unit tests of the thread pool engine
# (runtime/pool.c), included by tests/tests.cmake. Labelled tsan: they also
# run under ThreadSanitizer.
crt_c_test(thread_pool tests/c/test_thread_pool.c LABELS tsan)
