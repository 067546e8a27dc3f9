# One unit per server (deploy/systemd/execwire@.service) as the README's
# "Or one unit per server" block installed them: host-b, 10.0.0.2, wsep
# on 8080, webexec on 7777, pow on 3000 and webterm on 6969 under /host-b/.
U=ws://10.0.0.2:8080/host-b/wsep/
H=http://10.0.0.2:7777/host-b/webexec
WSEP_TOKEN=$(sed -n 's/^WSEP_TOKEN=//p' /etc/execwire/wsep.env)
export WSEP_TOKEN
wtoken=$(sed -n 's/^WEBEXEC_TOKEN=//p' /etc/execwire/webexec.env)

runs_as execwire@wsep.service execwire
runs_as execwire@webexec.service execwire
runs_as execwire@pow.service execwire
runs_as execwire@webterm.service execwire
ready "$U" || no "wsep-server never ran a command at $U"
hostname_check "$U"
tty_check "$U"
page=$(curl -s -o /dev/null -w '%{http_code}' "$H/")
ice=$(curl -s -H "Authorization: Bearer $wtoken" "$H/ice-servers")
if [ "$page" = 200 ] && grep -q '"turn:gw.example:3478"' <<<"$ice" && grep -qE '"credential": *"[^"]+"' <<<"$ice"; then
  ok "webexec-server: its page, and TURN credentials with the token"
else
  no "webexec-server: page $page, ice-servers $ice"
fi

# pow-server: its REST API runs one of its built-in processes (date) with
# the token and refuses the call without it; its OpenAPI document is
# served without one.
P=http://10.0.0.2:3000/host-b/pow
ptoken=$(sed -n 's/^POW_TOKEN=//p' /etc/execwire/pow.env)
http_ready "$P/openapi.json" || no "pow-server never answered at $P/openapi.json"
api=$(curl -s "$P/openapi.json")
anon=$(curl -s -o /dev/null -w '%{http_code}' -d '{"call":"date","params":[]}' "$P/new")
id=$(curl -s -H "Authorization: Bearer $ptoken" -d '{"call":"date","params":[]}' "$P/new" | tr -d '"')
status=
for _ in $(seq 100); do
  status=$(curl -s -H "Authorization: Bearer $ptoken" "$P/status/$id")
  grep -q pending <<<"$status" || break
  sleep 0.05
done
if [ "$anon" = 401 ] && grep -q '"/new"' <<<"$api" \
  && grep -qE '"fulfilled".*"value": *"[0-9]{4}-[0-9]{2}-[0-9]{2}T' <<<"$status"; then
  ok "pow-server: date ran through REST (id $id), 401 without the token, openapi.json served"
else
  no "pow-server: POST /new without the token $anon; with it id '$id', status $status; openapi.json: $(head -c 200 <<<"$api")"
fi

# webterm-server: a WebSocket upgrade, authentication with the token, a
# command that runs as the service's user; a wrong token is refused.
W=ws://10.0.0.2:6969/host-b/webterm/
WEBTERM_TOKEN=$(sed -n 's/^WEBTERM_TOKEN=//p' /etc/execwire/webterm.env)
export WEBTERM_TOKEN
for _ in $(seq 100); do "$BIN/systest-webterm" "$W" true >/dev/null 2>&1 && break; sleep 0.05; done
out=$("$BIN/systest-webterm" "$W" 'id -un; hostname; exit 3' 2>&1); rc=$?
if [ $rc = 3 ] && [ "$out" = "$(printf 'execwire\nexecwire-systest')" ]; then
  ok "webterm-server: a command ran as execwire over $W, exit code 3 back"
else
  no "webterm-server at $W: exit $rc, output: $out"
fi
out=$(WEBTERM_TOKEN=not-the-token "$BIN/systest-webterm" "$W" true 2>&1); rc=$?
if [ $rc = 125 ] && grep -q 'authentication refused' <<<"$out"; then
  ok "webterm-server refuses a wrong token"
else
  no "webterm-server with a wrong token: exit $rc, $out"
fi

# tls.conf, installed as the README says, with a self-signed certificate
# (not a CA) for the address: the certificate and key reach the server as
# credentials (LoadCredential=), and it serves wss://.
install -d -m 700 /etc/execwire/tls
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj /CN=host-b -addext subjectAltName=IP:10.0.0.2 -addext basicConstraints=critical,CA:FALSE \
  -keyout /etc/execwire/tls/wsep.key -out /etc/execwire/tls/wsep.crt 2>/dev/null
chmod 600 /etc/execwire/tls/*
cp /etc/execwire/tls/wsep.crt /tmp/ca.crt
cd "$REPO"
install -D -m 644 deploy/systemd/tls.conf /etc/systemd/system/execwire@wsep.service.d/tls.conf
systemctl daemon-reload && systemctl restart execwire@wsep
T=wss://10.0.0.2:8080/host-b/wsep/
ready "$T" --ca /tmp/ca.crt || no "wsep-server never answered on $T with --ca"
hostname_check "$T" --ca /tmp/ca.crt
out=$(wsep "$T" -- true 2>&1 < /dev/null); rc=$?
if [ $rc != 0 ] && grep -qiE 'UnknownIssuer|certificate' <<<"$out"; then
  ok "wss:// without --ca refused: the certificate's issuer is unknown"
else
  no "wss:// without --ca: exit $rc, $out"
fi
