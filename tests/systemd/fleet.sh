# Between the README's gateway block and the checks through it: the
# fleet as the shipped nginx file names it, in these one namespaces.
# host-b's single servers (10.0.0.2) are still up from the per-server
# block; host-a's daemon (10.0.0.1:7777) comes back with the README's
# daemon block, run again after this (fresh-host.sh had undone it).
set -eux
# The shipped nginx file reaches the hosts over plain HTTP: wsep-server
# goes back to plain without the tls.conf the per-server checks added.
rm -r /etc/systemd/system/execwire@wsep.service.d
systemctl daemon-reload
# "Every webexec host gets the same secret": coturn's, which the gateway
# block made, for host-b's webexec-server too (host-a's block below takes
# it from /etc/turnserver.conf as well).
secret=$(sed -n 's/^static-auth-secret=//p' /etc/turnserver.conf)
[ -n "$secret" ]
grep -q '^WEBEXEC_TURN_SECRET=' /etc/execwire/webexec.env
sed -i "s|^WEBEXEC_TURN_SECRET=.*|WEBEXEC_TURN_SECRET=$secret|" /etc/execwire/webexec.env
systemctl restart execwire@wsep execwire@webexec
# The gateway block's "Set ... allowed-peer-ip (the fleet's private
# addresses)": the shipped file's own line for this fleet, uncommented,
# so that coturn relays to host-a and host-b (10.0.0.0/8 is denied
# otherwise).
grep -qx '# allowed-peer-ip=10.0.0.1-10.0.0.2' /etc/turnserver.conf
sed -i 's/^# allowed-peer-ip=10.0.0.1-10.0.0.2$/allowed-peer-ip=10.0.0.1-10.0.0.2/' /etc/turnserver.conf
systemctl restart coturn
