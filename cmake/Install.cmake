# Install.cmake - `cmake --install BUILD [--prefix P]` puts everything where
# the systemd units of deploy/systemd name it (prefix /usr/local by default):
#   P/bin/{lease,stage,guard,launcher}-service, P/bin/orchctl
#   P/lib/systemd/system/orch-*.service, orch.target (the paths inside them
#     rewritten from /usr/local to P when P differs)
#   P/share/doc/orch/ (docs/, orch.env.example)
#   P/share/bash-completion/completions/orchctl
#   P/share/man/man1/{orchctl,lease-service,...}.1 (when help2man was found:
#     cmake/Man.cmake)
# /etc/orch/orch.env is the operator's (docs/operations/deploy.md).
# tests/integration/systemd_check.sh installs into a DESTDIR and checks that
# every path a unit names exists there.

set(ORCH_SYSTEMD_UNIT_DIR "lib/systemd/system" CACHE STRING
  "Where the systemd units go, relative to the install prefix")

install(TARGETS lease-service stage-service guard-service launcher-service orchctl
  RUNTIME DESTINATION bin)

if(ORCH_MAN_PAGES)
  install(FILES ${ORCH_MAN_PAGES} DESTINATION share/man/man1)
endif()

set(_orch_src "${PROJECT_SOURCE_DIR}")
if(EXISTS "${_orch_src}/tools/orchctl/completion.bash")
  install(FILES "${_orch_src}/tools/orchctl/completion.bash"
    DESTINATION share/bash-completion/completions RENAME orchctl)
endif()
if(EXISTS "${_orch_src}/docs")
  install(DIRECTORY "${_orch_src}/docs/" DESTINATION share/doc/orch)
endif()
if(EXISTS "${_orch_src}/.env.example")
  install(FILES "${_orch_src}/.env.example" DESTINATION share/doc/orch RENAME orch.env.example)
endif()

# The units are copied at install time, when the prefix is known (--prefix
# may differ from the configured CMAKE_INSTALL_PREFIX).
if(EXISTS "${_orch_src}/deploy/systemd")
  install(CODE "
    file(GLOB _units \"${_orch_src}/deploy/systemd/*.service\" \"${_orch_src}/deploy/systemd/*.target\")
    set(_dir \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/${ORCH_SYSTEMD_UNIT_DIR}\")
    file(MAKE_DIRECTORY \"\${_dir}\")
    foreach(_u IN LISTS _units)
      file(READ \"\${_u}\" _text)
      string(REPLACE \"/usr/local/\" \"\${CMAKE_INSTALL_PREFIX}/\" _text \"\${_text}\")
      get_filename_component(_name \"\${_u}\" NAME)
      message(STATUS \"Installing: \${_dir}/\${_name}\")
      file(WRITE \"\${_dir}/\${_name}\" \"\${_text}\")
    endforeach()
  ")
endif()
