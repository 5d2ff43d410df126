#!/usr/bin/env bash
# Every binary's --help lists its own flags with their meaning, and
# primaps-client without arguments names every subcommand.
#   cli_help_test.sh SERVER CLIENT TRAINER
set -euo pipefail
server=$1 client=$2 trainer=$3
pass=0 fail=0
expect() {  # expect NAME TEXT COMMAND...: COMMAND's output contains TEXT
  local name=$1 text=$2 output; shift 2
  output=$("$@" 2>&1 || true)  # --help and a missing command exit non-zero
  if grep -qF -- "$text" <<< "$output"; then pass=$((pass + 1)); else
    echo "FAILED: $name: no \"$text\" in the output of $*"; fail=$((fail + 1)); fi
}
expect server_help "--resize_filter (Resize filter for every method" "$server" --help
expect server_help_threads "--threads" "$server" --help
expect client_help "--layout" "$client" --help
expect trainer_help "--preset (cityscapes, cocostuff27 or potsdam3" "$trainer" --help
for command in propose pseudo segment features label bench admin health; do
  expect "client_usage_$command" "$command" "$client"
done
for command in reproduce prepare report make-dataset; do
  expect "trainer_usage_$command" "primaps-trainer $command" "$trainer" --help
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
