# fuzz/fuzz.cmake - libFuzzer targets, built only with -DCRT_FUZZ=ON and clang:
#
#   cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCRT_FUZZ=ON
#   cmake --build build-fuzz --target fuzz_decode
#   build-fuzz/fuzz_decode -max_total_time=120 CORPUS_DIR fuzz/corpus/fuzz_decode
#
# fuzz_decode feeds hostile bytes to the decoder; fuzz_roundtrip runs small
# programs that build values, and checks that encode + decode copies them
# exactly. Both are built from the codec sources themselves (not crt_engine) with a
# stub for the channel functions, so that coverage instrumentation covers the
# codec and the target needs no event loop. codec.c is compiled with
# CRT_CODEC_FUZZING: see fuzz/fuzz_decode.c for why bytecode is allow-listed.
# gen_fuzz_corpus rewrites the seed files in fuzz/corpus/ (run it by hand
# after a format change: build-fuzz/gen_fuzz_corpus fuzz/corpus/fuzz_decode).
if(CRT_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "CRT_FUZZ=ON needs clang (-DCMAKE_C_COMPILER=clang)")
  endif()
  set(crt_fuzz_flags -fsanitize=fuzzer,address,undefined -fno-omit-frame-pointer
                     -fno-sanitize-recover=all)

  function(crt_fuzz_target name)
    add_executable(${name} fuzz/${name}.c fuzz/allowlist.c fuzz/chan_stub.c runtime/codec.c
                           runtime/buf.c)
    target_include_directories(${name} PRIVATE runtime ${LUA_INCLUDE_DIRS})
    target_compile_definitions(${name} PRIVATE CRT_CODEC_FUZZING _GNU_SOURCE)
    target_compile_options(${name} PRIVATE -g ${crt_fuzz_flags})
    target_link_options(${name} PRIVATE ${crt_fuzz_flags})
    target_link_libraries(${name} PRIVATE ${LUA_LINK_LIBRARIES} m)
  endfunction()
  crt_fuzz_target(fuzz_decode)
  crt_fuzz_target(fuzz_roundtrip)

  add_executable(gen_fuzz_corpus fuzz/gen_corpus.c fuzz/chan_stub.c runtime/codec.c
                                 runtime/buf.c)
  target_include_directories(gen_fuzz_corpus PRIVATE runtime ${LUA_INCLUDE_DIRS})
  target_compile_definitions(gen_fuzz_corpus PRIVATE _GNU_SOURCE)
  target_link_libraries(gen_fuzz_corpus PRIVATE ${LUA_LINK_LIBRARIES} m)
endif()
