#!/usr/bin/env python3
"""Checks the deployment files of deploy/ as files, without a cluster or images.

- Kubernetes: every manifest of deploy/k8s/ (and the Secrets and ConfigMap
  that deploy/k8s/gen.sh writes, given with --generated DIR) is validated
  against the Kubernetes API schemas bundled with the kubernetes-validate
  package (strict: unknown fields are errors), then checked for what the
  validators need: the API's TLS files (CA bundle, the pod's certificate and
  key) mounted from a Secret; readiness, liveness (and startup) probes that run
  the consort CLI in the container over TLS with those files against a name
  the certificate carries (`health` for readiness), never Kubernetes' own grpc
  probes, which cannot speak TLS; resource requests; the node key from a
  Secret; selectors of Services and the PodDisruptionBudget that match the
  pods; a budget that keeps more than 2/3 of the validators up. With
  --generated: a key, a config and a certificate for every replica; configs
  that serve TLS with the mounted files; certificates (read with openssl) of
  role node, issued by the CA that the genesis lists for the validator's
  organization, matching their keys, and naming 127.0.0.1 and the pod's DNS
  name.
- compose.yaml, the Prometheus configuration and the Grafana provisioning and
  dashboard: parsed, and checked against each other (scrape targets are compose
  services, the dashboard's datasource is the provisioned one, the provisioned
  dashboard path is where compose mounts the dashboards); every node's health
  check is `consort health` over TLS with the node's certificate.

Usage: deploy/check-config.py [--generated DIR] [--self-test]
  --self-test also breaks copies of the manifests (with --generated, of the
  generated Secrets and ConfigMap too) and of compose.yaml in known ways and
  fails unless every break is reported (so that a check that passes everything
  is caught).
Needs: pip install kubernetes-validate (which brings PyYAML); openssl for
--generated.
"""

import argparse
import base64
import copy
import json
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import yaml

try:
    import kubernetes_validate
except ImportError:
    sys.exit("error: kubernetes-validate is not installed (pip install kubernetes-validate)")

HERE = Path(__file__).resolve().parent
K8S_VERSION = "1.30"
GRPC_PORT = 26657
HOME = "/home/consort"
# The files of the API's TLS, as the probes and the node's config use them.
TLS_CA = f"{HOME}/tls/ca.pem"
TLS_CERT = f"{HOME}/tls/node.pem"
TLS_KEY = f"{HOME}/tls/node.key"
# Names a probe may dial the node at from inside its pod.
PROBE_HOSTS = ("127.0.0.1", "localhost")
# The consort binary in the image (its entry point).
BINARY = "/consort"
# Exec probes start a process and make a TLS handshake: Kubernetes' default
# timeout of 1 s is too short on a busy node.
MIN_PROBE_TIMEOUT = 3


class Problems:
    def __init__(self):
        self.items = []

    def add(self, where, what):
        self.items.append(f"{where}: {what}")


def load_yaml_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def k8s_name(doc):
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def validate_schema(docs, problems):
    """Schema validation of every (file, doc) pair against the bundled schemas."""
    for path, doc in docs:
        if doc.get("kind") == "Kustomization":
            continue
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError as e:
            problems.add(path, f"{k8s_name(doc)}: no schema ({e})")
        except kubernetes_validate.ValidationError as e:
            problems.add(path, f"{k8s_name(doc)}: {e.message} at {'.'.join(map(str, e.path))}")


