#!/bin/bash
# The shipped systemd units under a real systemd: boots Debian's systemd
# as init of private namespaces on a throwaway root (boot.sh, inner.sh),
# installs the units with the README's own blocks, and checks them
# (check-daemon.sh, check-servers.sh; check-gateway.sh: the README's
# gateway block, Debian's nginx and coturn as services in front of
# host-a's daemon and host-b's servers, and its "Then, from anywhere"
# calls through it; check-user.sh: the per-user daemon under its user's
# manager). Nothing stays on the host: the
# root is an overlay in RAM, and teardown.sh runs on every exit.
#
#   tests/systemd/run.sh REPO BIN
#
# REPO: the checkout whose README.md and deploy/ are checked. BIN: the
# directory holding execwire, wsep, the four *-server binaries and
# systest-webterm (this package's webterm client, for the checks).
# Optional: SYSTEST_DIR (scratch directory; default a new one under /tmp,
# removed at the end), SYSTEST_CGROUP (the child cgroup's name; default
# the scratch directory's).
#
# Prints PASS/FAIL lines. Exits 0 when every check passed, 1 when one
# failed (the units' journal follows), 77 with a SKIP line when this
# machine cannot run a systemd this way (not root, no systemd, overlayfs,
# veth, or systemd does not come up).
set -u
[ $# = 2 ] || { echo "usage: $0 REPO BIN" >&2; exit 2; }
here=$(dirname "$(readlink -f "$0")")
SYSTEST_REPO=$(readlink -f "$1")
SYSTEST_BIN=$(readlink -f "$2")
own_dir=
if [ -z "${SYSTEST_DIR:-}" ]; then
  SYSTEST_DIR=$(mktemp -d /tmp/execwire-systest.XXXXXX)
  own_dir=1
fi
SYSTEST_CGROUP=${SYSTEST_CGROUP:-$(basename "$SYSTEST_DIR")}
export SYSTEST_REPO SYSTEST_BIN SYSTEST_DIR SYSTEST_CGROUP
S=$SYSTEST_DIR

cleanup() {
  "$here/teardown.sh" || echo "FAIL teardown left something on the host"
  if [ -n "$own_dir" ]; then rm -rf "$S"; fi
}
skip() { echo "SKIP: $*"; exit 77; }
# systemd did not come up although everything it needs is here: a limit
# of this host, or a bug of this harness; the test fails under CI.
no_boot() { echo "NO BOOT: $*"; echo "--- boot.log"; tail -20 "$S/boot.log" 2>/dev/null; echo "--- console"; tail -20 "$S/console.log" 2>/dev/null; exit 78; }
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

[ "$(id -u)" = 0 ] || skip "not root (systemd as init of new namespaces needs it)"
[ -x /lib/systemd/systemd ] || skip "no /lib/systemd/systemd (Debian package systemd)"
for c in unshare nsenter ip curl openssl; do
  command -v "$c" >/dev/null || skip "no $c"
done
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null \
  || skip "no overlayfs in this kernel"
unshare --net ip link add va type veth peer name vb 2>/dev/null \
  || skip "no veth in this kernel"
# The user unit's check needs a user manager (user@UID.service), which
# gets its $XDG_RUNTIME_DIR from pam_systemd. CI installs it; elsewhere,
# without it, that one check is left out and says so.
pam_systemd=$(compgen -G '/usr/lib/*/security/pam_systemd.so' || compgen -G '/lib/*/security/pam_systemd.so')
if [ -z "$pam_systemd" ] && [ -n "${CI:-}" ]; then
  echo "FAIL no pam_systemd.so under CI: .ci/run installs libpam-systemd"; exit 1
fi
# The gateway's check runs Debian's nginx and coturn as services (their
# units, turnutils_uclient). CI installs them; elsewhere, without them,
# that check is left out and says so.
gateway=1
for f in /usr/sbin/nginx /usr/bin/turnserver /usr/bin/turnutils_uclient \
  /lib/systemd/system/nginx.service /lib/systemd/system/coturn.service; do
  [ -e "$f" ] || gateway=
done
if [ -z "$gateway" ] && [ -n "${CI:-}" ]; then
  echo "FAIL no nginx or coturn (their units, turnutils_uclient) under CI: .ci/run installs them"; exit 1
fi
for b in execwire wsep wsep-server webexec-server pow-server webterm-server systest-webterm; do
  [ -x "$SYSTEST_BIN/$b" ] || { echo "FAIL $SYSTEST_BIN/$b is missing: cargo build --workspace --bins"; exit 1; }
done

# The README's block under HEADING (its first ```sh block), as a script
# for a host that has the binaries already: the steps that fetch and
# build are dropped and the binaries come from $BIN. Every edit must find
# its text, so a README that changes makes this fail, not pass unchecked.
readme_block() {
  local heading=$1 block
  block=$(awk -v h="$heading" '$0 == h { f = 1; next }
    f && /^```sh$/ { p = 1; next } p && /^```$/ { exit } p' "$SYSTEST_REPO/README.md")
  [ -n "$block" ] || { echo "README has no sh block under '$heading'" >&2; return 1; }
  shift
  local edit
  for edit in "$@"; do
    local from=${edit%%=>*} to=${edit#*=>}
    grep -qF -- "$from" <<<"$block" || { echo "README block '$heading' no longer has: $from" >&2; return 1; }
    if [ "$to" = DROP ]; then
      block=$(grep -vF -- "$from" <<<"$block")
    else
      block=${block//"$from"/"$to"}
    fi
  done
  printf 'set -eux\ncd "$REPO"\n%s\n' "$block"
}
daemon_block=$(readme_block '### On every host (Debian 12, as root)' \
  'apt-get install=>DROP' 'curl -sSf https://sh.rustup.rs=>DROP' 'git clone=>DROP' \
  'cargo build --release=>DROP' 'target/release/=>$BIN/' \
  "<coturn's secret, below>=>systest-turn-secret") || { echo "FAIL README daemon block"; exit 1; }
servers_block=$(readme_block '#### Or one unit per server' \
  'cargo build --release=>DROP' 'target/release/=>$BIN/' \
  "<coturn's secret, below>=>systest-turn-secret") || { echo "FAIL README per-server block"; exit 1; }
# The gateway block as it stands, but for its apt-get line: nginx and
# coturn are the host's packages, seen through the overlay. Installing
# them enables and starts their services (Debian's postinst), which the
# block relies on ("systemctl reload nginx"); on the host .ci/run keeps
# them off, so here that start is done instead of the install.
gateway_block=$(readme_block '### On the gateway (as root)' \
  'apt-get install -y nginx coturn=>systemctl enable --now nginx coturn') \
  || { echo "FAIL README gateway block"; exit 1; }
# host-a's daemon beside host-b's servers, for the gateway: the daemon
# block again, its user already there (host-b's block made it), with the
# secret the gateway block gave coturn.
host_a_block=$(readme_block '### On every host (Debian 12, as root)' \
  'apt-get install=>DROP' 'curl -sSf https://sh.rustup.rs=>DROP' 'git clone=>DROP' \
  'cargo build --release=>DROP' 'target/release/=>$BIN/' 'useradd --system=>DROP' \
  "<coturn's secret, below>=>\$(sed -n 's/^static-auth-secret=//p' /etc/turnserver.conf)") \
  || { echo "FAIL README daemon block for host-a"; exit 1; }

: > "$S/console.log"
# setsid: the namespaces' init gets no signal meant for this shell's
# terminal or process group. setsid does not fork here (a background job
# is no group leader), and boot.sh execs unshare: $! is unshare, whose
# one child becomes systemd.
setsid "$here/boot.sh" > "$S/boot.log" 2>&1 < /dev/null &
unshare_pid=$!
# Its end (teardown's kill -9) is no news: no "Killed" line from bash.
disown "$unshare_pid"
P=
for _ in $(seq 200); do
  c=$(pgrep -P "$unshare_pid") && [ "$(cat "/proc/$c/comm" 2>/dev/null)" = systemd ] && { P=$c; break; }
  kill -0 "$unshare_pid" 2>/dev/null || break
  sleep 0.05
done
[ -n "$P" ] || no_boot "could not start systemd in new namespaces"
echo "$P" > "$S/pid"

# A command inside: every namespace of the init, a clean environment.
inside() {
  nsenter -t "$P" -a -- env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 REPO=/systest/repo BIN=/systest/bin "$@"
}
for _ in $(seq 200); do inside test -S /run/systemd/private && break; sleep 0.05; done
state=$(inside timeout 30 systemctl is-system-running --wait 2>&1)
case "$state" in
  running) ;;
  degraded) echo "note: systemd is degraded: $(inside systemctl --failed --plain --no-legend | tr '\n' ' ')" ;;
  *) no_boot "systemd in the namespaces reached '$state', not running" ;;
esac
echo "systemd is $state"

failed=
# One step inside, its PASS/FAIL lines passed on. A FAIL line, or a
# non-zero exit without one, fails the run: the steps after it would
# check a host that is not as the README leaves it, so they do not run.
step() {
  local name=$1 out rc
  shift
  out=$(inside bash -c "$*" 2>&1 < /dev/null); rc=$?
  if [ $rc = 0 ] && ! grep -q '^FAIL' <<<"$out"; then
    grep -E '^(PASS|note:)' <<<"$out"
    return 0
  fi
  echo "FAIL $name (exit $rc); its output:"
  printf '%s\n' "$out" | tail -60
  failed=$name
  return 1
}
lib=$(cat "$here/lib.sh")
step "README daemon block" "$daemon_block" \
  && step "daemon checks" "$lib
$(cat "$here/check-daemon.sh")" \
  && step "README per-server block" "$(cat "$here/fresh-host.sh")
$servers_block" \
  && step "per-server checks" "$lib
$(cat "$here/check-servers.sh")" \
  && if [ -n "$gateway" ]; then
    step "README gateway block" "$(cat "$here/gateway-prep.sh")
$gateway_block" \
    && step "README daemon block for host-a, beside host-b" "$(cat "$here/fleet.sh")
$host_a_block" \
    && step "gateway checks" "$lib
$(cat "$here/check-gateway.sh")"
  else
    echo "note: the gateway was not checked: no nginx or coturn (Debian packages nginx, coturn)"
  fi \
  && if [ -n "$pam_systemd" ]; then
    step "user unit checks" "$lib
$(cat "$here/check-user.sh")"
  else
    echo "note: the user unit was not checked: no pam_systemd.so (Debian package libpam-systemd; without it user@UID.service fails: \$XDG_RUNTIME_DIR is not set)"
  fi

if [ -n "$failed" ]; then
  echo "== journal of the units"
  inside journalctl --no-pager -o short-monotonic -n 100 -u 'execwire*' -u nginx -u coturn 2>&1
  echo "== failed: $failed"
  exit 1
fi
echo "== every check passed"
