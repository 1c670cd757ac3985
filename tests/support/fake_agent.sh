#!/bin/sh
# fake_agent.sh - a stand-in for a coding-agent CLI in the launcher tests.
#
# Reads the prompt on stdin and obeys its "fake: ..." lines in order:
#   fake: say TEXT        print TEXT (e.g. a verdict line "test_status: PASS")
#   fake: usage           print a usage JSON line (tokens, cost, model)
#   fake: result TEXT     print a JSON result object whose "result" holds TEXT
#   fake: sleep N         sleep N seconds
#   fake: ignore-term     ignore SIGTERM from now on (children inherit it)
#   fake: child           start a background "sleep 300" in the same process
#                         group and write its pid to child.pid in the workdir
#   fake: flood N         write N bytes to stdout
#   fake: crash           die of SIGSEGV
#   fake: exit N          exit with status N
# Other lines are ignored. It prints the job's identity first.
prompt=$(cat)
echo "fake agent: job ${ORCH_JOB_ID:-?} role ${ORCH_JOB_ROLE:-?} item ${ORCH_WORK_ITEM:-?}"
if [ -n "${ORCH_DATABASE_URL:-}" ]; then
  echo "fake agent: ORCH_DATABASE_URL leaked"
fi
while IFS= read -r line; do
  case "$line" in
    "fake: say "*) printf '%s\n' "${line#fake: say }" ;;
    "fake: usage")
      echo '{"type":"result","model":"fake-model-1","usage":{"input_tokens":1200,"output_tokens":340},"total_cost_usd":0.0421}' ;;
    "fake: result "*)
      printf '{"type":"result","result":"%s\\n","usage":{"input_tokens":10,"output_tokens":5}}\n' "${line#fake: result }" ;;
    "fake: sleep "*) sleep "${line#fake: sleep }" ;;
    "fake: ignore-term") trap '' TERM ;;
    "fake: child") sleep 300 & echo $! > child.pid ;;
    "fake: flood "*) head -c "${line#fake: flood }" /dev/zero | tr '\0' 'x' ;;
    "fake: crash") kill -SEGV $$ ;;
    "fake: exit "*) exit "${line#fake: exit }" ;;
  esac
done <<PROMPT
$prompt
PROMPT
exit 0
