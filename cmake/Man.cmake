# Man.cmake - manual pages generated from each program's --help and
# --version with help2man (Debian package help2man, in
# deploy/local/packages.sh): build/man/orchctl.1 and
# build/man/{lease,stage,guard,launcher}-service.1, target `man`, part of the
# default build when help2man is found (else a notice and no pages).
# cmake/Install.cmake installs ORCH_MAN_PAGES to share/man/man1;
# tests/integration/man_check.sh renders them.

find_program(HELP2MAN_EXECUTABLE help2man)
set(ORCH_MAN_DIR "${PROJECT_BINARY_DIR}/man")
set(ORCH_MAN_PAGES "")

set(_orch_man_orchctl "command-line client of the orch services")
set(_orch_man_lease-service "orch transition leases (one owner per work item)")
set(_orch_man_stage-service "orch work-item stages, gates and side effects")
set(_orch_man_guard-service "orch write guard for Plane and Telegram")
set(_orch_man_launcher-service "orch agent job launcher")

if(HELP2MAN_EXECUTABLE)
  foreach(_p orchctl lease-service stage-service guard-service launcher-service)
    set(_page "${ORCH_MAN_DIR}/${_p}.1")
    add_custom_command(OUTPUT "${_page}"
      COMMAND ${CMAKE_COMMAND} -E make_directory "${ORCH_MAN_DIR}"
      COMMAND ${HELP2MAN_EXECUTABLE} --no-info --section=1 "--name=${_orch_man_${_p}}"
              "--output=${_page}" "$<TARGET_FILE:${_p}>"
      DEPENDS ${_p}
      COMMENT "Generating man page ${_p}.1"
      VERBATIM)
    list(APPEND ORCH_MAN_PAGES "${_page}")
  endforeach()
  add_custom_target(man ALL DEPENDS ${ORCH_MAN_PAGES})
else()
  message(STATUS "help2man not found: no manual pages (deploy/local/packages.sh installs it)")
endif()
