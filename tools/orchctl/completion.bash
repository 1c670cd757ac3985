# completion.bash - bash completion for orchctl.
#
#   source tools/orchctl/completion.bash        (or install it as
#   /usr/share/bash-completion/completions/orchctl)
#
# Completes the global options, the commands, their subcommands, the options
# of each subcommand and the fixed values (services, stages, roles,
# operations). Work items, job ids and other free text are not completed.
# The words must be those of orchctl's command table (`orchctl __complete`
# prints them); tests/integration/completion_check.sh loads this file in
# bash and fails when any level offers other words than the table.

_orchctl() {
  local cur prev
  cur="${COMP_WORDS[COMP_CWORD]}"
  prev="${COMP_WORDS[COMP_CWORD - 1]}"
  local stages="backlog analysis architecture development review testing staging deploy done cancelled"
  local roles="analyst architect developer reviewer tester deployer"

  # The command and subcommand: the first two words after the global options.
  local i cmd="" sub="" word
  for ((i = 1; i < COMP_CWORD; i++)); do
    word="${COMP_WORDS[i]}"
    if [[ "$word" == "--timeout" || "$word" == "-o" || "$word" == "--config" ||
      "$word" == "--endpoints" || "$word" == --*-url ]]; then
      ((i++))
      continue
    fi
    [[ "$word" == -* ]] && continue
    if [[ -z "$cmd" ]]; then
      cmd="$word"
    elif [[ -z "$sub" ]]; then
      sub="$word"
      break
    fi
  done

  case "$prev" in
  -o)
    mapfile -t COMPREPLY < <(compgen -W "json" -- "$cur")
    return 0
    ;;
  --from | --to | --stage)
    mapfile -t COMPREPLY < <(compgen -W "$stages" -- "$cur")
    return 0
    ;;
  --role)
    mapfile -t COMPREPLY < <(compgen -W "$roles" -- "$cur")
    return 0
    ;;
  --decision)
    mapfile -t COMPREPLY < <(compgen -W "allow block" -- "$cur")
    return 0
    ;;
  --operation)
    mapfile -t COMPREPLY < <(compgen -W "update-state comment set-state notify" -- "$cur")
    return 0
    ;;
  --evidence-file | --prompt-file | --workdir | --config)
    mapfile -t COMPREPLY < <(compgen -f -- "$cur")
    return 0
    ;;
  --timeout | --limit | --history | --pr | --since-days | --interval | --count | --endpoints | \
    --lease-url | --stage-url | --guard-url | --launcher-url)
    return 0
    ;;
  esac

  local words=""
  if [[ -z "$cmd" ]]; then
    words="health version lease stage guard job runs --json -o --timeout --config --endpoints"
    words+=" --lease-url --stage-url --guard-url --launcher-url --version --help"
  elif [[ -z "$sub" ]]; then
    case "$cmd" in
    health) words="lease stage guard launcher all --help" ;;
    version) words="--services --help" ;;
    lease) words="acquire release validate force-release show list probe --help" ;;
    stage) words="create show advance rollback cancel queue pipeline --help" ;;
    guard) words="decide audit comment state notify --help" ;;
    job) words="spawn show wait cancel --help" ;;
    runs) words="list savings --help" ;;
    esac
  else
    case "$cmd $sub" in
    "health "*) words="lease stage guard launcher all" ;;
    "version "*) words="--services --help" ;;
    "lease acquire") words="--actor --transition --repo --owner-pid --instance --help" ;;
    "lease force-release") words="--epoch --operator --reason --help" ;;
    "lease list") words="--all --repo --limit -w --watch --interval --count --help" ;;
    "lease "*) words="--help" ;;
    "stage create") words="--repo --title --pr --help" ;;
    "stage show") words="--history --help" ;;
    "stage advance") words="--from --to --actor --verdict --evidence-file --help" ;;
    "stage rollback") words="--from --reason --actor --help" ;;
    "stage cancel") words="--actor --help" ;;
    "stage queue") words="--stage --repo --limit -w --watch --interval --count --help" ;;
    "guard decide") words="update-state comment set-state notify --help" ;;
    "guard audit") words="--limit --decision --operation --help" ;;
    "guard state") words="--name --help" ;;
    "guard notify") words="--chat --help" ;;
    "job spawn") words="$roles --workdir --prompt --prompt-file --timeout --stage --help" ;;
    "runs list") words="--role --item --limit --help" ;;
    "runs savings") words="--since-days --help" ;;
    *) words="--help" ;;
    esac
  fi
  mapfile -t COMPREPLY < <(compgen -W "$words" -- "$cur")
  return 0
}

complete -F _orchctl orchctl
