# The gateway as the README's "On the gateway" block set it up: Debian's
# nginx.service and coturn.service under this systemd, the shipped nginx
# files and turnserver.conf, the block's self-signed certificate; then
# its "Then, from anywhere" lines as checks, over TLS to gw.example
# (10.0.0.3, gateway-prep.sh) with that certificate as the only CA.
CA=/etc/execwire/tls/gateway.crt
G=https://gw.example
atoken=$(sed -n 's/^EXECWIRE_TOKEN=//p' /etc/execwire/execwire.env)
btoken=$(sed -n 's/^WSEP_TOKEN=//p' /etc/execwire/wsep.env)
[ -n "$atoken" ] && [ -n "$btoken" ] || no "execwire.env or wsep.env lacks its token"

state=$(systemctl is-active nginx coturn | tr '\n' ' ')
if [ "$state" = "active active " ]; then
  ok "nginx.service and coturn.service active"
else
  no "nginx, coturn: $state; $(systemctl status --no-pager nginx coturn 2>&1 | tail -20)"
fi
runs_as coturn.service turnserver
# coturn reads its file as its own user: installed root's, group
# turnserver, mode 640. Without it coturn starts on its defaults, only
# saying so in its log.
conf=$(stat -c '%a %U %G' /etc/turnserver.conf)
log=$(journalctl --no-pager -b -u coturn 2>&1)
if [ "$conf" = "640 root turnserver" ] && setpriv --reuid turnserver --regid turnserver --init-groups test -r /etc/turnserver.conf \
  && ! grep -qi 'config file' <<<"$log"; then
  ok "/etc/turnserver.conf: 640 root:turnserver, read by coturn as turnserver"
else
  no "/etc/turnserver.conf: '$conf'; coturn's log: $(grep -i 'config' <<<"$log" | tail -3)"
fi

# The shipped upstreams are where the README's blocks made the hosts
# listen: host-a's daemon (its toml) and host-b's servers (their .env).
upstream() { sed -nE "s/^upstream $1 +\{ *server ([^;]+);.*/\1/p" /etc/nginx/conf.d/execwire.conf; }
listen_of() { sed -nE 's/^EXECWIRE_ARGS=--listen ([^ ]+) .*/\1/p' "/etc/execwire/$1.env"; }
alisten=$(sed -nE 's/^listen = \["([^"]+)"\]/\1/p' /etc/execwire/execwire.toml)
seen="host_a $(upstream execwire_host_a) (daemon $alisten)"
match=1
[ "$(upstream execwire_host_a)" = 10.0.0.1:7777 ] && [ "$alisten" = 10.0.0.1:7777 ] || match=
for s in wsep pow webterm webexec; do
  seen="$seen, host_b_$s $(upstream "execwire_host_b_$s") ($s-server $(listen_of "$s"))"
  u=$(upstream "execwire_host_b_$s")
  [ -n "$u" ] && [ "$u" = "$(listen_of "$s")" ] && [ "${u%:*}" = 10.0.0.2 ] || match=
done
[ -n "$match" ] && ok "the shipped upstreams are where the hosts listen: $seen" \
  || no "upstreams against the hosts: $seen"
# IPv4 only: `getent hosts` asks for IPv6 first, which /etc/hosts lacks,
# and then waits out DNS, which has no server here (5 s).
gw_ip=$(getent ahostsv4 gw.example | awk 'NR == 1 { print $1 }')
[ "$gw_ip" = 10.0.0.3 ] || no "gw.example resolves to '$gw_ip', not 10.0.0.3"

# wsep through the gateway: the daemon on host-a, wsep-server on host-b.
A=wss://gw.example/host-a/wsep
B=wss://gw.example/host-b/wsep/
WSEP_TOKEN=$atoken ready "$A" --ca "$CA" || no "the daemon never ran a command at $A"
WSEP_TOKEN=$atoken hostname_check "$A" --ca "$CA"
WSEP_TOKEN=$btoken ready "$B" --ca "$CA" || no "wsep-server never ran a command at $B"
WSEP_TOKEN=$btoken hostname_check "$B" --ca "$CA"
out=$(WSEP_TOKEN=$atoken wsep "$A" -- true 2>&1 < /dev/null); rc=$?
if [ $rc != 0 ] && grep -qiE 'UnknownIssuer|certificate' <<<"$out"; then
  ok "the gateway's wss:// without --ca refused: the certificate's issuer is unknown"
else
  no "the gateway's wss:// without --ca: exit $rc, $out"
fi

# The README's pow call: date runs through the gateway with the token,
# 401 without it.
P=$G/host-a/pow
call='{"call":"date","params":[]}'
anon=$(curl -s --cacert "$CA" -o /dev/null -w '%{http_code}' -d "$call" "$P/new")
id=$(curl -s --cacert "$CA" -H "Authorization: Bearer $atoken" -d "$call" "$P/new" | tr -d '"')
status=
for _ in $(seq 100); do
  status=$(curl -s --cacert "$CA" -H "Authorization: Bearer $atoken" "$P/status/$id")
  grep -q pending <<<"$status" || break
  sleep 0.05
