# ORCH_SANITIZE=ON instruments every target with ASan + UBSan. UBSan findings
# abort so that a test run cannot pass over them.
if(ORCH_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=undefined
                      -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()
