#!/bin/bash
# PID 1 of the check's namespaces (boot.sh made them; mounts already
# private): builds a throwaway root and execs systemd as its init.
#
# Environment: SYSTEST_DIR, SYSTEST_REPO (the checkout whose README and
# deploy/ are checked), SYSTEST_BIN (the directory of the binaries).
set -eux
S=$SYSTEST_DIR
R=$S/root
mkdir -p "$S/rw" "$R"
# The root is an overlay: the host's / below, a tmpfs above. Whatever the
# README's blocks write (useradd, /etc, /usr/local/bin, /var/lib) lands
# in RAM and goes away with the mount namespace.
mount -t tmpfs -o mode=755,size=2g tmpfs "$S/rw"
mkdir -p "$S/rw/upper" "$S/rw/work"
mount -t overlay overlay -o "lowerdir=/,upperdir=$S/rw/upper,workdir=$S/rw/work" "$R"
# The checkout and the binaries at fixed places, read-only: an overlay of
# / does not show what is mounted below / (a /work or /tmp of its own).
mkdir -p "$R/systest/repo" "$R/systest/bin"
mount --bind "$SYSTEST_REPO" "$R/systest/repo"
mount -o remount,bind,ro "$R/systest/repo"
mount --bind "$SYSTEST_BIN" "$R/systest/bin"
mount -o remount,bind,ro "$R/systest/bin"

mount -t proc -o nosuid,nodev,noexec proc "$R/proc"
# /proc/sys read-only: the kernel's tunables are global (not per
# namespace); systemd-sysctl and PID 1 then leave them alone.
mount --bind "$R/proc/sys" "$R/proc/sys"
mount -o remount,bind,ro "$R/proc/sys"
if [ -e "$R/proc/sysrq-trigger" ]; then
  mount --bind "$R/proc/sysrq-trigger" "$R/proc/sysrq-trigger"
  mount -o remount,bind,ro "$R/proc/sysrq-trigger"
fi
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$R/sys"
# The cgroup hierarchies, mounted afresh inside the cgroup namespace: they
# show only the child cgroup boot.sh made, as systemd's root.
if [ "$(stat -f -c %T /sys/fs/cgroup)" = cgroup2fs ]; then
  mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$R/sys/fs/cgroup"
else
  mount -t tmpfs -o mode=755,nosuid,nodev,noexec tmpfs "$R/sys/fs/cgroup"
  for c in $(awk '$4 == 1 && $1 != "#subsys_name" { print $1 }' /proc/cgroups); do
    mountpoint -q "/sys/fs/cgroup/$c" || continue
    mkdir "$R/sys/fs/cgroup/$c"
    mount -t cgroup -o "nosuid,nodev,noexec,$c" cgroup "$R/sys/fs/cgroup/$c"
  done
  mkdir "$R/sys/fs/cgroup/systemd"
  mount -t cgroup -o nosuid,nodev,noexec,none,name=systemd cgroup "$R/sys/fs/cgroup/systemd"
  if mountpoint -q /sys/fs/cgroup/unified; then
    mkdir "$R/sys/fs/cgroup/unified"
    mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$R/sys/fs/cgroup/unified"
  fi
fi

# /dev: only pseudo-devices, and a devpts of its own (newinstance) for
# the PTYs the units must allow.
mount -t tmpfs -o mode=755,nosuid tmpfs "$R/dev"
for d in null zero full random urandom tty; do
  touch "$R/dev/$d"; mount --bind "/dev/$d" "$R/dev/$d"
done
# systemd logs to its console: a file the check prints when it fails.
touch "$R/dev/console"; mount --bind "$S/console.log" "$R/dev/console"
mkdir "$R/dev/pts" "$R/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5,nosuid,noexec devpts "$R/dev/pts"
ln -s pts/ptmx "$R/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/dev/shm"
ln -s /proc/self/fd "$R/dev/fd"
ln -s /proc/self/fd/0 "$R/dev/stdin"
ln -s /proc/self/fd/1 "$R/dev/stdout"
ln -s /proc/self/fd/2 "$R/dev/stderr"
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$R/run"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/tmp"

# Whatever the host has enabled would start here on copies of its files
# (a database, timers, gettys on a console that is a file): masked. But
# nginx and coturn: the gateway's check runs them as its services (the
# README's gateway block, as after their packages' install).
for u in $(cd "$R/etc/systemd/system" && ls -d ./*.wants ./*.requires 2>/dev/null); do
  for f in "$R/etc/systemd/system/$u"/*; do
    case "$f" in */nginx.service|*/coturn.service) continue ;; esac
    case "$f" in *.service|*.timer|*.socket|*.path) ;; *) continue ;; esac
    [ -e "$f" ] || [ -L "$f" ] || continue
    ln -sf /dev/null "$R/etc/systemd/system/$(basename "$f")"
  done
done
for u in getty@tty1.service console-getty.service serial-getty@.service \
         apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer \
         e2scrub_reap.service fstrim.timer man-db.timer; do
  ln -sf /dev/null "$R/etc/systemd/system/$u"
done
echo execwire-systest > "$R/etc/hostname"
hostname execwire-systest
# The fleet's private network as the README lays it out: host-a
# (10.0.0.1, the daemon) and host-b (10.0.0.2, single servers) on one end
# of a veth pair, the gateway (10.0.0.3) on the other, both ends here.
# WebRTC needs an interface that is not loopback, and the default route
# is what a fleet host normally has (webexec's mDNS wants a multicast
# route; without one it now goes on without mDNS).
ip link add va type veth peer name vb
ip addr add 10.0.0.1/24 dev va
ip addr add 10.0.0.2/24 dev va
ip addr add 10.0.0.3/24 dev vb
ip link set lo up
ip link set va up
ip link set vb up
ip route add default via 10.0.0.3 dev va

mkdir -p "$R/.oldroot"
cd "$R"
pivot_root . .oldroot
cd /
umount -l /.oldroot
rmdir /.oldroot
# Shared propagation, as systemd-nspawn sets up for its containers:
# systemd 252 builds a service's LoadCredential= ramfs in a helper mount
# namespace and relies on it propagating. With private mounts the service
# gets an empty, root-owned /run/credentials/UNIT (tls.conf then fails
# with "Permission denied").
mount --make-rshared /
exec env -i container=execwire-systest TERM=dumb \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  /lib/systemd/systemd --unit=multi-user.target --log-target=console