def labels_match(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def check_k8s(docs, generated, problems):
    by_kind = {}
    for path, doc in docs:
        by_kind.setdefault(doc.get("kind"), []).append((path, doc))

    sets = by_kind.get("StatefulSet", [])
    if not sets:
        problems.add("k8s", "no StatefulSet")
    for path, sts in sets:
        where = f"{path}: {k8s_name(sts)}"
        spec = sts.get("spec", {})
        replicas = spec.get("replicas", 1)
        if not isinstance(replicas, int):
            problems.add(where, f"replicas {replicas!r} is not a number")
            continue
        pod = spec.get("template", {})
        labels = pod.get("metadata", {}).get("labels", {})
        if not labels_match(spec.get("selector", {}).get("matchLabels", {}), labels):
            problems.add(where, "selector does not match the pod labels")
        pod_spec = pod.get("spec", {})
        sec = pod_spec.get("securityContext", {})
        if not sec.get("runAsNonRoot") or sec.get("runAsUser") != 10001:
            problems.add(where, "pods must run as the non-root uid 10001 of the image")
        volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
        if not any("secret" in v for v in volumes.values()):
            problems.add(where, "no volume from a Secret (the node keys)")
        for c in pod_spec.get("containers", []):
            cw = f"{where} container {c.get('name')}"
            ports = {p.get("containerPort") for p in c.get("ports", [])}
            if GRPC_PORT not in ports:
                problems.add(cw, f"does not declare the gRPC port {GRPC_PORT}")
            req = c.get("resources", {}).get("requests", {})
            for r in ("cpu", "memory"):
                if r not in req:
                    problems.add(cw, f"no {r} request")
            mounts = {m.get("mountPath"): m for m in c.get("volumeMounts", [])}
            key = mounts.get(f"{HOME}/node_key.json")
            if not key or "secret" not in volumes.get(key.get("name"), {}):
                problems.add(cw, "node_key.json is not mounted from the Secret")
            secret_files = {p for p, m in mounts.items() if "secret" in volumes.get(m.get("name"), {})}
            for f in (TLS_CA, TLS_CERT, TLS_KEY):
                if f not in secret_files:
                    problems.add(cw, f"{f} (the API's TLS) is not mounted from a Secret")
            for f in (TLS_CERT, TLS_KEY):
                m = mounts.get(f, {})
                if f in mounts and "$(POD_NAME)" not in m.get("subPathExpr", ""):
                    problems.add(cw, f"{f} is not the pod's own (subPathExpr with $(POD_NAME))")
            check_probes(cw, c, secret_files, problems)
            if "/home/consort/data" not in mounts:
                problems.add(cw, "no volume for /home/consort/data")
        claims = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])}
        for c in pod_spec.get("containers", []):
            for m in c.get("volumeMounts", []):
                if m["name"] not in volumes and m["name"] not in claims:
                    problems.add(where, f"mount of the unknown volume {m['name']}")

        services = by_kind.get("Service", [])
        headless = [s for _, s in services if s["metadata"]["name"] == spec.get("serviceName")]
        if not headless or headless[0]["spec"].get("clusterIP") != "None":
            problems.add(where, f"serviceName {spec.get('serviceName')} is not a headless Service")
        for spath, svc in services:
            sel = svc.get("spec", {}).get("selector", {})
            if sel and not labels_match(sel, labels) and svc["metadata"].get("labels", {}).get(
                "app.kubernetes.io/name"
            ) == labels.get("app.kubernetes.io/name"):
                problems.add(f"{spath}: {k8s_name(svc)}", "selector matches no validator pod")

        pdbs = [
            (p, d)
            for p, d in by_kind.get("PodDisruptionBudget", [])
            if labels_match(d.get("spec", {}).get("selector", {}).get("matchLabels", {"-": "-"}), labels)
        ]
        if not pdbs:
            problems.add(where, "no PodDisruptionBudget selects its pods")
        for ppath, pdb in pdbs:
            m = pdb["spec"].get("minAvailable")
            if not isinstance(m, int) or 3 * m <= 2 * replicas:
                problems.add(f"{ppath}: {k8s_name(pdb)}",
                             f"minAvailable {m} of {replicas} does not keep more than 2/3 up")

        if generated:
            check_generated(by_kind, sts, replicas, volumes, problems)


