#!/usr/bin/env bash
# Checks the deployment assets (see docs/deploy.md):
#   - Prometheus alert rules: `promtool check rules` and `promtool test rules`
#     (Debian's `prometheus` package), the Helm chart's copy identical;
#   - Grafana dashboard: the JSON parses and is importable (datasource input, targets);
#   - systemd units: `systemd-analyze verify` reports nothing;
#   - Helm chart: lint and render with Helm's own Go library (PyPI `helm-python-sdk`, no helm
#     binary) for the default values and ci/all-options-values.yaml (every container runs
#     the expected image; commonAnnotations on every object), and with the gRPC link's
#     security variants (default random token; TLS + mTLS + existing token Secret; mTLS
#     only; explicitly unauthenticated): configs, Secret mounts, https:// URLs, the quota
#     NetworkPolicy admitting only edge pods to the gRPC port, render refusing an
#     unauthenticated quota service (stand-in token and openssl certificates let the
#     rendered configs pass --check-config); values.schema.json refuses
#     wrong types and unknown keys; then every rendered
#     object validated against the Kubernetes $KUBE_VERSION schemas (PyPI
#     `kubernetes-validate`, strict: unknown fields are errors). ServiceMonitor and
#     PrometheusRule (Prometheus Operator CRDs) have no schema there and are skipped
#     explicitly; the PrometheusRule's rules go through promtool instead. With a built
#     `sluice` binary ($SLUICE_BIN, default target/debug/sluice) the rendered role configs
#     also pass `sluice edge|quota|admin --check-config` (admin: the admin service,
#     rendered with ci/all-options-values.yaml, its TLS Secret mounted where admin.toml
#     points).
# Which metrics the dashboard and the rules query is checked against real scrapes by
# `cargo test -p sluice --test deploy_assets`.
#
# Run as root on Debian (apt-get and pip install what is missing; Python packages go to a
# venv under target/). Ends with "deploy checks: N passed, M failed"; exits non-zero on any
# failure.
set -euo pipefail
cd "$(dirname "$0")/.."

KUBE_VERSION="${KUBE_VERSION:-1.30.0}"
VENV="${DEPLOY_VENV:-target/deploy-venv/venv}"
SLUICE_BIN="${SLUICE_BIN:-target/debug/sluice}"
# Not passed on: sluice refuses SLUICE_* variables that are none of its settings.
export -n SLUICE_BIN
HELM_PYTHON_SDK_VERSION="0.2.2"
KUBERNETES_VALIDATE_VERSION="1.37.0"

passed=0
failed=0
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

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

# ---------------------------------------------------------------- tools
# apt_install (one `apt-get update` per run) comes from scripts/services.sh.
. scripts/services.sh
command -v promtool >/dev/null || apt_install --no-install-recommends prometheus
command -v systemd-analyze >/dev/null || apt_install --no-install-recommends systemd
python3 -c 'import ensurepip, venv' 2>/dev/null || apt_install --no-install-recommends python3-venv
if ! "$VENV/bin/python" -c 'import helm_python, kubernetes_validate' 2>/dev/null; then
    echo "== installing helm-python-sdk and kubernetes-validate (pip, venv $VENV)"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        "helm-python-sdk==$HELM_PYTHON_SDK_VERSION" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi

# The rendered Helm configs are checked by the binary itself.
if [ ! -x "$SLUICE_BIN" ] && [ "$SLUICE_BIN" = target/debug/sluice ]; then
    echo "== cargo build -p sluice (for --check-config of the rendered configs)"
    cargo build -p sluice --locked
fi

# ---------------------------------------------------------------- Prometheus
RULES=deploy/prometheus/sluice-alerts.yml
check "promtool check rules $RULES" promtool check rules "$RULES"
check "promtool test rules deploy/prometheus/sluice-alerts.test.yml" \
    promtool test rules deploy/prometheus/sluice-alerts.test.yml
check "helm/sluice/files/sluice-alerts.yml is a copy of $RULES" \
    cmp "$RULES" helm/sluice/files/sluice-alerts.yml

