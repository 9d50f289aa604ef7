# tests/c/process.cmake - C tests of child processes (runtime/ipc.c,
# runtime/proc.c, bindings/process.c), included by tests/tests.cmake, and
# the crash library the process specs load in a child (build/crashlib.so).

# The frame reader and the batching writer over a socket pair.
crt_c_test(process_frames tests/c/test_process_frames.c ENGINE)

# crt.process.spawn from an embedding host: a good, a wrong and a fake
# executable path (crt_config.exe_path).
crt_c_test(process_exe tests/c/test_process_exe.c)
target_compile_definitions(process_exe PRIVATE CRT_TEST_EXE="$<TARGET_FILE:crt>")
add_dependencies(process_exe crt)

# A Lua C module that crashes on purpose (tests/spec/process_*_spec.lua).
# No sanitizer: the crash must be a plain SIGSEGV, not a sanitizer report.
add_library(crashlib MODULE tests/c/crashlib.c)
target_include_directories(crashlib PRIVATE ${LUA_INCLUDE_DIRS})
target_compile_options(crashlib PRIVATE -fno-sanitize=all)
set_target_properties(crashlib PROPERTIES PREFIX "" LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