def probe_command(cmd):
    """The global TLS flags, the subcommand and its --node of a consort
    command line; None if it is not one."""
    if not cmd or cmd[0] != BINARY:
        return None
    flags, sub, node = {}, None, None
    i = 1
    while i < len(cmd):
        a = cmd[i]
        if a in ("--ca", "--cert", "--key", "--node") and i + 1 < len(cmd):
            if a == "--node":
                node = cmd[i + 1]
            else:
                flags[a[2:]] = cmd[i + 1]
            i += 2
            continue
        if a.startswith("--") and "=" in a:
            k, v = a[2:].split("=", 1)
            if k == "node":
                node = v
            else:
                flags[k] = v
        elif not a.startswith("-") and sub is None:
            sub = a
        i += 1
    return {"flags": flags, "sub": sub, "node": node}


def check_probes(cw, c, secret_files, problems):
    """Readiness and liveness (and startup, if any) run the consort CLI over
    TLS with the mounted files; readiness asks the health service."""
    want = {"readinessProbe": ("health",), "livenessProbe": ("health", "status"),
            "startupProbe": ("health", "status")}
    for kind, subs in want.items():
        probe = c.get(kind)
        if probe is None:
            if kind != "startupProbe":
                problems.add(cw, f"no {kind}")
            continue
        for other in ("grpc", "httpGet", "tcpSocket"):
            if other in probe:
                problems.add(cw, f"{kind} is a {other} probe: the API is TLS only, which it cannot speak")
        cmd = probe.get("exec", {}).get("command")
        parsed = probe_command(cmd)
        if parsed is None:
            problems.add(cw, f"{kind} does not run {BINARY} (got {cmd!r})")
            continue
        if parsed["sub"] not in subs:
            problems.add(cw, f"{kind} runs `consort {parsed['sub']}`, not {' or '.join(subs)}")
        for flag, path in (("ca", TLS_CA), ("cert", TLS_CERT), ("key", TLS_KEY)):
            got = parsed["flags"].get(flag)
            if got != path:
                problems.add(cw, f"{kind} passes --{flag} {got!r}, not {path}")
            elif got not in secret_files:
                problems.add(cw, f"{kind} passes --{flag} {got}, which is not mounted from a Secret")
        host, _, port = (parsed["node"] or "").rpartition(":")
        if host not in PROBE_HOSTS or port != str(GRPC_PORT):
            problems.add(cw, f"{kind} dials --node {parsed['node']!r}, not one of "
                             f"{', '.join(f'{h}:{GRPC_PORT}' for h in PROBE_HOSTS)} (names its certificate carries)")
        if probe.get("timeoutSeconds", 1) < MIN_PROBE_TIMEOUT:
            problems.add(cw, f"{kind} times out after {probe.get('timeoutSeconds', 1)} s: "
                             f"a process and a TLS handshake need {MIN_PROBE_TIMEOUT} s or more")


def openssl(*args, stdin=None):
    r = subprocess.run(["openssl", *args], input=stdin, capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout, r.stderr


def check_certificate(where, name, pem, key_pem, bundle_pem, org_ca_pem, dns_names, problems):
    """Pod `name`'s API certificate: role node of organization `name`, issued
    by `org_ca_pem` (its organization's CA in the genesis), which the bundle
    holds; the key is its key; it names 127.0.0.1 (the probes) and
    `dns_names`."""
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d / "cert.pem").write_text(pem)
        (d / "key.pem").write_text(key_pem)
        (d / "bundle.pem").write_text(bundle_pem)
        rc, subject, err = openssl("x509", "-in", str(d / "cert.pem"), "-noout", "-subject", "-nameopt", "RFC2253")
        if rc != 0:
            problems.add(where, f"{name}.pem is not a certificate ({err.strip()})")
            return
        fields = dict(p.split("=", 1) for p in subject.strip().removeprefix("subject=").split(",") if "=" in p)
        if fields.get("OU") != "node" or fields.get("O") != name:
            problems.add(where, f"{name}.pem is {subject.strip()}, not role (OU) node of organization (O) {name}")
        rc, san, _ = openssl("x509", "-in", str(d / "cert.pem"), "-noout", "-ext", "subjectAltName")
        names = {t.strip().split(":", 1)[1] for t in san.replace("\n", ",").split(",")
                 if t.strip().startswith(("DNS:", "IP Address:"))}
        for n in ("127.0.0.1", *dns_names):
            if n not in names:
                problems.add(where, f"{name}.pem does not name {n} (it names {', '.join(sorted(names)) or 'nothing'})")
        _, cert_pub, _ = openssl("x509", "-in", str(d / "cert.pem"), "-noout", "-pubkey")
        rc, key_pub, err = openssl("pkey", "-in", str(d / "key.pem"), "-pubout")
        if rc != 0 or key_pub.strip() != cert_pub.strip():
            problems.add(where, f"{name}.key is not the key of {name}.pem")
        if org_ca_pem is None:
            problems.add(where, f"the genesis has no organization {name}")
        else:
            (d / "org.pem").write_text(org_ca_pem)
            rc, out, err = openssl("verify", "-CAfile", str(d / "org.pem"), str(d / "cert.pem"))
            if rc != 0:
                problems.add(where, f"{name}.pem is not issued by organization {name}'s CA in the genesis "
                                    f"({(out + err).strip().splitlines()[-1]})")
            rc, out, err = openssl("verify", "-CAfile", str(d / "bundle.pem"), str(d / "cert.pem"))
            if rc != 0:
                problems.add(where, f"{name}.pem does not verify against ca.pem ({(out + err).strip().splitlines()[-1]})")


