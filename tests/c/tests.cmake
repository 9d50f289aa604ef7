# tests/c/tests.cmake - the C unit tests, included by the top-level
# CMakeLists.txt. Each test is one executable run by ctest in its own process
# with a time limit. Tests of one area may live in their own tests/c/<area>.cmake
# (codec.cmake, ...), included below; they call crt_c_test like this file does.
#
# Naming: ctest names start with the area ("buf", "codec_...", "chan_...",
# "thread_..."); scripts/test runs the ones starting with "thread" or "chan"
# under ThreadSanitizer too.

# crt_c_test(name source): an executable built from source, linked to the
# engine (crtcore) and Lua, that may include the internal headers of runtime/.
# It passes when it exits 0.
function(crt_c_test name source)
  add_executable(${name} ${source})
  target_link_libraries(${name} PRIVATE crtcore ${LUA_LINK_LIBRARIES})
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/runtime)
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES TIMEOUT 120)
endfunction()

crt_c_test(buf tests/c/test_buf.c)

# Every other tests/c/*.cmake, in a stable order.
file(GLOB crt_c_test_lists ${CMAKE_CURRENT_LIST_DIR}/*.cmake)
list(REMOVE_ITEM crt_c_test_lists ${CMAKE_CURRENT_LIST_FILE})
list(SORT crt_c_test_lists)
foreach(list_file ${crt_c_test_lists})
  include(${list_file})
endforeach()
