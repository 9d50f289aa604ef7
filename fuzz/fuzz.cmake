# fuzz/fuzz.cmake - libFuzzer targets, built only with -DCRT_FUZZ=ON and clang:
#
#   cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCRT_FUZZ=ON
#   cmake --build build-fuzz --target fuzz_decode
#   build-fuzz/fuzz_decode -max_total_time=120 CORPUS_DIR fuzz/corpus/fuzz_decode
#
# fuzz_decode feeds hostile bytes to the decoder; fuzz_roundtrip runs small
# programs that build values, and checks that encode + decode copies them
# exactly. Both are built from the codec sources themselves (not crtcore) with a
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

  add_executable(fuzz_decode fuzz/fuzz_decode.c fuzz/chan_stub.c runtime/codec.c runtime/buf.c)
  target_include_directories(fuzz_decode PRIVATE runtime ${LUA_INCLUDE_DIRS})
  target_compile_definitions(fuzz_decode PRIVATE CRT_CODEC_FUZZING _GNU_SOURCE)
  target_compile_options(fuzz_decode PRIVATE -g ${crt_fuzz_flags})
  target_link_options(fuzz_decode PRIVATE ${crt_fuzz_flags})
  target_link_libraries(fuzz_decode PRIVATE ${LUA_LINK_LIBRARIES} m)

  add_executable(fuzz_roundtrip fuzz/fuzz_roundtrip.c fuzz/chan_stub.c runtime/codec.c
                                runtime/buf.c)
  target_include_directories(fuzz_roundtrip PRIVATE runtime ${LUA_INCLUDE_DIRS})
  target_compile_definitions(fuzz_roundtrip PRIVATE CRT_CODEC_FUZZING _GNU_SOURCE)
  target_compile_options(fuzz_roundtrip PRIVATE -g ${crt_fuzz_flags})
  target_link_options(fuzz_roundtrip PRIVATE ${crt_fuzz_flags})
  target_link_libraries(fuzz_roundtrip PRIVATE ${LUA_LINK_LIBRARIES} m)

  add_executable(gen_fuzz_corpus fuzz/gen_corpus.c fuzz/chan_stub.c runtime/codec.c
                                 runtime/buf.c)
  target_include_directories(gen_fuzz_corpus PRIVATE runtime ${LUA_INCLUDE_DIRS})
  target_compile_definitions(gen_fuzz_corpus PRIVATE _GNU_SOURCE)
  target_link_libraries(gen_fuzz_corpus PRIVATE ${LUA_LINK_LIBRARIES} m)
endif()
