#!/bin/bash
# Ends the check's namespaces and removes the child cgroups boot.sh made.
# Safe to run more than once, and after any failure: run.sh runs it from
# a trap, the Rust test from a Drop guard.
#
# Environment: SYSTEST_DIR (its `cgroups` file lists the child cgroups).
# Exits non-zero, naming it, if a cgroup or mount is left.
set -u
S=$SYSTEST_DIR
list=$S/cgroups
[ -f "$list" ] || exit 0
procs() { find "$@" -noleaf -name cgroup.procs -exec cat {} + 2>/dev/null; }
mapfile -t dirs < "$list"
# Every process of the namespaces is in those cgroups. Killing those in
# the new pid namespace (its init first: the kernel then kills the rest,
# and the mount and network namespaces go with their last process) lets
# `unshare`, the init's parent on the host, reap it and exit by itself;
# killed first, it would leave the init a zombie for the host's PID 1 to
# reap. Whatever remains after 2 s is killed too. `-noleaf`: the link
# counts of cgroupfs directories would make find skip subdirectories.
# (Only if that pid is still in one of our cgroups: on a second run it
# may be another process's by now.)
if [ -s "$S/pid" ]; then
  init=$(cat "$S/pid")
  grep -qF "${SYSTEST_CGROUP:-$(basename "$S")}" "/proc/$init/cgroup" 2>/dev/null \
    && kill -9 "$init" 2>/dev/null
fi
ours=$(readlink /proc/self/ns/pid)
for round in $(seq 200); do
  left=$(procs "${dirs[@]}")
  [ -z "$left" ] && break
  for p in $left; do
    if [ "$round" -gt 40 ] || [ "$(readlink "/proc/$p/ns/pid" 2>/dev/null)" != "$ours" ]; then
      kill -9 "$p" 2>/dev/null
    fi
  done
  sleep 0.05
done
status=0
for d in "${dirs[@]}"; do
  [ -d "$d" ] || continue
  # Deepest first: a cgroup goes only once it has no children.
  find "$d" -noleaf -depth -type d -exec rmdir {} + 2>/dev/null
  if [ -d "$d" ]; then echo "teardown: cgroup left: $d" >&2; status=1; fi
done
if findmnt -rn -o TARGET | grep -qF "$S/"; then
  echo "teardown: mount left under $S" >&2; status=1
fi
[ "$status" = 0 ] && rm -f "$list" "$S/pid"
exit $status
