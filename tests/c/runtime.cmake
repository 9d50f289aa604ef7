# tests/c/runtime.cmake - C unit tests of the runtime, included by
# tests/tests.cmake: the timer heap, the embedding API, the out-of-memory
# sweep, the public header alone (C99, C++11) and the exports of the shared
# libraries.
crt_c_test(timer tests/c/test_timer.c)
crt_c_test(embed_api tests/c/test_embed.c)
crt_c_test(embed_oom tests/c/test_oom.c)
set_tests_properties(embed_oom PROPERTIES TIMEOUT 600)

# crt.h alone in a strict C99 translation unit.
crt_c_test(header_c99 tests/c/test_header_c99.c)
set_target_properties(header_c99 PROPERTIES C_STANDARD 99 C_STANDARD_REQUIRED ON C_EXTENSIONS OFF)
target_compile_options(header_c99 PRIVATE -pedantic-errors)

# ... and as C++11, when a C++ compiler is installed.
include(CheckLanguage)
check_language(CXX)
if(CMAKE_CXX_COMPILER)
  enable_language(CXX)
  add_executable(header_cxx tests/c/test_header_cxx.cpp)
  target_link_libraries(header_cxx PRIVATE crt_bindings crt_engine ${LUA_LINK_LIBRARIES})
  set_target_properties(header_cxx PROPERTIES CXX_STANDARD 11 CXX_STANDARD_REQUIRED ON
                                              CXX_EXTENSIONS OFF)
  get_target_property(cxx_opts header_cxx COMPILE_OPTIONS)
  list(REMOVE_ITEM cxx_opts -Wstrict-prototypes) # C only
  set_target_properties(header_cxx PROPERTIES COMPILE_OPTIONS "${cxx_opts}")
  target_compile_options(header_cxx PRIVATE -pedantic-errors)
  add_test(NAME header_cxx COMMAND header_cxx)
  set_tests_properties(header_cxx PROPERTIES TIMEOUT 60)
endif()

# Only the CRT_API symbols of crt.h leave crt.so and libcrt.so.
add_test(NAME exports
         COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/check_exports.sh
                 ${CMAKE_SOURCE_DIR}/runtime/include/crt.h $<TARGET_FILE:crt_module>
                 $<TARGET_FILE:crt_shared>)
