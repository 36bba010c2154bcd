#!/usr/bin/env bash
# Checks what operators install (see docs/install.md), against real things:
#   - the container image: built offline from this repository (scripts/build-image.sh:
#     static binary on scratch, buildah, nothing pulled), run with rootful podman (runc,
#     cgroupfs, host network, deploy/container/containers.conf), imports a policy file into
#     its /data volume, answers policy requests over TCP on 127.0.0.1 (a quota that refuses
#     the second message), serves /metrics, runs as UID 65532, exits 0 soon after SIGTERM;
#     the Helm chart's default image is the one built;
#   - the Debian package (scripts/build-packages.sh, cargo-deb): `dpkg -i` creates the sluice
#     user and /var/lib/sluice, enables and starts nothing; `systemd-analyze verify` accepts
#     the installed units; the installed /usr/bin/sluice, started here as the sluice user with
#     the packaged /etc/sluice/serve.toml, answers a policy request; reinstalling keeps a
#     changed serve.toml and the database; `dpkg -r` keeps both; `dpkg -P` deletes them;
#     man pages and completions are installed;
#   - the RPM (cargo-generate-rpm): its file list (`rpm -qlp`), config file, owner and scripts.
# Needs root on Debian; installs buildah, podman, runc, rpm, rpm2cpio, cpio, curl (apt-get) and cargo-deb,
# cargo-generate-rpm (cargo install) when missing. Installs and purges the `sluice` Debian
# package on this machine. Ends with "package checks: N passed, M failed"; exits non-zero
# on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

passed=0
failed=0
WORK="$(mktemp -d)"
CONTAINER="sluice-test-$$"
VOLUME="sluice-test-data-$$"
SERVE_PID=""
export CONTAINERS_CONF="$PWD/deploy/container/containers.conf"

cleanup() {
    [ -z "$SERVE_PID" ] || kill "$SERVE_PID" 2>/dev/null || true
    podman rm -f -t 0 "$CONTAINER" >/dev/null 2>&1 || true
    podman volume rm -f "$VOLUME" >/dev/null 2>&1 || true
    if dpkg -s sluice >/dev/null 2>&1; then dpkg -P sluice >/dev/null 2>&1 || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# check NAME COMMAND...: runs the command, counts it, shows its output on failure.
check() {
    local name="$1"
    shift
    if "$@" >"$WORK/out" 2>&1; then
        passed=$((passed + 1))
        echo "ok   $name"
    else
        failed=$((failed + 1))
        echo "FAIL $name"
        sed 's/^/     /' "$WORK/out"
    fi
}

# apt_install (one `apt-get update` per run) comes from scripts/services.sh.
. scripts/services.sh
missing=()
for tool in buildah:buildah podman:podman runc:runc rpm:rpm rpm2cpio:rpm2cpio cpio:cpio curl:curl \
    systemd-analyze:systemd; do
    command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
[ "${#missing[@]}" -eq 0 ] || apt_install --no-install-recommends "${missing[@]}"

# free_port: a port nothing listens on (the kernel's pick for 127.0.0.1:0).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# wait_port PORT: until something accepts on 127.0.0.1:PORT (at most 20 s).
wait_port() {
    for _ in $(seq 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on 127.0.0.1:$1" >&2
    return 1
}
# ask PORT SENDER INSTANCE: one RCPT request over TCP; prints the reply's action line.
ask() {
    python3 - "$@" <<'EOF'
import socket, sys
port, sender, instance = int(sys.argv[1]), sys.argv[2], sys.argv[3]
req = ("request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
       f"client_address=192.0.2.10\nclient_name=mx.example.net\nhelo_name=mx.example.net\n"
       f"sender={sender}\nrecipient=bob@example.org\ninstance={instance}\n\n")
with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
    s.sendall(req.encode())
    reply = b""
    while not reply.endswith(b"\n\n"):
        chunk = s.recv(4096)
        if not chunk:
            break
        reply += chunk
print(reply.decode().strip())
EOF
}
# expect_reply PORT SENDER INSTANCE WANT: the reply starts with WANT.
expect_reply() {
    local got
    got="$(ask "$1" "$2" "$3")"
    echo "reply: $got"
    case "$got" in "$4"*) return 0 ;; *) echo "expected: $4" >&2; return 1 ;; esac
}
# One policy: the second message of a sender within an hour is refused.
cat >"$WORK/policies.toml" <<'EOF'
[[policy]]
name = "Package test"
priority = 10
  [[policy.member]]
  source = "any"
  [[policy.quota]]
  name = "One per sender"
  track = "Sender:user@domain"
  period = "1h"
  verdict = "REJECT"
  data = "Sender quota exceeded"
    [[policy.quota.limit]]
    type = "MessageCount"
    limit = 1
