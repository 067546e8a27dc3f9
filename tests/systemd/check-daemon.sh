# The daemon unit (deploy/systemd/execwire.service) as the README's "On
# every host" block installed it: host-a, 10.0.0.1:7777, base path /host-a/.
U=ws://10.0.0.1:7777/host-a/wsep
H=http://10.0.0.1:7777/host-a
token=$(sed -n 's/^EXECWIRE_TOKEN=//p' /etc/execwire/execwire.env)
secret=$(sed -n 's/^WEBEXEC_TURN_SECRET=//p' /etc/execwire/execwire.env)
export WSEP_TOKEN=$token
[ -n "$token" ] && [ -n "$secret" ] || no "execwire.env lacks the token or the TURN secret"

runs_as execwire.service execwire
ready "$U" || no "the daemon never ran a command at $U"
hostname_check "$U"
tty_check "$U"

# The daemon takes its token and TURN secret out of the environment its
# commands inherit.
env_out=$(wsep "$U" -- env 2>&1 < /dev/null)
if ! grep -q '^PATH=' <<<"$env_out"; then
  no "wsep -- env printed no environment: $env_out"
elif grep -qE 'EXECWIRE_TOKEN|WEBEXEC_TURN_SECRET' <<<"$env_out" \
  || grep -qF -e "$token" -e "$secret" <<<"$env_out"; then
  no "a command sees the token or the TURN secret: $(grep -E 'TOKEN|SECRET' <<<"$env_out")"
else
  ok "a command's environment holds neither EXECWIRE_TOKEN nor WEBEXEC_TURN_SECRET"
fi

# ice-servers: only with the token, and with credentials minted from the
# secret for the toml's turn-url.
code=$(curl -s -o /dev/null -w '%{http_code}' "$H/ice-servers")
ice=$(curl -s -H "Authorization: Bearer $token" "$H/ice-servers")
if [ "$code" = 401 ] && grep -q '"turn:gw.example:3478"' <<<"$ice" \
  && grep -qE '"credential": *"[^"]+"' <<<"$ice" && grep -qE '"username": *"[^"]+"' <<<"$ice"; then
  ok "ice-servers: 401 without the token, TURN credentials with it"
else
  no "ice-servers: $code without the token; with it: $ice"
fi

# webexec's WebRTC certificate is kept in the state directory, private,
# and is the same after a restart (its fingerprint is what clients pin).
pem=/var/lib/execwire/webrtc.pem
perm=$(stat -c '%a %U' "$pem" 2>&1)
before=$(sha256sum "$pem" 2>&1)
old=$(systemctl show -p MainPID --value execwire)
systemctl restart execwire
ready "$U" || no "the daemon never came back after systemctl restart"
new=$(systemctl show -p MainPID --value execwire)
after=$(sha256sum "$pem" 2>&1)
if [ "$perm" = "600 execwire" ] && [ "$before" = "$after" ] && [ "$old" != "$new" ]; then
  ok "$pem: mode 600, execwire's, the same bytes after a restart (pid $old -> $new)"
else
  no "$pem: '$perm'; before the restart (pid $old) $before; after (pid $new) $after"
fi

# Restart=on-failure: kill -9 of the main process, systemd starts it
# again after RestartSec (2 s; NRestarts is asked until it counts one).
n0=$(systemctl show -p NRestarts --value execwire)
old=$(systemctl show -p MainPID --value execwire)
kill -9 "$old"
for _ in $(seq 200); do
  [ "$(systemctl show -p NRestarts --value execwire)" = $((n0 + 1)) ] && break
  sleep 0.05
done
n1=$(systemctl show -p NRestarts --value execwire)
if [ "$n1" = $((n0 + 1)) ] && ready "$U"; then
  ok "kill -9 of the daemon: restarted (NRestarts $n0 -> $n1, pid $old -> $(systemctl show -p MainPID --value execwire))"
else
  no "kill -9 of the daemon: NRestarts $n0 -> $n1, $(systemctl is-active execwire)"
fi

# systemctl stop ends every command the daemon runs (KillMode=control-group):
# one still running, and one that left its session (setsid), which the
# daemon itself cannot see.
wsep "$U" -- sleep 1000 < /dev/null > /dev/null 2>&1 &
client=$!
# The command returns once the sleep leads a session of its own: before
# that, the end of its session's process group would take it too.
wsep "$U" -- sh -c 'setsid sleep 1001 >/dev/null 2>&1 </dev/null & p=$!
  for i in $(seq 500); do [ "$(ps -o sid= -p $p | tr -d " ")" = $p ] && break; sleep 0.01; done' < /dev/null
for _ in $(seq 100); do pgrep -x -f 'sleep 1000' >/dev/null && break; sleep 0.05; done
cg=$(systemctl show -p ControlGroup --value execwire)
if pgrep -x -f 'sleep 1000' >/dev/null && pgrep -x -f 'sleep 1001' >/dev/null; then
  systemctl stop execwire
  wait "$client"; crc=$?
  if pgrep -a -f -x 'sleep 100[01]'; then
    no "systemctl stop left a command running"
  else
    ok "systemctl stop ends a running command (client exit $crc) and a setsid one ($cg)"
  fi
else
  no "the sleeps did not start: $(pgrep -a sleep)"
fi

# execwire-tls.conf, installed as the README says (the drop-in as
# execwire.service.d/tls.conf, the files as /etc/execwire/tls/execwire.*),
# with a self-signed certificate (not a CA) for the daemon's address: the
# daemon serves wss:// that `wsep --ca` accepts and plain `wsep` refuses.
install -d -m 700 /etc/execwire/tls
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj /CN=host-a -addext subjectAltName=IP:10.0.0.1 -addext basicConstraints=critical,CA:FALSE \
  -keyout /etc/execwire/tls/execwire.key -out /etc/execwire/tls/execwire.crt 2>/dev/null
chmod 600 /etc/execwire/tls/*
cp /etc/execwire/tls/execwire.crt /tmp/daemon-ca.crt
cd "$REPO"
install -D -m 644 deploy/systemd/execwire-tls.conf /etc/systemd/system/execwire.service.d/tls.conf
systemctl daemon-reload && systemctl restart execwire
T=wss://10.0.0.1:7777/host-a/wsep
ready "$T" --ca /tmp/daemon-ca.crt || no "the daemon never answered on $T with --ca"
hostname_check "$T" --ca /tmp/daemon-ca.crt
out=$(wsep "$T" -- true 2>&1 < /dev/null); rc=$?
if [ $rc != 0 ] && grep -qiE 'UnknownIssuer|certificate' <<<"$out"; then
  ok "the daemon's wss:// without --ca refused: the certificate's issuer is unknown"
else
  no "the daemon's wss:// without --ca: exit $rc, $out"
fi
