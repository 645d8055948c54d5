#!/usr/bin/env python3
"""Checks the deployment files of deploy/ as files, without a cluster or images.

- Kubernetes: every manifest of deploy/k8s/ (and the Secret and ConfigMap that
  deploy/k8s/gen.sh writes, given with --generated DIR) is validated against
  the Kubernetes API schemas bundled with the kubernetes-validate package
  (strict: unknown fields are errors), then checked for what the validators
  need: a gRPC readiness probe on the gRPC port, resource requests, the node
  key from a Secret, selectors of Services and the PodDisruptionBudget that
  match the pods, a budget that keeps more than 2/3 of the validators up, and a
  key and a config for every replica.
- compose.yaml, the Prometheus configuration and the Grafana provisioning and
  dashboard: parsed, and checked against each other (scrape targets are compose
  services, the dashboard's datasource is the provisioned one, the provisioned
  dashboard path is where compose mounts the dashboards).

Usage: deploy/check-config.py [--generated DIR] [--self-test]
  --self-test also breaks copies of the manifests in known ways and fails
  unless every break is reported (so that a check that passes everything is
  caught).
Needs: pip install kubernetes-validate (which brings PyYAML).
"""

import argparse
import base64
import copy
import json
import re
import shutil
import subprocess
import sys
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
            probe = c.get("readinessProbe", {})
            if probe.get("grpc", {}).get("port") != GRPC_PORT:
                problems.add(cw, f"readiness must come from the gRPC health service on {GRPC_PORT}")
            req = c.get("resources", {}).get("requests", {})
            for r in ("cpu", "memory"):
                if r not in req:
                    problems.add(cw, f"no {r} request")
            mounts = {m.get("mountPath"): m for m in c.get("volumeMounts", [])}
            key = mounts.get("/home/consort/node_key.json")
            if not key or "secret" not in volumes.get(key.get("name"), {}):
                problems.add(cw, "node_key.json is not mounted from the Secret")
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


def check_generated(by_kind, sts, replicas, volumes, problems):
    names = [f"{sts['metadata']['name']}-{i}" for i in range(replicas)]
    secret_name = next(v["secret"]["secretName"] for v in volumes.values() if "secret" in v)
    cm_names = [v["configMap"]["name"] for v in volumes.values() if "configMap" in v]
    secrets = {d["metadata"]["name"]: (p, d) for p, d in by_kind.get("Secret", [])}
    cms = {d["metadata"]["name"]: (p, d) for p, d in by_kind.get("ConfigMap", [])}
    if secret_name not in secrets:
        problems.add("generated", f"no Secret {secret_name}")
        return
    spath, secret = secrets[secret_name]
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
            if not cfg.get("rpc", {}).get("listen", "").endswith(f":{GRPC_PORT}"):
                problems.add(cpath, f"{n}.toml gRPC does not listen on {GRPC_PORT}")


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


def run_compose_and_monitoring():
    problems = Problems()
    compose_path = HERE / "compose.yaml"
    compose = load_yaml_docs(compose_path)[0]
    services = compose.get("services", {})
    for n in ("org1", "org2", "org3", "org4"):
        s = services.get(n)
        if not s:
            problems.add(compose_path, f"no service {n}")
            continue
        if "consortium" not in s.get("networks", []) or n not in s.get("networks", []):
            problems.add(compose_path, f"{n} must be on its own network and on consortium")
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


def self_test(docs):
    """Each break must be reported, or the checks are toothless."""
    def broken(mutate):
        d = copy.deepcopy(docs)
        for _, doc in d:
            if doc.get("kind") == "StatefulSet" or doc.get("kind") == "PodDisruptionBudget":
                mutate(doc)
        return d

    def sts(doc):
        return doc if doc["kind"] == "StatefulSet" else None

    breaks = {
        "replicas of the wrong type": lambda d: sts(d) and d["spec"].update(replicas="four"),
        "an unknown field": lambda d: sts(d) and d["spec"].update(replicaz=4),
        "no readiness probe": lambda d: sts(d) and d["spec"]["template"]["spec"]["containers"][0].pop("readinessProbe"),
        "no resource requests": lambda d: sts(d) and d["spec"]["template"]["spec"]["containers"][0].pop("resources"),
        "a budget of 2 of 4": lambda d: d["kind"] == "PodDisruptionBudget" and d["spec"].update(minAvailable=2),
    }
    failures = 0
    for what, mutate in breaks.items():
        if not run_k8s(broken(mutate), None).items:
            print(f"self-test: {what} went unreported")
            failures += 1
    return failures, len(breaks)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generated", help="directory with the Secret and ConfigMap of deploy/k8s/gen.sh")
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
        failed, total = self_test(k8s_docs(None))
        print(f"self-test: {total - failed} of {total} deliberate breaks reported")
    for p in problems.items:
        print(f"error: {p}")
    if problems.items or failed:
        sys.exit(1)
    print("deploy config: ok")


if __name__ == "__main__":
    main()
