# %post of the sluice RPM: /var/lib/sluice for the SQLite policy database (kept when the
# package is erased); units are neither enabled nor started. On upgrade ($1 > 1), units
# that are running are restarted on the new binary.
[ -d /var/lib/sluice ] || install -d -o sluice -g sluice -m 0750 /var/lib/sluice
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || :
    [ "$1" -gt 1 ] && systemctl try-restart sluice.service sluice-edge.service sluice-quota.service || :
fi
exit 0