def secret_data(secret, key, where, problems):
    raw = secret.get("data", {}).get(key)
    if raw is None:
        problems.add(where, f"no key {key}")
        return None
    try:
        return base64.b64decode(raw, validate=True).decode()
    except (ValueError, UnicodeDecodeError) as e:
        problems.add(where, f"{key} is not base64 of text ({e})")
        return None


def check_generated(by_kind, sts, replicas, volumes, problems):
    names = [f"{sts['metadata']['name']}-{i}" for i in range(replicas)]
    pod_spec = sts["spec"]["template"]["spec"]
    container = pod_spec["containers"][0]
    mounts = {m.get("mountPath"): m for m in container.get("volumeMounts", [])}
    cm_names = [v["configMap"]["name"] for v in volumes.values() if "configMap" in v]
    secrets = {d["metadata"]["name"]: (p, d) for p, d in by_kind.get("Secret", [])}
    cms = {d["metadata"]["name"]: (p, d) for p, d in by_kind.get("ConfigMap", [])}

    def secret_of(path):
        m = mounts.get(path)
        v = volumes.get(m.get("name"), {}) if m else {}
        return v.get("secret", {}).get("secretName")

    key_secret = secret_of(f"{HOME}/node_key.json")
    if key_secret not in secrets:
        problems.add("generated", f"no Secret {key_secret} (the node keys)")
        return
    spath, secret = secrets[key_secret]
    keys = {}
    for n in names:
        raw = secret.get("data", {}).get(f"{n}.json")
        if raw is None:
            problems.add(spath, f"no key {n}.json")
            continue
        try:
            k = json.loads(base64.b64decode(raw))
            keys[n] = k["public_key"]
            if not re.fullmatch(r"[0-9a-f]{64}", k["secret_seed"]):
                raise ValueError("secret_seed")
        except (ValueError, KeyError) as e:
            problems.add(spath, f"{n}.json is not a node key ({e})")
    genesis = None
    for cm_name in cm_names:
        if cm_name not in cms:
            problems.add("generated", f"no ConfigMap {cm_name}")
            continue
        cpath, cm = cms[cm_name]
        data = cm.get("data", {})
        try:
            genesis = json.loads(data["genesis.json"])
        except (KeyError, ValueError) as e:
            problems.add(cpath, f"genesis.json missing or not JSON ({e})")
            continue
        gkeys = {v["name"]: v["public_key"] for v in genesis.get("validators", [])}
        if gkeys != keys:
            problems.add(cpath, "the genesis validators are not the keys of the Secret")
        svc = sts["spec"]["serviceName"]
        for n in names:
            try:
                cfg = tomllib.loads(data[f"{n}.toml"])
            except (KeyError, tomllib.TOMLDecodeError) as e:
                problems.add(cpath, f"{n}.toml missing or not TOML ({e})")
                continue
            if cfg.get("moniker") != n:
                problems.add(cpath, f"{n}.toml has moniker {cfg.get('moniker')}")
            want = {f"{keys[o]}@{o}.{svc}" for o in names if o != n and o in keys}
            got = {p.split(".consort.svc")[0] for p in cfg.get("p2p", {}).get("peers", [])}
            if got != want:
                problems.add(cpath, f"{n}.toml peers {sorted(got)} are not the other pods")
            rpc = cfg.get("rpc", {})
            if not rpc.get("listen", "").endswith(f":{GRPC_PORT}"):
                problems.add(cpath, f"{n}.toml gRPC does not listen on {GRPC_PORT}")
            if rpc.get("insecure", False) or (rpc.get("tls_cert"), rpc.get("tls_key")) != ("tls/node.pem", "tls/node.key"):
                problems.add(cpath, f"{n}.toml does not serve the API over TLS with the mounted "
                                    f"tls/node.pem and tls/node.key (tls_cert {rpc.get('tls_cert')!r}, "
                                    f"tls_key {rpc.get('tls_key')!r}, insecure {rpc.get('insecure')})")
            for k, v in cfg.get("sync", {}).items():
                if k.startswith("tls_") and v and f"{HOME}/{v}" not in mounts:
                    problems.add(cpath, f"{n}.toml sync.{k} = {v!r} is not mounted")

    # The API's certificates: one per pod, of its organization, in the Secret
    # the probes' files come from.
    tls_secret = secret_of(TLS_CERT)
    if tls_secret is None:
        return  # reported with the mounts
    if tls_secret not in secrets:
        problems.add("generated", f"no Secret {tls_secret} (the API's certificates)")
        return
    if shutil.which("openssl") is None:
        problems.add("generated", "openssl is needed to check the certificates")
        return
    tpath, tsecret = secrets[tls_secret]
    bundle = secret_data(tsecret, mounts[TLS_CA].get("subPath", "ca.pem"), tpath, problems) if TLS_CA in mounts else None
    if bundle is None:
        return
    org_cas = {o.get("name"): o.get("ca_cert") for o in (genesis or {}).get("organizations", [])}
    svc = sts["spec"]["serviceName"]
    ns = sts["metadata"].get("namespace", "default")
    # A client in the cluster dials a pod by its name under the headless
    # Service, or a Service in front of the pods (any pod may answer).
    labels = sts["spec"]["template"].get("metadata", {}).get("labels", {})
    fronts = [f"{d['metadata']['name']}.{ns}.svc" for _, d in by_kind.get("Service", [])
              if d.get("spec", {}).get("clusterIP") != "None"
              and labels_match(d.get("spec", {}).get("selector", {"-": "-"}), labels)]
    for n in names:
        pem = secret_data(tsecret, f"{n}.pem", tpath, problems)
        key_pem = secret_data(tsecret, f"{n}.key", tpath, problems)
        if pem is None or key_pem is None:
            continue
        check_certificate(tpath, n, pem, key_pem, bundle, org_cas.get(n),
                          (f"{n}.{svc}.{ns}.svc.cluster.local", *fronts), problems)


