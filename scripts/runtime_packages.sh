#!/usr/bin/env bash
# Prints the packages that own the shared libraries the given binaries link
# directly (their ELF NEEDED entries, resolved by ldd, looked up in the dpkg
# database of the machine they were built on), one a line, sorted. The
# Docker images install exactly these in their runtime stage (apt brings
# what those libraries need in turn), so the list follows the binaries
# instead of being kept by hand.
#
#   scripts/runtime_packages.sh [--skip PREFIX]... BINARY...
#
# Fails, naming the binary and the library, when a library is not found or
# belongs to no package (unless it lies under a --skip prefix, e.g. a
# LibTorch unpacked into /opt that the image copies itself).
set -euo pipefail
skips=()
binaries=()
while [ $# -gt 0 ]; do
  case "$1" in
    --skip) skips+=("$2"); shift 2 ;;
    *) binaries+=("$1"); shift ;;
  esac
done
[ ${#binaries[@]} -gt 0 ] || { echo "usage: $0 [--skip PREFIX]... BINARY..." >&2; exit 2; }

failed=0
declare -A libs=()  # library path -> the binary that needs it
for binary in "${binaries[@]}"; do
  resolved=$(ldd "$binary")
  if grep -q "not found" <<< "$resolved"; then
    echo "runtime_packages: $binary: $(grep 'not found' <<< "$resolved" | tr -s ' \t' ' ')" >&2
    failed=1
    continue
  fi
  for needed in $(objdump -p "$binary" | awk '$1 == "NEEDED" {print $2}'); do
    path=$(awk -v n="$needed" '$1 == n && $2 == "=>" {print $3}' <<< "$resolved")
    [ -n "$path" ] || continue  # the vDSO and the loader
    skipped=0
    for prefix in "${skips[@]}"; do
      [[ "$path" == "$prefix"* ]] && skipped=1
    done
    [ "$skipped" -eq 1 ] || libs["$path"]=$binary
  done
done
[ "$failed" -eq 0 ] || exit 1

# With a merged /usr a library is found under /lib or /usr/lib, and dpkg
# knows it under either: ask for every spelling in one query.
candidates=()
for path in "${!libs[@]}"; do
  real=$(readlink -f "$path")
  candidates+=("$path" "$real" "${real#/usr}" "/usr${real#/usr}")
done
owners=$(dpkg-query -S "${candidates[@]}" 2> /dev/null || true)
packages=()
for path in "${!libs[@]}"; do
  real=$(readlink -f "$path")
  package=""
  for candidate in "$path" "$real" "${real#/usr}" "/usr${real#/usr}"; do
    package=$(awk -v p="$candidate" '$2 == p {sub(/:$/, "", $1); print $1; exit}' <<< "$owners")
    [ -n "$package" ] && break
  done
  if [ -z "$package" ]; then
    echo "runtime_packages: ${libs[$path]}: $path belongs to no package" >&2
    failed=1
  fi
  packages+=("${package%%:*}")  # "libfoo1:amd64" -> "libfoo1"
done
[ "$failed" -eq 0 ] || exit 1
printf '%s\n' "${packages[@]}" | sort -u
