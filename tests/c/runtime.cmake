# tests/c/runtime.cmake - C unit tests of the runtime, included by
# tests/tests.cmake: the timer heap and the embedding API.
crt_c_test(timer tests/c/test_timer.c)
crt_c_test(embed_api tests/c/test_embed.c)