def check_kustomization(path, doc, problems):
    for r in doc.get("resources", []):
        if r.startswith("generated/"):
            continue  # written by gen.sh; checked through --generated
        if not (path.parent / r).is_file():
            problems.add(path, f"resource {r} does not exist")


def k8s_docs(generated):
    docs = []
    for p in sorted((HERE / "k8s").glob("*.yaml")):
        docs += [(p, d) for d in load_yaml_docs(p)]
    if generated:
        for p in sorted(Path(generated).glob("*.yaml")):
            docs += [(p, d) for d in load_yaml_docs(p)]
    return docs


def run_k8s(docs, generated):
    problems = Problems()
    validate_schema(docs, problems)
    for path, doc in docs:
        if doc.get("kind") == "Kustomization":
            check_kustomization(path, doc, problems)
    check_k8s(docs, generated, problems)
    return problems


def load_compose():
    return load_yaml_docs(HERE / "compose.yaml")[0]


def run_compose_and_monitoring(compose=None):
    problems = Problems()
    compose_path = HERE / "compose.yaml"
    if compose is None:
        compose = load_compose()
    services = compose.get("services", {})
    for n in ("org1", "org2", "org3", "org4"):
        s = services.get(n)
        if not s:
            problems.add(compose_path, f"no service {n}")
            continue
        if "consortium" not in s.get("networks", []) or n not in s.get("networks", []):
            problems.add(compose_path, f"{n} must be on its own network and on consortium")
    # The API is TLS only: a node's health check is `consort health` over TLS
    # with the node's own files (the image's HEALTHCHECK does the same).
    for n in ("org1", "org2", "org3", "org4", "joiner"):
        test = services.get(n, {}).get("healthcheck", {}).get("test", [])
        parsed = probe_command(test[1:] if test[:1] in (["CMD"], ["CMD-SHELL"]) else test)
        if parsed is None or parsed["sub"] != "health":
            problems.add(compose_path, f"{n}'s health check is not `{BINARY} health` (got {test!r})")
            continue
        for flag, path in (("ca", TLS_CA), ("cert", TLS_CERT), ("key", TLS_KEY)):
            if parsed["flags"].get(flag) != path:
                problems.add(compose_path, f"{n}'s health check passes --{flag} "
                                           f"{parsed['flags'].get(flag)!r}, not {path}")
        if (parsed["node"] or "").rpartition(":")[0] not in PROBE_HOSTS:
            problems.add(compose_path, f"{n}'s health check dials {parsed['node']!r}, not a name of its certificate")
    if "joiner" not in services.get("joiner", {}).get("profiles", []):
        problems.add(compose_path, "the joiner must be behind the 'joiner' profile")
    for n in ("prometheus", "grafana"):
        if "monitoring" not in services.get(n, {}).get("profiles", []):
            problems.add(compose_path, f"{n} must be behind the 'monitoring' profile")

    prom_path = HERE / "prometheus" / "prometheus.yml"
    prom = load_yaml_docs(prom_path)[0]
    targets = [t for job in prom.get("scrape_configs", []) for sc in job.get("static_configs", [])
               for t in sc.get("targets", [])]
    if not targets:
        problems.add(prom_path, "no scrape targets")
    for t in targets:
        host, _, port = t.partition(":")
        if host not in services or port != "26660":
            problems.add(prom_path, f"target {t} is not a compose service's metrics port")

    ds_path = HERE / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
    ds = load_yaml_docs(ds_path)[0]
    uids = {d.get("uid") for d in ds.get("datasources", [])}
    for d in ds.get("datasources", []):
        if not d.get("url", "").startswith("http://prometheus:"):
            problems.add(ds_path, f"datasource {d.get('name')} does not point at the prometheus service")

    prov_path = HERE / "grafana" / "provisioning" / "dashboards" / "consort.yml"
    prov = load_yaml_docs(prov_path)[0]
    mounts = {v.split(":")[1] for v in services.get("grafana", {}).get("volumes", [])}
    for p in prov.get("providers", []):
        if p.get("options", {}).get("path") not in mounts:
            problems.add(prov_path, f"provider {p.get('name')} reads a path compose does not mount")

    dash_path = HERE / "grafana" / "dashboards" / "consort.json"
    dash = json.loads(dash_path.read_text())
    panels = dash.get("panels", [])
    if not dash.get("uid") or not panels:
        problems.add(dash_path, "no uid or no panels")
    for p in panels:
        uid = p.get("datasource", {}).get("uid")
        if uid not in uids:
            problems.add(dash_path, f"panel {p.get('title')!r} uses datasource {uid!r}, not a provisioned one")
        for t in p.get("targets", []):
            if not re.search(r"\b(consort|process)_[a-z_]+", t.get("expr", "")):
                problems.add(dash_path, f"panel {p.get('title')!r} plots no consort metric")
    return problems


