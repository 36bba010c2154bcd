# %pre of the sluice RPM: the sluice system user exists before files owned by it are laid down.
getent group sluice >/dev/null || groupadd -r sluice
getent passwd sluice >/dev/null || useradd -r -g sluice -d /var/lib/sluice -M \
    -s /sbin/nologin -c "Sluice policy service" sluice
exit 0
