# ORCH_FUZZ=ON builds the libFuzzer targets of tests/fuzz (docs/testing/fuzzing.md).
# It needs clang (CC=clang): every target of the configuration gets coverage
# instrumentation, ASan and UBSan (UBSan findings abort), and the fuzz
# targets link libFuzzer. Use a build folder of its own (tests/fuzz/run.sh
# uses build-fuzz/); the normal gcc build is unaffected.
if(ORCH_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "ORCH_FUZZ=ON needs clang: configure with CC=clang")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined
                      -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g)
  add_link_options(-fsanitize=address,undefined)
endif()