# ---------------------------------------------------------------- Grafana
check "Grafana dashboard parses and is importable" python3 - deploy/grafana/sluice-dashboard.json <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
assert [i["name"] for i in d["__inputs"]] == ["DS_PROMETHEUS"], d["__inputs"]
assert d["uid"] and d["title"], "uid and title"
ids = set()
panels = [p for p in d["panels"] if p["type"] != "row"]
assert panels, "no panels"
for p in panels:
    assert p["id"] not in ids, f"duplicate panel id {p['id']}"
    ids.add(p["id"])
    assert p["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
    assert p["targets"], f"{p['title']}: no targets"
    for t in p["targets"]:
        assert t["expr"].strip(), f"{p['title']}: empty expr"
        assert t["expr"].count("(") == t["expr"].count(")"), f"{p['title']}: unbalanced {t['expr']}"
        assert t["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
    g = p["gridPos"]
    assert 0 <= g["x"] and g["x"] + g["w"] <= 24, f"{p['title']}: outside the grid"
    # One unit per panel: one panel unit, no per-series unit overrides, and targets that
    # are all rates (per second) or all levels; a p99 panel plots no other quantile.
    assert p["fieldConfig"]["defaults"].get("unit"), f"{p['title']}: no unit"
    for o in p["fieldConfig"].get("overrides", []):
        assert all(pr["id"] != "unit" for pr in o.get("properties", [])), f"{p['title']}: unit override"
    rates = {("rate(" in t["expr"] or "increase(" in t["expr"]) and "histogram_quantile" not in t["expr"]
             for t in p["targets"]}
    assert len(rates) == 1, f"{p['title']}: mixes rates and levels"
    if "p99" in p["title"] and "p50" not in p["title"]:
        assert all("histogram_quantile(0.99" in t["expr"] for t in p["targets"]), f"{p['title']}: plots other quantiles"
for v in d["templating"]["list"]:
    if v["type"] == "query":
        assert v["datasource"]["uid"] == "${DS_PROMETHEUS}", v["name"]
print(f"{len(panels)} panels")
EOF

# ---------------------------------------------------------------- systemd
# verify needs the ExecStart binaries to exist: check copies pointing at an existing one.
mkdir -p "$WORK/units"
for unit in deploy/systemd/*.service; do
    sed "s|/usr/local/bin/sluice|/bin/true|g" "$unit" >"$WORK/units/$(basename "$unit")"
done
systemd_verify() {
    # Exit status ignores unknown keys and bad values (only warnings): any output fails.
    local out
    out="$(systemd-analyze verify "$WORK"/units/*.service 2>&1)" || { echo "$out"; return 1; }
    [ -z "$out" ] || { echo "$out"; return 1; }
}
check "systemd-analyze verify deploy/systemd/*.service" systemd_verify

# ---------------------------------------------------------------- Helm
cat >"$WORK/helm_check.py" <<'EOF'
"""Lint, render and validate helm/sluice; prints `ok NAME` / `FAIL NAME` lines."""
import os, subprocess, sys, tempfile
import yaml
import helm_python as helm
import kubernetes_validate

CHART = "helm/sluice"
KUBE_VERSION = sys.argv[1]
SLUICE_BIN = sys.argv[2]
# Prometheus Operator CRDs: not in the Kubernetes schemas; skipped on purpose.
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}
results = []


def record(name, error=None):
    results.append((name, error))
    print(("ok   " if error is None else "FAIL ") + name)
    if error:
        print("     " + str(error).replace("\n", "\n     "))


def attempt(name, fn):
    try:
        fn()
        record(name)
    except Exception as e:  # noqa: BLE001 - every failure is reported
        record(name, f"{type(e).__name__}: {e}")


def lint(label, values):
    report = helm.lint(CHART, values, strict=True, kube_version="v" + KUBE_VERSION)
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report.get("errors", [])
    assert not problems, problems


def render(values):
    chart = helm.Chart.load(CHART)
    return chart.render(values=values, name="mail", namespace="mail", is_install=True)


def objects(rendered):
    out = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                out.append((path, doc))
    return out


def validate(label, objs):
    skipped = []
    for path, obj in objs:
        key = (obj["apiVersion"], obj["kind"])
        if key in CRD_KINDS:
            skipped.append(obj["kind"])
            continue
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            path_in = ".".join(str(p) for p in e.path)
            raise AssertionError(f"{path}: {obj['kind']}/{obj['metadata']['name']}: {path_in}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError:
            raise AssertionError(f"{path}: no Kubernetes {KUBE_VERSION} schema for {key}")
    if skipped:
        print(f"     ({label}: schema validation skipped for CRD kinds {sorted(set(skipped))})")


def kinds(objs):
    found = {}
    for _, o in objs:
        found[o["kind"]] = found.get(o["kind"], 0) + 1
    return found


def expect_kinds(objs, want):
    got = kinds(objs)
    assert got == want, f"rendered {got}, expected {want}"


GRPC_DIR = "/etc/sluice-grpc"
ADMIN_TLS_DIR = "/etc/sluice-tls/admin"


def grpc_stand_ins(d, texts):
    """Files under d standing in for the Secrets mounted at GRPC_DIR that the configs name:
    a token, and (openssl) a CA and a certificate with its key."""
    import re
    names = set(re.findall(GRPC_DIR + r"/([^\"]+)", "".join(texts)))
    if any(n.endswith((".crt", ".key")) or "/ca" in n for n in names):
        run = lambda *a: subprocess.run(a, check=True, capture_output=True, cwd=d)
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=stand-in CA")
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "leaf.key", "-out", "leaf.pem", "-days", "1", "-subj", "/CN=stand-in",
            "-addext", "subjectAltName=DNS:stand-in")
    for n in names:
        path = os.path.join(d, n)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if n.startswith("token/"):
            open(path, "w").write("0123456789abcdef0123456789abcdef\n")
        elif n.endswith("tls.key"):
            open(path, "w").write(open(os.path.join(d, "leaf.key")).read())
        elif n.endswith("tls.crt"):
            open(path, "w").write(open(os.path.join(d, "leaf.pem")).read())
        else:  # a CA file
            open(path, "w").write(open(os.path.join(d, "ca.pem")).read())


def check_configs(objs, env):
    if not os.access(SLUICE_BIN, os.X_OK):
        raise AssertionError(f"{SLUICE_BIN} not built (cargo build -p sluice, or set SLUICE_BIN)")
    cm = next(o for _, o in objs if o["kind"] == "ConfigMap")
    with tempfile.TemporaryDirectory() as d:
        texts = [cm["data"][f"{role}.toml"] for role in ("edge", "quota")]
        grpc_stand_ins(d, texts)
        roles = ["edge", "quota"] + (["admin"] if "admin.toml" in cm["data"] else [])
        if "admin" in roles and ADMIN_TLS_DIR in cm["data"]["admin.toml"]:
            os.makedirs(os.path.join(d, "admin-tls"))
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                            "-nodes", "-keyout", "admin-tls/tls.key", "-out", "admin-tls/tls.crt", "-days", "1",
                            "-subj", "/CN=stand-in admin"], check=True, capture_output=True, cwd=d)
        for role in roles:
            f = os.path.join(d, f"{role}.toml")
            text = cm["data"][f"{role}.toml"].replace(GRPC_DIR, d)
            open(f, "w").write(text.replace(ADMIN_TLS_DIR, os.path.join(d, "admin-tls")))
            r = subprocess.run([SLUICE_BIN, role, "--check-config", "--config", f],
                               env=dict(env, PATH=os.environ.get("PATH", "")),
                               capture_output=True, text=True)
            assert r.returncode == 0, f"{role}.toml: {r.stdout}{r.stderr}\n{cm['data'][role + '.toml']}"


def admin_service(objs):
    """The admin role (ci/all-options-values.yaml): `sluice admin --config admin.toml`, its
    listener on 10035 behind the Service, HTTPS with the TLS Secret mounted where admin.toml
    points, the database from the Secret."""
    dep = find(objs, "Deployment", "-admin")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["args"][:3] == ["admin", "--config", "/etc/sluice/admin.toml"], c["args"]
    assert [p["containerPort"] for p in c["ports"]] == [10035, 10036], c["ports"]
    assert secret_key_of(dep, "SLUICE_DATABASE") == ("sluice-urls", "DATABASE_URL"), c["env"]
    # The admin service reaches the quota service (live counters) as the edges do.
    edge_grpc = {k: v for k, v in pod_secrets(objs, "edge").items() if k.startswith("/etc/sluice-grpc/")}
    assert edge_grpc, pod_secrets(objs, "edge")
    assert pod_secrets(objs, "admin") == {ADMIN_TLS_DIR: "mail-policy-admin-tls", **edge_grpc}, pod_secrets(objs, "admin")
    cm = next(o for _, o in objs if o["kind"] == "ConfigMap")["data"]["admin.toml"]
    listen_host = yaml.safe_load(open(f"{CHART}/ci/all-options-values.yaml"))["listenHost"]
    for line in (f'admin_listen = "{listen_host}:10035"', f'admin_tls_cert_file = "{ADMIN_TLS_DIR}/tls.crt"',
                 f'admin_tls_key_file = "{ADMIN_TLS_DIR}/tls.key"', 'quota = ["https://'):
        assert line in cm, cm
    # The same gRPC client files as the edges'.
    edge_toml = next(o for _, o in objs if o["kind"] == "ConfigMap")["data"]["edge.toml"]
    for line in edge_toml.splitlines():
        if line.startswith(("quota_token_file", "quota_tls_")):
            assert line in cm, (line, cm)
    svc = find(objs, "Service", "-admin")
    assert [(p["name"], p["port"], p.get("appProtocol")) for p in svc["spec"]["ports"]] == \
        [("http", 8443, "https"), ("metrics", 10036, None)], svc["spec"]["ports"]


def find(objs, kind, name_end):
    found = [o for _, o in objs if o["kind"] == kind and o["metadata"]["name"].endswith(name_end)]
    assert len(found) == 1, f"{kind} *{name_end}: found {len(found)}"
    return found[0]


def pod_secrets(objs, component):
    """{mountPath: secretName} of the Secret volumes of the component's Deployment."""
    spec = find(objs, "Deployment", "-" + component)["spec"]["template"]["spec"]
    secrets = {v["name"]: v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
    mounts = spec["containers"][0]["volumeMounts"]
    return {m["mountPath"]: secrets[m["name"]] for m in mounts if m["name"] in secrets}


def quota_grpc_from_edges_only(objs, metrics_from_monitoring):
    """The quota pods' NetworkPolicy: the gRPC port from this release's edge pods only (and
    its admin pods, when the admin service runs: live counters)."""
    np = find(objs, "NetworkPolicy", "-quota")
    assert np["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "quota", np
    assert np["spec"]["policyTypes"] == ["Ingress"], np
    rules = np["spec"]["ingress"]
    grpc = [r for r in rules if any(p["port"] in ("grpc", 10033) for p in r["ports"])]
    assert len(grpc) == 1 and [p["port"] for p in grpc[0]["ports"]] == ["grpc"], rules
    peers = grpc[0].get("from")
    admin = any(o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-admin") for _, o in objs)
    components = ["edge", "admin"] if admin else ["edge"]
    assert peers and len(peers) == len(components) and all(set(p) == {"podSelector"} for p in peers), \
        f"gRPC must admit only {components} pods: {peers}"
    for peer, component in zip(peers, components):
        labels = peer["podSelector"]["matchLabels"]
        assert labels["app.kubernetes.io/component"] == component and "app.kubernetes.io/instance" in labels, labels
    metrics = [r for r in rules if r is not grpc[0]]
    assert [[p["port"] for p in r["ports"]] for r in metrics] == [["metrics"]], rules
    assert ("from" in metrics[0]) == metrics_from_monitoring, metrics[0]


def grpc_link(objs, tls, mtls, token_secret):
    """The configs, mounts and URLs of the gRPC link's security settings."""
    cm = next(o for _, o in objs if o["kind"] == "ConfigMap")
    edge, quota = cm["data"]["edge.toml"], cm["data"]["quota.toml"]
    scheme = "https" if tls else "http"
    assert f'quota = ["{scheme}://' in edge, edge
    quota_mounts, edge_mounts = pod_secrets(objs, "quota"), pod_secrets(objs, "edge")
    if token_secret:
        assert 'grpc_token_file = "/etc/sluice-grpc/token/' in quota, quota
        assert 'quota_token_file = "/etc/sluice-grpc/token/' in edge, edge
        assert quota_mounts["/etc/sluice-grpc/token"] == token_secret, quota_mounts
        assert edge_mounts["/etc/sluice-grpc/token"] == token_secret, edge_mounts
    else:
        assert "token_file" not in quota + edge, quota + edge
    assert ("grpc_tls_cert_file" in quota) == tls and ("/etc/sluice-grpc/server" in quota_mounts) == tls, quota
    assert ("grpc_client_ca_file" in quota) == mtls and ("quota_tls_cert_file" in edge) == mtls, quota + edge
    assert ("/etc/sluice-grpc/client" in edge_mounts) == mtls, edge_mounts
    assert not any(k.startswith("/etc/sluice-grpc/server") or k.startswith("/etc/sluice-grpc/client-ca") for k in edge_mounts), \
        f"the edges get no server key: {edge_mounts}"
    for o in (find(objs, "Deployment", "-quota"), find(objs, "Deployment", "-edge")):
        for v in o["spec"]["template"]["spec"]["volumes"]:
            if "secret" in v:
                assert v["secret"]["defaultMode"] == 0o440, v


def generated_token(objs):
    import base64
    s = find(objs, "Secret", "-grpc-token")
    token = base64.b64decode(s["data"]["token"]).decode()
    assert len(token) == 48 and token.isalnum(), "a random 48-character token"


def rules_pass_promtool(objs):
    rule = next(o for _, o in objs if o["kind"] == "PrometheusRule")
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as f:
        yaml.safe_dump({"groups": rule["spec"]["groups"]}, f)
        f.flush()
        r = subprocess.run(["promtool", "check", "rules", f.name], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr


def redis_tls_rendered(objs):
    quota = next(o for _, o in objs if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-quota"))
    spec = quota["spec"]["template"]["spec"]
    vols = {v["name"]: v for v in spec["volumes"]}
    assert vols["redis-tls"]["secret"]["secretName"] == "redis-client-tls", vols
    c = spec["containers"][0]
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["redis-tls"]["mountPath"] == "/etc/sluice-tls/redis" and mounts["redis-tls"]["readOnly"], mounts
    env = {e["name"]: e.get("value") for e in c["env"]}
    want = {"SLUICE_REDIS_TLS_CA_FILE": "/etc/sluice-tls/redis/ca.crt",
            "SLUICE_REDIS_TLS_CERT_FILE": "/etc/sluice-tls/redis/tls.crt",
            "SLUICE_REDIS_TLS_KEY_FILE": "/etc/sluice-tls/redis/tls.key",
            "SLUICE_REDIS_TLS_SERVER_NAME": "redis.internal"}
    for k, v in want.items():
        assert env.get(k) == v, f"{k}: {env.get(k)!r}, expected {v!r}"
    edge = next(o for _, o in objs if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-edge"))
    edge_env = [e["name"] for e in edge["spec"]["template"]["spec"]["containers"][0]["env"]]
    assert not [n for n in edge_env if n.startswith("SLUICE_REDIS")], f"edge gets Redis settings: {edge_env}"
def assert_in(needle, haystack):
    assert needle in haystack, f"{needle!r} not in {haystack}"


def must_fail(values, words):
    try:
        render(values)
    except helm.HelmError as e:
        assert words in str(e), f"failed, but not for {words!r}: {e}"
        return
    raise AssertionError("rendered, but should have failed")


def lint_must_fail(values, words):
    report = helm.lint(CHART, values, strict=True, kube_version="v" + KUBE_VERSION)
    problems = [str(m) for m in report["messages"] if m["severity"] >= 2] + [str(e) for e in report.get("errors", [])]
    assert problems, "helm lint accepted it"
    assert any(words in p for p in problems), f"lint failed, but not for {words!r}: {problems}"


def expect_images(objs, want, annotated):
    # The chart's own container of every workload (the first; sidecars come after it).
    workloads = [o for _, o in objs if o["kind"] in ("Deployment", "Job", "Pod")]
    assert workloads, "no workloads"
    for o in workloads:
        spec = o["spec"] if o["kind"] == "Pod" else o["spec"]["template"]["spec"]
        got = spec["containers"][0]["image"]
        assert got == want, f"{o['kind']}/{o['metadata']['name']} runs {got}, expected {want}"
    if annotated:  # ci/all-options-values.yaml sets commonAnnotations
        for _, o in objs:
            ann = o["metadata"].get("annotations", {})
            assert ann.get("example.com/contact") == "mail-team@example.com", f"{o['kind']}/{o['metadata']['name']}: commonAnnotations missing"


def secret_key_of(obj, var):
    spec = obj["spec"]["template"]["spec"]
    env = spec["containers"][0]["env"]
    ref = next(e for e in env if e["name"] == var)["valueFrom"]["secretKeyRef"]
    return ref["name"], ref["key"]


def migration_uses_the_owner():
    # Edges on a read-only role, the Job on the owner's URL: from values...
    objs = objects(render({"database": {"url": "postgres://reader@db/sluice"},
                           "migration": {"databaseUrl": "postgres://owner@db/sluice"}}))
    secrets = {o["metadata"]["name"]: o.get("stringData", {}) for _, o in objs if o["kind"] == "Secret"}
    job = next(o for _, o in objs if o["kind"] == "Job")
    name, key = secret_key_of(job, "SLUICE_DATABASE")
    assert secrets[name][key] == "postgres://owner@db/sluice", f"the Job reads {secrets[name][key]}"
    edge = next(o for _, o in objs if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-edge"))
    name, key = secret_key_of(edge, "SLUICE_DATABASE")
    assert secrets[name][key] == "postgres://reader@db/sluice", f"the edges read {secrets[name][key]}"
    # ... and from an existing Secret's second key.
    objs = objects(render({"existingSecret": {"name": "urls", "migrationDatabaseKey": "owner-url"}}))
    job = next(o for _, o in objs if o["kind"] == "Job")
    assert secret_key_of(job, "SLUICE_DATABASE") == ("urls", "owner-url")
    edge = next(o for _, o in objs if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-edge"))
    assert secret_key_of(edge, "SLUICE_DATABASE") == ("urls", "database-url")


def main():
    default = None
    all_options = yaml.safe_load(open(f"{CHART}/ci/all-options-values.yaml"))
    chart = yaml.safe_load(open(f"{CHART}/Chart.yaml"))
    base = {"Deployment": 2, "Service": 4, "ConfigMap": 1, "ServiceAccount": 1, "Job": 1,
            "HorizontalPodAutoscaler": 1, "PodDisruptionBudget": 2, "Pod": 1}
    # The image scripts/build-image.sh builds and tags (scripts/test-packages.sh checks it
    # against the built one).
    default_image = f"ghcr.io/example/sluice:{chart['appVersion']}"
    all_image = "mirror.example.com/mail/sluice@" + all_options["image"]["digest"]
    env = {"SLUICE_DATABASE": "postgres://sluice@db/sluice", "SLUICE_REDIS": "redis://r:6379"}
    options_off = {"edge": {"autoscaling": {"enabled": False}, "podDisruptionBudget": {"enabled": False},
                            "antiAffinity": "", "preStopSleepSeconds": 0},
                   "quota": {"podDisruptionBudget": {"enabled": False}, "antiAffinity": ""},
                   "serviceAccount": {"create": False}, "migration": {"enabled": False},
                   "tests": {"enabled": False}}
    options_off["networkPolicy"] = {"quotaGrpcFromEdgesOnly": False}
    # The gRPC link with TLS, mTLS and an existing token Secret (names only: secrets are
    # mounted, never values).
    grpc_tls = {"grpc": {"token": {"existingSecret": "sluice-grpc-token", "key": "bearer"},
                         "tls": {"enabled": True, "serverSecret": "quota-tls", "caSecret": "quota-tls",
                                 "serverName": "quota.mail.svc",
                                 "clientAuth": {"enabled": True, "caSecret": "edge-ca", "edgeSecret": "edge-tls"}}}}
    # mTLS alone, no token; and no client authentication at all, explicitly.
    grpc_mtls_only = {"grpc": {"token": {"enabled": False},
                               "tls": {"enabled": True, "serverSecret": "quota-tls", "caSecret": "quota-tls",
                                       "clientAuth": {"enabled": True, "caSecret": "edge-ca", "edgeSecret": "edge-tls"}}}}
    grpc_open = {"grpc": {"token": {"enabled": False}, "allowUnauthenticated": True}}
    for label, values, want, image in [
        ("default values", default, dict(base, Secret=3, NetworkPolicy=1), default_image),
        ("ci/all-options-values.yaml", all_options,
         dict(base, ServiceMonitor=1, PrometheusRule=1, NetworkPolicy=2, HorizontalPodAutoscaler=2,
              Deployment=3, Service=5), all_image),
        ("optional objects off", options_off,
         {"Deployment": 2, "Service": 4, "ConfigMap": 1, "Secret": 2}, default_image),
        ("gRPC TLS, mTLS and an existing token Secret", grpc_tls, dict(base, Secret=2, NetworkPolicy=1), default_image),
        ("gRPC mTLS without a token", grpc_mtls_only, dict(base, Secret=2, NetworkPolicy=1), default_image),
        ("gRPC without client authentication (allowUnauthenticated)", grpc_open,
         dict(base, Secret=2, NetworkPolicy=1), default_image),
    ]:
        attempt(f"helm lint ({label}, strict, Kubernetes {KUBE_VERSION})", lambda: lint(label, values))
        try:
            objs = objects(render(values))
            record(f"helm render ({label}): {len(objs)} objects")
        except Exception as e:  # noqa: BLE001
            record(f"helm render ({label})", e)
            continue
        attempt(f"kubernetes-validate {KUBE_VERSION} strict ({label})", lambda: validate(label, objs))
        attempt(f"rendered kinds ({label})", lambda: expect_kinds(objs, want))
        attempt(f"containers run {image}{', commonAnnotations everywhere' if values is all_options else ''} ({label})",
                lambda: expect_images(objs, image, values is all_options))
        attempt(f"rendered edge.toml, quota.toml (and admin.toml) pass sluice --check-config ({label})",
                lambda: check_configs(objs, env))
        if values is default:
            attempt("default: a random token Secret; quota and edges mount it, quota.toml requires it, edges send it (http://)",
                    lambda: (generated_token(objs), grpc_link(objs, False, False, "mail-sluice-grpc-token")))
            attempt("default: a NetworkPolicy admits only the edge pods to the quota gRPC port (metrics port open as before)",
                    lambda: quota_grpc_from_edges_only(objs, False))
        if values is all_options:
            attempt("ci/all-options-values.yaml: the admin service: its Deployment, Service, TLS Secret and admin.toml",
                    lambda: admin_service(objs))
            attempt("ci/all-options-values.yaml: quota NetworkPolicy: gRPC from edge pods only, metrics from the monitoring namespace",
                    lambda: quota_grpc_from_edges_only(objs, True))
            attempt("ci/all-options-values.yaml: gRPC TLS, mTLS and the existing token Secret mounted where the configs point",
                    lambda: grpc_link(objs, True, True, "mail-policy-grpc"))
        if values is grpc_tls:
            attempt("gRPC TLS: https:// quota URLs; server cert, client CA, edge cert and token Secrets mounted where the configs point",
                    lambda: grpc_link(objs, True, True, "sluice-grpc-token"))
        if values is grpc_mtls_only:
            attempt("gRPC mTLS without a token: no token Secret, no token settings",
                    lambda: grpc_link(objs, True, True, None))
        if values is grpc_open:
            attempt("gRPC without client authentication: grpc_allow_unauthenticated = true in quota.toml",
                    lambda: (grpc_link(objs, False, False, None),
                             assert_in("grpc_allow_unauthenticated = true",
                                       next(o for _, o in objs if o["kind"] == "ConfigMap")["data"]["quota.toml"])))
        if want.get("PrometheusRule"):
            attempt(f"PrometheusRule passes promtool check rules ({label})", lambda: rules_pass_promtool(objs))
    attempt("render refuses terminationGracePeriodSeconds <= preStop + shutdown grace",
            lambda: must_fail({"edge": {"terminationGracePeriodSeconds": 20}}, "terminationGracePeriodSeconds"))
    attempt("render refuses a NetworkPolicy without MTAs",
            lambda: must_fail({"networkPolicy": {"enabled": True}}, "networkPolicy")),
    attempt("the migration Job uses the owner's URL, edges the read-only one (migration.databaseUrl, existingSecret.migrationDatabaseKey)",
            migration_uses_the_owner)
    attempt("redis.tls: the Secret mounted in the quota pods, its files and the server name as settings",
            lambda: redis_tls_rendered(objects(render(all_options))))
    attempt("render refuses redis.tls.clientCertificate without a Secret",
            lambda: must_fail({"redis": {"tls": {"clientCertificate": True}}}, "redis.tls.secretName"))
    attempt("render refuses a quota service without client authentication (token off, no mTLS)",
            lambda: must_fail({"grpc": {"token": {"enabled": False}}}, "grpc.allowUnauthenticated"))
    attempt("render refuses grpc.tls.enabled without grpc.tls.serverSecret",
            lambda: must_fail({"grpc": {"tls": {"enabled": True}}}, "grpc.tls.serverSecret"))
    attempt("render refuses grpc.tls.enabled without grpc.tls.caSecret (no system roots in the image)",
            lambda: must_fail({"grpc": {"tls": {"enabled": True, "serverSecret": "s"}}}, "grpc.tls.caSecret"))
    attempt("render refuses grpc.tls.clientAuth without its Secrets, and without TLS",
            lambda: (must_fail({"grpc": {"tls": {"enabled": True, "serverSecret": "s", "caSecret": "s",
                                                 "clientAuth": {"enabled": True}}}},
                               "grpc.tls.clientAuth.caSecret"),
                     must_fail({"grpc": {"tls": {"clientAuth": {"enabled": True}}}}, "needs grpc.tls.enabled")))
    attempt("render refuses http:// edge.quotaUrls with grpc.tls.enabled",
            lambda: must_fail({"grpc": {"tls": {"enabled": True, "serverSecret": "s", "caSecret": "s"}},
                               "edge": {"quotaUrls": ["http://q:10033"]}}, "must be https://"))
    attempt("render refuses an unknown antiAffinity",
            lambda: must_fail({"quota": {"antiAffinity": "sometimes"}}, "antiAffinity"))
    attempt("values.schema.json: helm lint refuses a wrong type (edge.replicaCount: \"three\")",
            lambda: lint_must_fail({"edge": {"replicaCount": "three"}}, "replicaCount"))
    attempt("values.schema.json: render refuses a wrong type (quota.autoscaling.enabled: \"yes\")",
            lambda: must_fail({"quota": {"autoscaling": {"enabled": "yes"}}}, "enabled"))
    attempt("values.schema.json: render refuses an unknown key (edge.replicas)",
            lambda: must_fail({"edge": {"replicas": 3}}, "replicas"))
    return 0 if all(e is None for _, e in results) else 1


sys.exit(main())
EOF
echo "== helm/sluice (helm-python-sdk $("$VENV/bin/python" -c 'import helm_python as h; print(h.helm_sdk_version())'), kubernetes-validate $KUBERNETES_VALIDATE_VERSION)"
"$VENV/bin/python" "$WORK/helm_check.py" "$KUBE_VERSION" "$SLUICE_BIN" | tee "$WORK/helm.out" || true
passed=$((passed + $(grep -c '^ok ' "$WORK/helm.out" || true)))
failed=$((failed + $(grep -c '^FAIL ' "$WORK/helm.out" || true)))
grep -qE '^(ok|FAIL) ' "$WORK/helm.out" || { failed=$((failed + 1)); echo "FAIL helm checks did not run"; }

echo "deploy checks: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