EOF
chmod 644 "$WORK/policies.toml"
chmod 755 "$WORK"

# ---------------------------------------------------------------- build (one release binary)
start=$SECONDS
echo "== scripts/build-image.sh"
if scripts/build-image.sh >"$WORK/image.log" 2>&1; then
    IMAGE="$(tail -n 1 "$WORK/image.log")"
else
    IMAGE=""
fi
check "scripts/build-image.sh builds an image ($((SECONDS - start)) s): ${IMAGE:-none}" \
    sh -c "[ -n '$IMAGE' ] || { tail -n 30 '$WORK/image.log'; exit 1; }"
start=$SECONDS
echo "== scripts/build-packages.sh"
scripts/build-packages.sh >"$WORK/packages.log" 2>&1 || true
DEB="$(ls target/packages/*.deb 2>/dev/null | head -n 1 || true)"
RPM="$(ls target/packages/*.rpm 2>/dev/null | head -n 1 || true)"
check "scripts/build-packages.sh writes a .deb and an .rpm ($((SECONDS - start)) s)" \
    sh -c "[ -n '$DEB' ] && [ -n '$RPM' ] || { tail -n 30 '$WORK/packages.log'; exit 1; }"

# ---------------------------------------------------------------- image
if [ -n "$IMAGE" ]; then
    image_metadata() {
        podman image inspect "$IMAGE" --format json | python3 -c '
import json, sys
i = json.load(sys.stdin)[0]
c = i["Config"]
labels = c.get("Labels") or {}
want = {"User": "65532:65532", "Entrypoint": ["/usr/local/bin/sluice"], "WorkingDir": "/data"}
for k, v in want.items():
    assert c.get(k) == v, f"{k}: {c.get(k)!r}, expected {v!r}"
assert "/data" in (c.get("Volumes") or {}), c.get("Volumes")
ports = set(c.get("ExposedPorts") or {})
assert {"10031/tcp", "10032/tcp"} <= ports, ports
for k in ("source", "version", "licenses", "revision"):
    assert labels.get("org.opencontainers.image." + k), f"label {k} missing: {labels}"
assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
assert sys.argv[1].endswith(":" + labels["org.opencontainers.image.version"]), "tag vs version label"
assert len(i["RootFS"]["Layers"]) <= 2, i["RootFS"]["Layers"]
print(c, labels)
' "$IMAGE"
    }
    check "image: non-root numeric user, entrypoint, /data volume, ports, OCI labels" image_metadata
    check "image: holds only the binary and /data (owned by 65532; no shell)" sh -c "
        c=\$(buildah from --pull=never '$IMAGE') && m=\$(buildah mount \"\$c\") &&
        files=\$(cd \"\$m\" && find . -mindepth 1 -not -type d | sort) && dirs=\$(cd \"\$m\" && stat -c '%n %u %a' ./data);
        buildah umount \"\$c\" >/dev/null; buildah rm \"\$c\" >/dev/null;
        echo \"\$files\"; echo \"\$dirs\";
        [ \"\$files\" = ./usr/local/bin/sluice ] && [ \"\$dirs\" = './data 65532 755' ]"

    # The default command (serve on 0.0.0.0 in the container) is only checked, never bound here.
    default_command_valid() {
        local cmd
        cmd="$(podman image inspect -f '{{join .Config.Cmd " "}}' "$IMAGE")"
        echo "CMD: $cmd"
        # shellcheck disable=SC2086 # the words of the image's CMD
        podman run --rm --network none "$IMAGE" $cmd --check-config
    }
    check "image: its default command passes --check-config" default_command_valid

    podman volume create "$VOLUME" >/dev/null
    check "image: sluice policy import into the /data volume" \
        podman run --rm --network host -v "$VOLUME:/data" -v "$WORK/policies.toml:/policies.toml:ro" \
        "$IMAGE" policy import /policies.toml --database sqlite:///data/sluice.db --server off
    PORT="$(free_port)"
    METRICS="$(free_port)"
    podman run -d --name "$CONTAINER" --network host -v "$VOLUME:/data" "$IMAGE" \
        serve --listen "127.0.0.1:$PORT" --metrics-listen "127.0.0.1:$METRICS" \
        --database sqlite:///data/sluice.db >/dev/null
    check "image: sluice serve listens on 127.0.0.1:$PORT" wait_port "$PORT"
    check "image: first message of a sender answered DUNNO" expect_reply "$PORT" alice@example.net a1 "action=DUNNO"
    check "image: second message refused by the imported quota" \
        expect_reply "$PORT" alice@example.net a2 "action=REJECT Sender quota exceeded"
    # The static binary resolves names without NSS modules (the image has none): localhost
    # from the /etc/hosts podman provides, as Kubernetes provides one too.
    check "image: sluice ask localhost:$PORT (name resolution in the image, helm test's command)" sh -c "
        podman run --rm --network host '$IMAGE' ask localhost:$PORT --sender erin@example.net | tee /dev/stderr |
            grep -qx 'action=DUNNO'"
    check "image: /metrics counts the refusal" sh -c "
        curl -fsS http://127.0.0.1:$METRICS/metrics | grep -E '^sluice_(build_info|requests_total)' &&
        curl -fsS http://127.0.0.1:$METRICS/metrics |
            grep -qE '^sluice_requests_total\{.*action=\"reject\".*\} 1$'"
    runs_as() {
        local pid
        pid="$(podman inspect -f '{{.State.Pid}}' "$CONTAINER")"
        echo "pid $pid: uid $(stat -c %u "/proc/$pid") gid $(stat -c %g "/proc/$pid")"
        [ "$(stat -c %u "/proc/$pid")" = 65532 ] && [ "$(stat -c %g "/proc/$pid")" = 65532 ]
    }
    check "image: the server process runs as UID/GID 65532" runs_as
    stops_on_sigterm() {
        local t0=$SECONDS code
        podman stop -t 30 "$CONTAINER" >/dev/null
        code="$(podman inspect -f '{{.State.ExitCode}}' "$CONTAINER")"
        echo "exit code $code after $((SECONDS - t0)) s"
        podman logs "$CONTAINER" 2>&1 | tail -n 5
        [ "$code" = 0 ] && [ $((SECONDS - t0)) -lt 15 ]
    }
    check "image: SIGTERM (podman stop) ends it cleanly, exit code 0" stops_on_sigterm
    check "image: the database stayed in the volume" sh -c \
        "podman volume inspect -f '{{.Mountpoint}}' '$VOLUME' | xargs -I{} test -s {}/sluice.db"

    chart_image() {
        local venv="${DEPLOY_VENV:-target/deploy-venv/venv}"
        [ -x "$venv/bin/python" ] || { echo "no $venv (scripts/check-deploy.sh creates it)"; return 1; }
        "$venv/bin/python" - "$IMAGE" <<'EOF'
import sys, yaml
import helm_python as helm
rendered = helm.Chart.load("helm/sluice").render(values=None, name="mail", namespace="mail", is_install=True)
images = set()
for path, text in rendered.items():
    if path.endswith("NOTES.txt"):
        continue
    for doc in yaml.safe_load_all(text):
        spec = ((doc or {}).get("spec") or {}).get("template", {}).get("spec", {})
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            images.add(c["image"])
print(images)
assert images == {sys.argv[1]}, f"chart renders {images}, image built is {sys.argv[1]}"
EOF
    }
    check "helm/sluice with default values runs the image built" chart_image
fi

# ---------------------------------------------------------------- Debian package
if [ -n "$DEB" ]; then
    check "dpkg -i $(basename "$DEB")" dpkg -i "$DEB"
    check "installed: /usr/bin/sluice, units, sysusers, serve.toml (root:sluice 0640), man, completions" sh -c '
        for f in /usr/bin/sluice /usr/lib/systemd/system/sluice.service /usr/lib/systemd/system/sluice-edge.service \
                 /usr/lib/systemd/system/sluice-quota.service /usr/lib/sysusers.d/sluice.conf \
                 /usr/share/man/man1/sluice.1.gz /usr/share/man/man1/sluice-serve.1.gz \
                 /usr/share/man/man1/sluice-policy-import.1.gz \
                 /usr/share/bash-completion/completions/sluice /usr/share/zsh/vendor-completions/_sluice \
                 /usr/share/fish/vendor_completions.d/sluice.fish /usr/share/doc/sluice/copyright; do
            [ -s "$f" ] || { echo "missing: $f"; exit 1; }
        done
        stat -c "%U:%G %a" /etc/sluice/serve.toml; [ "$(stat -c "%U:%G %a" /etc/sluice/serve.toml)" = "root:sluice 640" ]
        dpkg-query -W -f="\${Conffiles}\n" sluice | grep -q "/etc/sluice/serve.toml"
        zcat /usr/share/man/man1/sluice.1.gz | grep -q "import\\\\-policyd"
        grep -q "/usr/bin/sluice serve" /usr/lib/systemd/system/sluice.service
        ! grep -r /usr/local /usr/lib/systemd/system/sluice*.service'
    check "installed: the sluice system user and /var/lib/sluice (sluice, 0750)" sh -c '
        getent passwd sluice; [ "$(stat -c "%U:%G %a" /var/lib/sluice)" = "sluice:sluice 750" ]'
    # No systemd runs in CI: the maintainer scripts are also read for enable/start calls.
    check "installing enabled and started nothing" sh -c '
        dpkg-deb -I "$0" postinst | grep -v "^ *#" | grep -E "systemctl (enable|start)|deb-systemd-(helper enable|invoke start)" && exit 1
        ls /etc/systemd/system/*.wants/ 2>/dev/null | grep sluice && exit 1
        pgrep -f "^/usr/bin/sluice" && exit 1; exit 0' "$DEB"
    verify_units() {
        local out
        out="$(systemd-analyze verify /usr/lib/systemd/system/sluice.service \
            /usr/lib/systemd/system/sluice-edge.service /usr/lib/systemd/system/sluice-quota.service 2>&1)" ||
            { echo "$out"; return 1; }
        echo "$out"
        [ -z "$out" ]
    }
    check "systemd-analyze verify accepts the installed units" verify_units
    # as_sluice COMMAND...: runs it as the units do (User=sluice, Group=sluice), no fork.
    as_sluice() { setpriv --reuid=sluice --regid=sluice --init-groups -- "$@"; }
    check "installed serve.toml passes sluice serve --check-config (as the sluice user)" \
        as_sluice /usr/bin/sluice serve --check-config --config /etc/sluice/serve.toml

    # The unit's command, started here (no systemd in CI) as the unit's user, on free ports.
    serve_installed() {
        PORT="$(free_port)"
        METRICS="$(free_port)"
        (cd /var/lib/sluice && exec setpriv --reuid=sluice --regid=sluice --init-groups -- /usr/bin/sluice serve --config /etc/sluice/serve.toml \
            --listen "127.0.0.1:$PORT" --metrics-listen "127.0.0.1:$METRICS") >"$WORK/serve.log" 2>&1 &
        SERVE_PID=$!
        wait_port "$PORT" || { cat "$WORK/serve.log"; return 1; }
    }
    stop_installed() {
        kill "$SERVE_PID" && wait "$SERVE_PID" || true
        SERVE_PID=""
    }
    if serve_installed; then
        check "installed sluice answers a policy request (no policies yet: DUNNO)" \
            expect_reply "$PORT" carol@example.net c1 "action=DUNNO"
        check "policy import into /var/lib/sluice/sluice.db reaches the running server" \
            as_sluice /usr/bin/sluice policy import "$WORK/policies.toml" \
            --database sqlite:///var/lib/sluice/sluice.db --server "127.0.0.1:$METRICS"
        applies_quota() {
            expect_reply "$PORT" dave@example.net d1 "action=DUNNO" &&
                expect_reply "$PORT" dave@example.net d2 "action=REJECT Sender quota exceeded"
        }
        check "installed sluice applies the imported quota" applies_quota
        stop_installed
    else
        check "installed sluice serve starts" false
    fi
    check "the database belongs to the sluice user" sh -c \
        '[ "$(stat -c %U /var/lib/sluice/sluice.db)" = sluice ]'

    # Upgrade: the same files as revision 2 (a newer version to dpkg); a changed
    # configuration and the database must survive it.
    echo "# changed by the operator" >>/etc/sluice/serve.toml
    cp /var/lib/sluice/sluice.db "$WORK/before.db"
    mkdir -p "$WORK/v2"
    cargo deb -p sluice --no-build --no-strip --target x86_64-unknown-linux-gnu --deb-revision 2 \
        -o "$WORK/v2/" >"$WORK/v2.log" 2>&1 || cat "$WORK/v2.log"
    check "dpkg -i revision 2 (upgrade from revision 1)" sh -c "
        dpkg -i '$WORK'/v2/*.deb && dpkg-query -W -f='\${Version}' sluice | grep -qx '0.1.0-2'"
    check "upgrade kept the changed serve.toml and the database" sh -c "
        tail -n 1 /etc/sluice/serve.toml | grep -q 'changed by the operator' &&
        cmp /var/lib/sluice/sluice.db '$WORK/before.db' &&
        [ \"\$(stat -c '%U:%G %a' /etc/sluice/serve.toml)\" = 'root:sluice 640' ]"
    check "dpkg -r sluice" dpkg -r sluice
    check "removed: binary gone, configuration and database kept" sh -c "
        [ ! -e /usr/bin/sluice ] && [ ! -e /usr/lib/systemd/system/sluice.service ] &&
        grep -q 'changed by the operator' /etc/sluice/serve.toml && cmp /var/lib/sluice/sluice.db '$WORK/before.db'"
    check "dpkg -P sluice" dpkg -P sluice
    check "purged: configuration and database deleted" sh -c '
        [ ! -e /etc/sluice ] && [ ! -e /var/lib/sluice ] && ! dpkg-statoverride --list /etc/sluice/serve.toml'
fi

# ---------------------------------------------------------------- RPM
if [ -n "$RPM" ]; then
    rpm_files() {
        rpm -qlp "$RPM" >"$WORK/rpm.files"
        cat "$WORK/rpm.files"
        local f
        for f in /usr/bin/sluice /usr/lib/systemd/system/sluice.service /usr/lib/systemd/system/sluice-edge.service \
            /usr/lib/systemd/system/sluice-quota.service /usr/lib/sysusers.d/sluice.conf /etc/sluice/serve.toml \
            /usr/share/man/man1/sluice.1.gz /usr/share/man/man1/sluice-serve.1.gz \
            /usr/share/bash-completion/completions/sluice /usr/share/zsh/site-functions/_sluice \
            /usr/share/fish/vendor_completions.d/sluice.fish /usr/share/licenses/sluice/LICENSE; do
            grep -qx "$f" "$WORK/rpm.files" || { echo "missing: $f"; return 1; }
        done
    }
    check "rpm -qlp: binary, units, sysusers, config, man pages, completions, licence" rpm_files
    check "rpm: serve.toml is a noreplace config file owned root:sluice 0640" sh -c "
        rpm -qp --qf '[%{FILENAMES} %{FILEFLAGS:fflags} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILEMODES:perms}\n]' '$RPM' |
            tee /dev/stderr | grep -qx '/etc/sluice/serve.toml cn root:sluice -rw-r-----'"
    check "rpm: scripts create the user and /var/lib/sluice, stop units on erase" sh -c "
        rpm -qp --scripts '$RPM' | tee /dev/stderr > '$WORK/rpm.scripts' &&
        grep -q 'useradd -r' '$WORK/rpm.scripts' && grep -q 'install -d -o sluice' '$WORK/rpm.scripts' &&
        grep -q 'systemctl stop' '$WORK/rpm.scripts' && ! grep -qE 'systemctl (enable|start)' '$WORK/rpm.scripts'"
    check "rpm: the packaged binary is the one the .deb and the image ship" sh -c "
        rpm2cpio '$RPM' | (cd '$WORK' && cpio -idm --quiet ./usr/bin/sluice) &&
        cmp '$WORK/usr/bin/sluice' \"\$(scripts/build-release.sh 2>/dev/null | tail -n 1)\""
fi

echo "package checks: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
