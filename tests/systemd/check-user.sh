# The per-user daemon (deploy/systemd/user/execwire.service) as the
# README's per-user paragraph installs it, for a user of its own:
# `execwire` in ~/.local/bin, ~/.config/execwire/execwire.toml (the
# shipped file as it is: 127.0.0.1:7777) and execwire.env, the unit in
# ~/.config/systemd/user/, `loginctl enable-linger` (which starts the
# user's manager, user@UID.service, as a login would) and `systemctl
# --user enable --now execwire`, run as that user.
name=systest
useradd --create-home --shell /bin/bash "$name" || no "useradd $name"
uid=$(id -u "$name")
token=$(head -c 24 /dev/urandom | base64 | tr '+/' '-_')
runuser -u "$name" -- env TOKEN="$token" BIN="$BIN" REPO="$REPO" bash -euc '
  cd
  install -D -m 755 "$BIN/execwire" .local/bin/execwire
  install -D -m 644 "$REPO/deploy/execwire.toml" .config/execwire/execwire.toml
  (umask 077; printf "%s\n" "EXECWIRE_TOKEN=$TOKEN" > .config/execwire/execwire.env)
  install -D -m 644 "$REPO/deploy/systemd/user/execwire.service" .config/systemd/user/execwire.service
' || no "installing the user unit as $name"

loginctl enable-linger "$name" || no "loginctl enable-linger $name"
# enable-linger starts user@UID.service without waiting for it: asked
# until its manager is up (5 s at most).
for _ in $(seq 100); do
  [ "$(systemctl show -p ActiveState --value "user@$uid.service")" = active ] && break
  sleep 0.05
done
state=$(systemctl show -p ActiveState --value "user@$uid.service")
[ "$state" = active ] || no "user@$uid.service is $state after enable-linger: $(systemctl status --no-pager "user@$uid.service" 2>&1 | tail -8)"
as_user() { runuser -u "$name" -- env XDG_RUNTIME_DIR="/run/user/$uid" "$@"; }
out=$(as_user systemctl --user enable --now execwire 2>&1) \
  || no "systemctl --user enable --now execwire: $out"

U=ws://127.0.0.1:7777/wsep
export WSEP_TOKEN=$token
ready "$U" || no "the user's daemon never ran a command at $U: $(as_user systemctl --user status --no-pager execwire 2>&1 | tail -8)"
pid=$(as_user systemctl --user show -p MainPID --value execwire)
cg=$(cut -d: -f3 "/proc/$pid/cgroup" 2>/dev/null | tail -1)
out=$(wsep "$U" -- sh -c 'id -un; pwd' 2>&1 < /dev/null)
# The unit names the certificate's file itself (not %S, which systemd 252
# resolves to ~/.config for user units).
pem=/home/$name/.local/state/execwire/webrtc.pem
if [ "$out" = "$(printf '%s\n%s' "$name" "/home/$name")" ] && [ "$(stat -c '%a %U' "$pem" 2>&1)" = "600 $name" ] \
  && grep -q "/user@$uid.service/app.slice/execwire.service" <<<"$cg"; then
  ok "the user unit runs commands as $name in its home, under its manager ($cg), webrtc.pem in ~/.local/state"
else
  no "the user unit: wsep -- id -un; pwd: $out; $pem: $(stat -c '%a %U' "$pem" 2>&1); main pid $pid in '$cg'; webrtc.pem found at: $(find /home/$name -name webrtc.pem)"
fi
