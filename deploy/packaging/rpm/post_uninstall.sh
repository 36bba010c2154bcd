# %postun of the sluice RPM: /etc/sluice/serve.toml, if changed, is kept as .rpmsave and
# /var/lib/sluice (the policy database) is never deleted by the package.
[ -d /run/systemd/system ] && systemctl daemon-reload || :
exit 0
