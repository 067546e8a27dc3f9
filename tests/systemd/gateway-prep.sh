# Before the README's gateway block: gw.example is the gateway's name.
# It resolves (the namespaces' /etc/hosts, in the overlay) to 10.0.0.3,
# the gateway's end of the veth pair (inner.sh), where nginx listens on
# 443 and coturn on 3478 (both listen on every address).
set -eux
printf '10.0.0.3 gw.example\n' >> /etc/hosts
