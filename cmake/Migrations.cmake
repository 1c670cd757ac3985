# orch_embed_migrations(<output.c> <dir>)
# Compiles the numbered SQL migrations into a C table so that every service
# binary carries the exact schema it was built for. Re-runs when a file changes.
function(orch_embed_migrations out dir)
  file(GLOB sql CONFIGURE_DEPENDS ${dir}/[0-9][0-9][0-9][0-9]_*.sql)
  list(SORT sql)
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DOUT=${out} -DDIR=${dir} -P ${PROJECT_SOURCE_DIR}/cmake/EmbedMigrations.cmake
    DEPENDS ${sql} ${PROJECT_SOURCE_DIR}/cmake/EmbedMigrations.cmake
    COMMENT "embedding SQL migrations"
    VERBATIM)
endfunction()
