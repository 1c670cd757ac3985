# Warning set shared by every target of the project (generated code excepted).
set(ORCH_WARNINGS -Wall -Wextra -Wpedantic -Wshadow -Wformat=2 -Wvla
    -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter)
if(ORCH_WERROR)
  list(APPEND ORCH_WARNINGS -Werror)
endif()

function(orch_warnings target)
  target_compile_options(${target} PRIVATE ${ORCH_WARNINGS})
endfunction()
