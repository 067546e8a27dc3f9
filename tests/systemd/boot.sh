#!/bin/bash
# Host side of the systemd check: moves itself into a fresh child cgroup
# of every hierarchy it is in, then starts inner.sh as PID 1 of new
# cgroup, mount, pid, uts, ipc and net namespaces (not a user namespace:
# systemd needs real root for its units' sandboxing).
#
# Why the child cgroup: `unshare --cgroup` roots the new cgroup namespace
# at the cgroup the process is in. In a child of our own, systemd's whole
# tree (init.scope, system.slice, ...) lands below it, never in the host's
# hierarchy proper, and teardown.sh removes it by that one name.
#
# Environment: SYSTEST_DIR (scratch directory, exists), SYSTEST_CGROUP
# (the child cgroup's name, unique per run), SYSTEST_REPO, SYSTEST_BIN.
set -eu
S=$SYSTEST_DIR
here=$(dirname "$(readlink -f "$0")")
# Read once: /proc/self/cgroup changes while this shell moves between
# cgroups, and reading it line by line while moving once made a stray
# directory at the host's cgroup root.
cgroups=$(cat /proc/self/cgroup)
while IFS=: read -r _ ctrl path; do
  case "$ctrl" in
    "")
      # cgroup v2: beside v1 (hybrid) at unified/, or alone at the root.
      if mountpoint -q /sys/fs/cgroup/unified; then mnt=/sys/fs/cgroup/unified
      else mnt=/sys/fs/cgroup; fi ;;
    name=*) mnt=/sys/fs/cgroup/${ctrl#name=} ;;
    *) mnt=/sys/fs/cgroup/$ctrl ;;
  esac
  mountpoint -q "$mnt" || { echo "no cgroup hierarchy at $mnt" >&2; exit 1; }
  d=$mnt${path%/}/$SYSTEST_CGROUP
  # Recorded before it exists, so that teardown.sh finds it whatever
  # happens next.
  echo "$d" >> "$S/cgroups"
  mkdir "$d"
  if [ "$ctrl" = cpuset ]; then
    # A new cpuset cgroup starts empty; no process may join it then.
    cat "$mnt${path%/}/cpuset.cpus" > "$d/cpuset.cpus"
    cat "$mnt${path%/}/cpuset.mems" > "$d/cpuset.mems"
  fi
  echo $$ > "$d/cgroup.procs"
done <<< "$cgroups"
exec unshare --cgroup --mount --pid --fork --uts --ipc --net --propagation private \
  "$here/inner.sh"
