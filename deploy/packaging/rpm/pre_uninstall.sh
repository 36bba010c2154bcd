# %preun of the sluice RPM: erasing the package ($1 = 0) stops its units first.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl stop sluice.service sluice-edge.service sluice-quota.service || :
fi
exit 0
