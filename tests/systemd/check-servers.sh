# One unit per server (deploy/systemd/execwire@.service) as the README's
# "Or one unit per server" block installed them: host-b, 10.0.0.2, wsep
# on 8080 and webexec on 7777 under /host-b/.
U=ws://10.0.0.2:8080/host-b/wsep/
H=http://10.0.0.2:7777/host-b/webexec
WSEP_TOKEN=$(sed -n 's/^WSEP_TOKEN=//p' /etc/execwire/wsep.env)
export WSEP_TOKEN
wtoken=$(sed -n 's/^WEBEXEC_TOKEN=//p' /etc/execwire/webexec.env)

runs_as execwire@wsep.service execwire
runs_as execwire@webexec.service execwire
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