done
if [ "$anon" = 401 ] && [ -n "$id" ] && grep -qE '"fulfilled".*"value": *"[0-9]{4}-[0-9]{2}-[0-9]{2}T' <<<"$status"; then
  ok "POST $P/new: date ran (id $id), 401 without the token"
else
  no "POST $P/new: without the token $anon; with it id '$id', status $status"
fi

# webexec's page on both hosts, and ice-servers with the token: the TURN
# URL and credentials minted from coturn's secret.
# webexec-server was restarted just now (fleet.sh) and is "active" before
# it listens; until then nginx answers 502: asked until 200 (5 s at most).
pages=
for u in "$G/host-a/" "$G/host-b/webexec/"; do
  for _ in $(seq 100); do
    code=$(curl -s --cacert "$CA" -o /dev/null -w '%{http_code}' "$u")
    [ "$code" = 200 ] && break
    sleep 0.05
  done
  pages="$pages $code"
done
aice=$(curl -s --cacert "$CA" -H "Authorization: Bearer $atoken" "$G/host-a/ice-servers")
bice=$(curl -s --cacert "$CA" -H "Authorization: Bearer $btoken" "$G/host-b/webexec/ice-servers")
if [ "$pages" = " 200 200" ] && grep -q '"turn:gw.example:3478"' <<<"$aice" && grep -q '"turn:gw.example:3478"' <<<"$bice" \
  && grep -qE '"credential": *"[^"]+"' <<<"$aice$bice"; then
  ok "webexec's page at $G/host-a/ and $G/host-b/webexec/ (200), ice-servers with turn:gw.example:3478 and a credential"
else
  no "webexec through the gateway: pages$pages; ice-servers host-a $aice; host-b $bice"
fi

# The credentials each webexec host minted authenticate at the running
# coturn and relay: turnutils_uclient allocates a relay with them and
# sends 3 messages through it to an echo peer on host-a (turnutils_peer,
# 10.0.0.1:3480, an allowed peer), all of which come back; with a wrong
# credential the allocation is refused. Both hosts' clients at once (each
# waits about a second after its last message).
turnutils_peer -L 10.0.0.1 -p 3480 > /dev/null 2>&1 &
peer=$!
for _ in $(seq 100); do ss -uln | grep -q ' 10\.0\.0\.1:3480 ' && break; sleep 0.05; done
field() { sed -nE "s/.*\"$1\": *\"([^\"]+)\".*/\1/p" <<<"$2"; }
clients=()
for host in host-a host-b; do
  if [ $host = host-a ]; then ice=$aice; else ice=$bice; fi
  user=$(field username "$ice")
  cred=$(field credential "$ice")
  [ -n "$user" ] && [ -n "$cred" ] || no "ice-servers of $host: no username or credential: $ice"
  timeout 10 turnutils_uclient -c -n 3 -m 1 -e 10.0.0.1 -r 3480 -u "$user" -w "$cred" "$gw_ip" \
    > "/tmp/turn-$host.out" 2>&1 &
  clients+=($!)
  timeout 10 turnutils_uclient -c -n 3 -m 1 -e 10.0.0.1 -r 3480 -u "$user" -w "not-$cred" "$gw_ip" \
    > "/tmp/turn-$host.bad" 2>&1 &
  clients+=($!)
done
wait "${clients[@]}"
for host in host-a host-b; do
  out=$(cat "/tmp/turn-$host.out"); bad=$(cat "/tmp/turn-$host.bad")
  if grep -q 'tot_send_msgs=3, tot_recv_msgs=3' <<<"$out" && grep -q 'Total lost packets 0 ' <<<"$out" \
    && grep -q 'Cannot complete Allocation' <<<"$bad" && ! grep -q 'tot_recv_msgs=[1-9]' <<<"$bad"; then
    ok "coturn at gw.example:3478 relays 3 messages to 10.0.0.1 and back with $host's credential, refuses a wrong one"
  else
    no "coturn with $host's credential: $(tail -6 <<<"$out"); with a wrong one: $(tail -3 <<<"$bad")"
  fi
done
kill "$peer"

# ... and nowhere else on the private network: the gateway's own
# 10.0.0.3, in the shipped file's denied 10.0.0.0/8 and outside the
# allowed 10.0.0.1-10.0.0.2, is refused with a valid credential, although
# an echo peer answers there (coturn would otherwise relay a browser into
# the gateway's network).
turnutils_peer -L 10.0.0.3 -p 3480 > /dev/null 2>&1 &
peer=$!
for _ in $(seq 100); do ss -uln | grep -q ' 10\.0\.0\.3:3480 ' && break; sleep 0.05; done
user=$(field username "$aice")
cred=$(field credential "$aice")
out=$(timeout 10 turnutils_uclient -c -n 3 -m 1 -e 10.0.0.3 -r 3480 -u "$user" -w "$cred" "$gw_ip" 2>&1)
if grep -qE '403|Forbidden' <<<"$out" && ! grep -q 'tot_recv_msgs=[1-9]' <<<"$out"; then
  ok "coturn refuses to relay to 10.0.0.3, a private address not allowed, with a valid credential"
else
  no "coturn relaying to 10.0.0.3 (denied): $(tail -8 <<<"$out")"
fi
kill "$peer"
