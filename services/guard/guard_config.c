/*
 * guard_config.c - environment variables read by guard-service only.
 * Keep .env.example in step: a unit test compares the two.
 * ORCH_GUARD_RPC_URL is in the common table: the other services send their
 * alerts there.
 */
#include "guard_config.h"

const orch_config_var guard_config[] = {
    { "ORCH_GUARD_HTTP_ADDR", ORCH_CFG_STRING, "127.0.0.1:7713", 0, 0, NULL, false, false,
      "host:port of guard-service's /healthz and /metrics" },
    { "ORCH_PLANE_BASE_URL", ORCH_CFG_STRING, "https://api.plane.so", 0, 0, NULL, false, false,
      "Plane API root (scheme://host[:port]); /api/v1/... is appended" },
    { "ORCH_PLANE_API_KEY", ORCH_CFG_STRING, "", 0, 0, NULL, false, true,
      "Plane API key, sent as X-API-Key; held by guard-service only" },
    { "ORCH_PLANE_WORKSPACE_SLUG", ORCH_CFG_STRING, "", 0, 0, NULL, false, false,
      "Plane workspace slug" },
    { "ORCH_PLANE_PROJECT_ID", ORCH_CFG_STRING, "", 0, 0, NULL, false, false,
      "the production Plane project: never written in the test runtime" },
    { "ORCH_PLANE_TEST_WRITE_ENABLED", ORCH_CFG_BOOL, "false", 0, 0, NULL, false, false,
      "test runtime only: opt in to tracker writes to the sandbox projects" },
    { "ORCH_PLANE_TEST_SANDBOX_PROJECTS", ORCH_CFG_STRING, "00000000-0000-4000-8000-000000005a4d",
      0, 0, NULL, false, false,
      "test runtime only: comma-separated Plane projects tests may write to" },
    { "ORCH_PLANE_TIMEOUT_MS", ORCH_CFG_INT, "10000", 100, 120000, NULL, false, false,
      "budget of one Plane call, milliseconds" },
    { "ORCH_GUARD_COMMENT_MAX_BYTES", ORCH_CFG_INT, "32768", 16, 1048576, NULL, false, false,
      "longest comment text accepted, bytes of UTF-8" },
    { "ORCH_TELEGRAM_BASE_URL", ORCH_CFG_STRING, "https://api.telegram.org", 0, 0, NULL, false,
      false, "Telegram Bot API root; /bot<token>/sendMessage is appended" },
    { "ORCH_TELEGRAM_BOT_TOKEN", ORCH_CFG_STRING, "", 0, 0, NULL, false, true,
      "Telegram bot token (part of the URL: never logged); held by guard-service only" },
    { "ORCH_TELEGRAM_CHAT_ID", ORCH_CFG_STRING, "", 0, 0, NULL, false, false,
      "the production chat alerts go to: never written in the test runtime" },
    { "ORCH_TELEGRAM_TEST_SEND_ENABLED", ORCH_CFG_BOOL, "false", 0, 0, NULL, false, false,
      "test runtime only: opt in to notifications to the sandbox chats" },
    { "ORCH_TELEGRAM_TEST_SANDBOX_CHATS", ORCH_CFG_STRING, "", 0, 0, NULL, false, false,
      "test runtime only: comma-separated chats tests may notify" },
    { "ORCH_TELEGRAM_TEST_CHAT_ID", ORCH_CFG_STRING, "", 0, 0, NULL, false, false,
      "test runtime only: the chat Notify uses when the request names none" },
    { "ORCH_TELEGRAM_TIMEOUT_MS", ORCH_CFG_INT, "10000", 100, 120000, NULL, false, false,
      "budget of one sendMessage call, milliseconds" },
    { "ORCH_TELEGRAM_MAX_ATTEMPTS", ORCH_CFG_INT, "3", 1, 10, NULL, false, false,
      "sendMessage calls per Notify when Telegram answers 429" },
    { "ORCH_TELEGRAM_MAX_RETRY_AFTER_S", ORCH_CFG_INT, "30", 0, 3600, NULL, false, false,
      "longest retry_after honoured by waiting; a longer one fails the Notify" },
    { NULL, 0, NULL, 0, 0, NULL, false, false, NULL },
};
