# tests/c/thread.cmake - C unit tests of the thread pool engine
# (runtime/pool.c), included by tests/c/tests.cmake. Named thread_*: they
# also run under ThreadSanitizer.
crt_c_test(thread_pool tests/c/test_thread_pool.c)