def compose_cli_check():
    """compose's own validation of compose.yaml, when compose is installed."""
    problems = Problems()
    candidates = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        candidates.append(["docker-compose"])
    for cmd in candidates:
        try:
            if subprocess.run(cmd + ["version"], capture_output=True, timeout=30).returncode != 0:
                continue
            r = subprocess.run(
                cmd + ["-f", str(HERE / "compose.yaml"), "--profile", "joiner", "--profile", "monitoring",
                       "config", "-q"],
                capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as e:
            problems.add("compose.yaml", f"{' '.join(cmd)} failed to run: {e}")
            return problems, " ".join(cmd)
        if r.returncode != 0:
            problems.add("compose.yaml", f"{' '.join(cmd)} config: {r.stderr.strip()}")
        return problems, " ".join(cmd)
    return problems, None


def self_test(docs, generated):
    """Each break must be reported, or the checks are toothless."""
    def broken(mutate):
        d = copy.deepcopy(docs)
        for _, doc in d:
            mutate(doc)
        return d

    def container(d):
        return d["spec"]["template"]["spec"]["containers"][0]

    def sts(d):
        return d.get("kind") == "StatefulSet"

    def probe_cmd(kind):
        return lambda d: container(d)[kind]["exec"]["command"]

    def set_probe(kind, probe):
        return lambda d: sts(d) and container(d).update({kind: probe})

    def drop_arg(kind, flag):
        def f(d):
            if sts(d):
                cmd = probe_cmd(kind)(d)
                i = cmd.index(flag)
                del cmd[i:i + 2]
        return f

    def set_arg(kind, flag, value):
        def f(d):
            if sts(d):
                cmd = probe_cmd(kind)(d)
                cmd[cmd.index(flag) + 1] = value
        return f

    def replace_arg(kind, old, new):
        def f(d):
            if sts(d):
                cmd = probe_cmd(kind)(d)
                cmd[cmd.index(old)] = new
        return f

    def drop_mount(path):
        return lambda d: sts(d) and container(d).update(
            volumeMounts=[m for m in container(d)["volumeMounts"] if m["mountPath"] != path])

    grpc_probe = {"grpc": {"port": GRPC_PORT}, "periodSeconds": 5}
    breaks = {
        "replicas of the wrong type": lambda d: sts(d) and d["spec"].update(replicas="four"),
        "an unknown field": lambda d: sts(d) and d["spec"].update(replicaz=4),
        "no readiness probe": lambda d: sts(d) and container(d).pop("readinessProbe"),
        "no liveness probe": lambda d: sts(d) and container(d).pop("livenessProbe"),
        "readiness as a grpc probe (no TLS)": set_probe("readinessProbe", grpc_probe),
        "liveness as a grpc probe (no TLS)": set_probe("livenessProbe", grpc_probe),
        "startup as a grpc probe (no TLS)": set_probe("startupProbe", grpc_probe),
        "readiness without a client certificate": drop_arg("readinessProbe", "--cert"),
        "liveness without the CA bundle": drop_arg("livenessProbe", "--ca"),
        "readiness with a key that is not mounted": set_arg("readinessProbe", "--key", "/tmp/node.key"),
        "readiness dialing a name the certificate lacks": set_arg("readinessProbe", "--node", "10.0.0.1:26657"),
        "readiness asking status, not health": replace_arg("readinessProbe", "health", "status"),
        "a probe timing out after 1 s": lambda d: sts(d) and container(d)["readinessProbe"].pop("timeoutSeconds"),
        "no node certificate mounted": drop_mount(TLS_CERT),
        "no CA bundle mounted": drop_mount(TLS_CA),
        "no resource requests": lambda d: sts(d) and container(d).pop("resources"),
        "a budget of 2 of 4": lambda d: d["kind"] == "PodDisruptionBudget" and d["spec"].update(minAvailable=2),
    }
    if generated:
        def secret_entry(name, key, value):
            def f(d):
                if d.get("kind") == "Secret" and d["metadata"]["name"] == name:
                    if value is None:
                        d["data"].pop(key)
                    else:
                        d["data"][key] = value(d["data"])
            return f

        def config(n, pattern, repl):
            def f(d):
                if d.get("kind") == "ConfigMap" and f"{n}.toml" in d.get("data", {}):
                    d["data"][f"{n}.toml"] = re.sub(pattern, repl, d["data"][f"{n}.toml"], count=1, flags=re.M)
            return f

        breaks.update({
            "a config without rpc.tls_cert (plaintext)": config(
                "validator-1", r'^tls_cert = "tls/node.pem"$', 'tls_cert = ""'),
            "a config with rpc.insecure = true": config("validator-2", r"^insecure = false$", "insecure = true"),
            "no certificate for validator-2": secret_entry("validator-tls", "validator-2.pem", None),
            "validator-0's certificate for validator-1 (another organization's)": secret_entry(
                "validator-tls", "validator-1.pem", lambda data: data["validator-0.pem"]),
            "validator-3's key not its certificate's": secret_entry(
                "validator-tls", "validator-3.key", lambda data: data["validator-2.key"]),
            "a CA bundle without the CAs": secret_entry(
                "validator-tls", "ca.pem", lambda data: data["validator-0.pem"]),
        })
        client = Path(generated) / "pki" / "clients" / "client0.pem"
        if client.is_file():
            pem = base64.b64encode(client.read_bytes()).decode()
            key = base64.b64encode(client.with_suffix(".key").read_bytes()).decode()

            def client_cert(d):
                secret_entry("validator-tls", "validator-0.pem", lambda _: pem)(d)
                secret_entry("validator-tls", "validator-0.key", lambda _: key)(d)
            breaks["a client certificate (no names, role client) as validator-0's"] = client_cert
    failures = 0
    for what, mutate in breaks.items():
        if not run_k8s(broken(mutate), generated).items:
            print(f"self-test: {what} went unreported")
            failures += 1

    def compose_break(mutate):
        c = load_compose()
        mutate(c["services"])
        return c

    def health_test(name, f):
        def g(services):
            services[name]["healthcheck"] = {**services[name]["healthcheck"],
                                             "test": f(list(services[name]["healthcheck"]["test"]))}
        return g

    def without(flag):
        def f(t):
            i = t.index(flag)
            return t[:i] + t[i + 2:]
        return f

    compose_breaks = {
        "compose: a plaintext health check": health_test(
            "org2", lambda t: ["CMD", BINARY, "health", "--node", "127.0.0.1:26657"]),
        "compose: a health check without the node's certificate": health_test("joiner", without("--cert")),
        "compose: no health check": lambda services: services["org3"].pop("healthcheck"),
    }
    for what, mutate in compose_breaks.items():
        if not run_compose_and_monitoring(compose_break(mutate)).items:
            print(f"self-test: {what} went unreported")
            failures += 1
    return failures, len(breaks) + len(compose_breaks)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generated", help="directory with the Secrets and ConfigMap of deploy/k8s/gen.sh")
    ap.add_argument("--self-test", action="store_true")
    args = ap.parse_args()

    docs = k8s_docs(args.generated)
    problems = run_k8s(docs, args.generated)
    print(f"k8s: {len(docs)} manifests checked against the Kubernetes {K8S_VERSION} schemas "
          f"(kubernetes-validate {kubernetes_validate.__version__})")
    problems.items += run_compose_and_monitoring().items
    print("compose, prometheus and grafana files parsed and cross-checked")
    compose_problems, compose_cmd = compose_cli_check()
    problems.items += compose_problems.items
    print(f"compose.yaml validated by {compose_cmd} config" if compose_cmd
          else "note: no docker compose here; compose.yaml was only parsed")
    failed = 0
    if args.self_test:
        failed, total = self_test(k8s_docs(args.generated), args.generated)
        print(f"self-test: {total - failed} of {total} deliberate breaks reported")
    for p in problems.items:
        print(f"error: {p}")
    if problems.items or failed:
        sys.exit(1)
    print("deploy config: ok")


if __name__ == "__main__":
    main()
