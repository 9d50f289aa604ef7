# tests/c/codec.cmake - the codec's C unit test (runtime/codec.c, runtime/buf.c,
# bindings/codec.c), included by tests/tests.cmake.
add_executable(test_codec tests/c/test_codec.c)
target_link_libraries(test_codec PRIVATE crt_bindings crt_engine ${LUA_LINK_LIBRARIES})
target_include_directories(test_codec PRIVATE runtime bindings)
add_test(NAME codec COMMAND test_codec)
set_tests_properties(codec PROPERTIES TIMEOUT 120)
