# Helpers for the check scripts, which run inside the namespaces
# (run.sh puts this file before each). Each check prints one PASS or FAIL
# line; a FAIL line carries what was seen.
set -u
ok() { echo "PASS $*"; }
no() { echo "FAIL $*"; }
# ready URL: the server behind URL runs commands. Type=exec units are
# "active" once exec'd, before they listen; systemd has no event for
# "listening", so this asks again until it answers (5 s at most).
ready() {
  for _ in $(seq 100); do
    wsep "$@" -- true >/dev/null 2>&1 < /dev/null && return 0
    sleep 0.05
  done
  return 1
}
# http_ready URL: something answers HTTP at URL (any status; 5 s at most),
# for servers `wsep` cannot ask.
http_ready() {
  for _ in $(seq 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" != 000 ] && return 0
    sleep 0.05
  done
  return 1
}
# runs_as UNIT USER: the unit is active and its main process is USER's.
runs_as() {
  local pid user
  pid=$(systemctl show -p MainPID --value "$1")
  user=$(ps -o user= -p "$pid" 2>/dev/null | tr -d ' ')
  if systemctl is-active --quiet "$1" && [ "$user" = "$2" ]; then
    ok "$1 active, as $2"
  else
    no "$1: $(systemctl is-active "$1"), main pid $pid runs as '$user', not $2"
  fi
}
# hostname_check URL...: wsep runs `hostname` there.
hostname_check() {
  local out
  out=$(wsep "$@" -- hostname 2>&1 < /dev/null)
  [ "$out" = execwire-systest ] && ok "wsep -- hostname ($1)" || no "wsep -- hostname ($1): $out"
}
# tty_check URL: `wsep --tty -- bash` gets a PTY (PrivateDevices keeps
# /dev/ptmx and /dev/pts) and its exit code comes back.
tty_check() {
  local out rc
  out=$(printf 'tty; exit 7\n' | wsep "$@" --tty -- bash 2>&1); rc=$?
  if [ $rc = 7 ] && grep -aq /dev/pts/ <<<"$out"; then
    ok "wsep --tty -- bash: a PTY, exit code 7 ($1)"
  else
    no "wsep --tty ($1): exit $rc, output: $out"
  fi
}
