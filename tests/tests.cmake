# tests/tests.cmake - THE list of crt's tests, included by the top-level
# CMakeLists.txt: every C test and every busted spec file is registered with
# ctest from here, by name (no globbing). A test that is not named here (or in
# a tests/c/<area>.cmake included here by name) does not run: scripts/test
# fails when a tests/spec/*_spec.lua or a tests/c/test_*.c is missing here.
#
# Labels (ctest -L / -LE):
#   spec   a busted spec file (the rest are C tests and checks)
#   tsan   also run under ThreadSanitizer (scripts/test: ctest -L tsan in
#          build-tsan/). C tests get it with `LABELS tsan`; a spec file gets it
#          when one of its describe/it names carries the busted tag #tsan, and
#          in a ThreadSanitizer build its command runs only those (--tags=tsan).
#   lint   a check of the sources (scripts/layers.sh's own test)
#
# A spec runs as `<build>/crt <busted> FILE` from the repository root (busted
# reads its defaults, lpath and output, from .busted there), one file per
# process, never two at once (RUN_SERIAL), with the environment scripts/test
# documents: CRT_BUILD_DIR, CRT_SOURCE_DIR, CRT_SANITIZE, CRT_PRELOAD. Its time
# limit is CRT_SPEC_TIMEOUT seconds (cache variable, default 300), doubled under
# a sanitizer.

# crt_c_test(name source [ENGINE] [LABELS label...]): an executable built
# from source, linked to crt (crt_bindings and crt_engine) and Lua, that may
# include the internal headers of runtime/ (and, without ENGINE, of
# bindings/) and uses tests/c/check.h. With
# ENGINE it is linked to crt_engine alone: a test of the engine that also
# shows the engine links without any bindings object. It passes when it
# exits 0.
function(crt_c_test name source)
  cmake_parse_arguments(arg "ENGINE" "" "LABELS" ${ARGN})
  add_executable(${name} ${source})
  if(arg_ENGINE)
    target_link_libraries(${name} PRIVATE crt_engine ${LUA_LINK_LIBRARIES})
  else()
    target_link_libraries(${name} PRIVATE crt_bindings crt_engine ${LUA_LINK_LIBRARIES})
    target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/bindings)
  endif()
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/runtime)
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES TIMEOUT 120)
  if(arg_LABELS)
    set_tests_properties(${name} PROPERTIES LABELS "${arg_LABELS}")
  endif()
endfunction()

# What the spec tests need: busted, the sanitizer runtime a stock lua5.4 must
# preload (CRT_PRELOAD), the time limit.
find_program(CRT_BUSTED busted)
if(NOT CRT_BUSTED)
  message(WARNING "busted not found (apt-get install lua-busted): the spec tests will fail")
endif()
set(CRT_SPEC_TIMEOUT 300 CACHE STRING "Time limit of one spec file, in seconds (doubled under a sanitizer)")
set(crt_spec_timeout ${CRT_SPEC_TIMEOUT})
set(crt_preload "")
set(crt_spec_tags "")
if(CRT_SANITIZE)
  math(EXPR crt_spec_timeout "${CRT_SPEC_TIMEOUT} * 2")
  if(CRT_SANITIZE MATCHES "thread")
    set(crt_sanitizer_lib libtsan.so)
    set(crt_spec_tags --tags=tsan)
  elseif(CRT_SANITIZE MATCHES "address")
    set(crt_sanitizer_lib libasan.so)
  else()
    set(crt_sanitizer_lib libubsan.so)
  endif()
  execute_process(COMMAND ${CMAKE_C_COMPILER} -print-file-name=${crt_sanitizer_lib}
                  OUTPUT_VARIABLE crt_preload OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT IS_ABSOLUTE "${crt_preload}")
    set(crt_preload "")
  endif()
endif()

# crt_spec(file): register the busted spec file (relative to the repository
# root) as the ctest test named by its path.
function(crt_spec file)
  if(NOT EXISTS ${CMAKE_SOURCE_DIR}/${file})
    message(FATAL_ERROR "tests/tests.cmake lists ${file}, which does not exist")
  endif()
  # Its labels follow its tags: re-configure when it changes.
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/${file})
  file(STRINGS ${CMAKE_SOURCE_DIR}/${file} tagged REGEX "#tsan([^A-Za-z0-9_]|$)")
  set(labels spec)
  if(tagged)
    list(APPEND labels tsan)
  endif()
  add_test(NAME ${file} COMMAND $<TARGET_FILE:crt> ${CRT_BUSTED} ${crt_spec_tags} ${file}
           WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(
    ${file}
    PROPERTIES LABELS "${labels}" TIMEOUT ${crt_spec_timeout} RUN_SERIAL ON
               ENVIRONMENT "CRT_BUILD_DIR=${CMAKE_BINARY_DIR};CRT_SOURCE_DIR=${CMAKE_SOURCE_DIR};CRT_SANITIZE=${CRT_SANITIZE};CRT_PRELOAD=${crt_preload}")
endfunction()

# --- C tests ------------------------------------------------------------------
# The test name starts with its area. An area's tests may live in
# tests/c/<area>.cmake (set-up beyond one line), included here by name; the
# comment says which tests each one registers.
crt_c_test(buf tests/c/test_buf.c ENGINE)
include(${CMAKE_CURRENT_LIST_DIR}/c/chan.cmake) # chan_threads (tsan)
include(${CMAKE_CURRENT_LIST_DIR}/c/codec.cmake) # codec
include(${CMAKE_CURRENT_LIST_DIR}/c/process.cmake) # process_frames, process_exe; crashlib.so
include(${CMAKE_CURRENT_LIST_DIR}/c/runtime.cmake) # timer, embed_api, embed_oom, header_c99/cxx, exports
include(${CMAKE_CURRENT_LIST_DIR}/c/thread.cmake) # thread_pool (tsan)

# The layering rule's check (scripts/layers.sh) on throwaway trees, and on a
# copy of this tree with a violation added.
add_test(NAME lint_layers COMMAND bash ${CMAKE_SOURCE_DIR}/tests/scripts/test_layers.sh
                                  ${CMAKE_SOURCE_DIR})
set_tests_properties(lint_layers PROPERTIES LABELS lint TIMEOUT 120)

# --- busted specs ---------------------------------------------------------------
crt_spec(tests/spec/channel_spec.lua)
crt_spec(tests/spec/cli_spec.lua)
crt_spec(tests/spec/codec_spec.lua)
crt_spec(tests/spec/examples_io_spec.lua)
crt_spec(tests/spec/examples_spec.lua)
crt_spec(tests/spec/exec_spec.lua)
crt_spec(tests/spec/fs_spec.lua)
crt_spec(tests/spec/module_spec.lua)
crt_spec(tests/spec/net_spec.lua)
crt_spec(tests/spec/process_examples_spec.lua)
crt_spec(tests/spec/process_messages_spec.lua)
crt_spec(tests/spec/process_pool_spec.lua)
crt_spec(tests/spec/process_shutdown_spec.lua)
crt_spec(tests/spec/process_spawn_spec.lua)
crt_spec(tests/spec/signal_spec.lua)
crt_spec(tests/spec/stream_lines_spec.lua)
crt_spec(tests/spec/task_spec.lua)
crt_spec(tests/spec/thread_cancel_spec.lua)
crt_spec(tests/spec/thread_channel_spec.lua)
crt_spec(tests/spec/thread_examples_spec.lua)
crt_spec(tests/spec/thread_pool_spec.lua)
crt_spec(tests/spec/thread_spawn_spec.lua)
