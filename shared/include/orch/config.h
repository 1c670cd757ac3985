/*
 * config.h - configuration from the environment, declared as tables.
 *
 * A service declares its variables as an array of orch_config_var (name,
 * type, default, bounds, required, secret, help) and loads them in one call.
 * Loading checks every variable and reports every problem, each naming its
 * variable; a secret's value never appears in a message. The loaded values
 * live in an orch_config owned by the caller. Not thread-safe while loading;
 * read-only afterwards.
 */
#ifndef ORCH_CONFIG_H
#define ORCH_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "orch/err.h"

typedef enum orch_config_type {
    ORCH_CFG_STRING,
    ORCH_CFG_INT,  /* decimal integer within [min, max] */
    ORCH_CFG_BOOL, /* true/false, 1/0, yes/no, on/off */
    ORCH_CFG_ENUM, /* one of the '|'-separated words in `choices` */
} orch_config_type;

typedef struct orch_config_var {
    const char *name;
    orch_config_type type;
    const char *def; /* default as text; NULL = no default */
    int64_t min, max;
    const char *choices; /* ORCH_CFG_ENUM only, e.g. "live|staging|test" */
    bool required;       /* must be set and non-empty */
    bool secret;         /* never printed */
    const char *help;    /* one line for .env.example and --help */
} orch_config_var;

typedef struct orch_config orch_config;

/* Loads every variable of the NULL-name-terminated tables in `tables`
 * (itself NULL-terminated) from the environment. On ORCH_EINVAL, every
 * problem has been written to `errs`, one line each. On success *out is a
 * new config the caller frees with orch_config_free(). */
orch_err orch_config_load(const orch_config_var *const *tables, FILE *errs,
                          orch_config **out) ORCH_NODISCARD;
void orch_config_free(orch_config *cfg);

/* Accessors for loaded variables; asking for an undeclared name is a bug and
 * aborts. Returned strings are owned by the config. */
const char *orch_config_str(const orch_config *cfg, const char *name);
int64_t orch_config_int(const orch_config *cfg, const char *name);
bool orch_config_bool(const orch_config *cfg, const char *name);

/* Writes NAME=value lines, secrets as "<set>"/"<unset>". */
void orch_config_dump(const orch_config *cfg, FILE *out);

/* Variables every service reads (database, logging, RPC, HTTP tuning). */
extern const orch_config_var orch_config_common[];

#endif
