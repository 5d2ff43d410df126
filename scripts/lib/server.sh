# Sourced by the scripts that run a primaps-server of their own.
#
#   start_server SERVER_BIN LOG [FLAGS...]
#
# Starts the server on a free loopback port (127.0.0.1:0), waits until it
# serves, and sets server_pid and port; stops it on exit. Exits with the log
# when the server dies first.
start_server() {
  local bin=$1 log=$2
  shift 2
  "$bin" --listen=127.0.0.1:0 --metrics_listen=127.0.0.1:0 --http_listen=127.0.0.1:0 "$@" 2> "$log" &
  server_pid=$!
  trap 'kill -TERM $server_pid 2>/dev/null || true' EXIT
  for _ in $(seq 300); do
    grep -q "serving on port" "$log" && break
    kill -0 $server_pid 2>/dev/null || { cat "$log"; exit 1; }
    sleep 0.1
  done
  port=$(grep -oE "serving on port [0-9]+" "$log" | grep -oE "[0-9]+$")
}

# Stops the server started by start_server and waits for it.
stop_server() {
  kill -TERM $server_pid
  wait $server_pid || true
  trap - EXIT
}
