# The README's blocks are for two different hosts. This undoes the
# daemon block (service, user, files) so that the per-server block runs
# as on a host that has never had execwire.
set -eux
systemctl disable --now execwire.service
rm -rf /etc/systemd/system/execwire.service /etc/systemd/system/execwire.service.d \
  /usr/local/bin/execwire /usr/local/bin/wsep
systemctl daemon-reload
userdel execwire
rm -rf /etc/execwire /var/lib/execwire
