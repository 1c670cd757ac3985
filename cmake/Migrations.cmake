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

# orch_embed_file(<output.c> <input> <symbol>)
# Compiles a file (the dashboard's page) into `const char symbol[]` and
# `const size_t symbol_len`; re-runs when the file changes.
function(orch_embed_file out in symbol)
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DOUT=${out} -DIN=${in} -DNAME=${symbol} -P ${PROJECT_SOURCE_DIR}/cmake/EmbedFile.cmake
    DEPENDS ${in} ${PROJECT_SOURCE_DIR}/cmake/EmbedFile.cmake
    COMMENT "embedding ${in}"
    VERBATIM)
endfunction()
