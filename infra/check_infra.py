"""Checks of Lightbox's deployment files (run by tests/infra.rs; `python infra/check_infra.py`).

Renders every overlay of infra/k8s with `kubectl kustomize` (production with its secret
templates filled in, in a temporary copy) and checks what would be applied:
- every object against the Kubernetes schemas (kubernetes-validate --strict), and every KEDA
  ScaledObject against KEDA's own schema (the models that cloudcoil-models-keda generates from
  KEDA's CRDs, strict types, and no field the CRD does not know);
- every reference to a Secret or ConfigMap resolves to one the overlay renders;
- NATS: a 3-node JetStream StatefulSet with the monitoring port 8222 on its headless Service,
  the one KEDA's triggers name; its rendered nats.conf and auth.conf pass `nats-server -t` with
  the environment the pod gets; NATS_URL names every server; streams are asked for as many
  replicas as there are servers;
- the lightbox-infra-apply Job runs `lightbox infra apply` as the admin user;
- each function Deployment: waits for its consumer, drains (terminationGracePeriodSeconds over
  the drain grace, preStop), runs as non-root on a read-only root with a writable /tmp, has a
  PodDisruptionBudget, a readiness probe that asks over NATS (`--check`) and a liveness probe
  that does not (an HTTP or TCP probe of a port the container declares), and one ScaledObject on
  JOBS/<its consumer> whose lagThreshold is the per-pod concurrency and whose maxReplicaCount is
  the consumer's max_ack_pending (infra/nats/consumer.*.json) divided by that concurrency;
  render-heavy asks for a GPU (and scales to zero) in production and for none in dev;
- every LIGHTBOX_*/NATS_*/AWS_* variable the function containers or compose.yaml set is
  documented in README.md.
Prints one line per problem and exits 1 if there is any.

Options: --root DIR checks another copy of the repository (the tests use it for negative
controls); --tools DIR is where kubernetes-validate and nats-server are (default: .tools/bin or
LIGHTBOX_TOOLS_BIN).
"""
import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

parser = argparse.ArgumentParser()
parser.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
parser.add_argument("--tools", default=None)
args = parser.parse_args()
root = os.path.abspath(args.root)
tools = args.tools or os.environ.get("LIGHTBOX_TOOLS_BIN") or os.path.join(root, ".tools/bin")
if not os.path.isdir(tools):
    tools = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".tools/bin")

problems = []
OVERLAYS = ["dev", "production"]
NATS_SERVERS = 3
MONITOR_PORT = 8222


def problem(where, text):
    problems.append(f"{where}: {text}")


consumers = {}
for path in glob.glob(os.path.join(root, "infra/nats/consumer.*.json")):
    config = json.load(open(path))
    consumers[config["durable_name"]] = config
readme = open(os.path.join(root, "README.md")).read()
documented = set(re.findall(r"`((?:LIGHTBOX|NATS|AWS)_[A-Z0-9_]+)`", readme))
stream_replicas = {
    json.load(open(p))["name"]: json.load(open(p))["num_replicas"]
    for p in glob.glob(os.path.join(root, "infra/nats/*.stream.json"))
}


def render(overlay):
    """The overlay's objects, rendered from a copy of infra/ (production gets its secrets/*.env
    from the committed templates, as an operator would make them)."""
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(os.path.join(root, "infra"), os.path.join(tmp, "infra"))
        secrets = os.path.join(tmp, "infra/k8s/overlays", overlay, "secrets")
        for template in glob.glob(os.path.join(secrets, "*.env.example")):
            shutil.copy(template, template[: -len(".example")])
        out = subprocess.run(
            ["kubectl", "kustomize", os.path.join(tmp, "infra/k8s/overlays", overlay)],
            capture_output=True,
            text=True,
        )
    if out.returncode != 0:
        problem(overlay, f"kubectl kustomize failed: {out.stderr.strip()}")
        return []
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def kubernetes_validate(overlay, docs):
    """kubernetes-validate --strict on everything but KEDA's kinds (checked below)."""
    plain = [d for d in docs if not d["apiVersion"].startswith("keda.sh/")]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump_all(plain, f)
        path = f.name
    out = subprocess.run(
        [os.path.join(tools, "kubernetes-validate"), "--strict", "--quiet", path],
        capture_output=True,
        text=True,
    )
    os.unlink(path)
    report = (out.stdout + out.stderr).strip()
    if out.returncode != 0 or "Couldn't find schema" in report:
        problem(overlay, f"kubernetes-validate: {report}")


def unknown_fields(given, known, path=""):
    """Paths in `given` that validation dropped (pydantic ignores fields a model lacks)."""
    if isinstance(given, dict) and isinstance(known, dict):
        for key, value in given.items():
            if key not in known:
                yield f"{path}.{key}"
            else:
                yield from unknown_fields(value, known[key], f"{path}.{key}")
    elif isinstance(given, list) and isinstance(known, list):
        for index, (a, b) in enumerate(zip(given, known)):
            yield from unknown_fields(a, b, f"{path}[{index}]")


def keda_validate(overlay, docs):
    from cloudcoil.models.keda import v1alpha1 as keda
    from pydantic import ValidationError

    for doc in docs:
        if not doc["apiVersion"].startswith("keda.sh/"):
            continue
        where = f"{overlay} {doc['kind']}/{doc['metadata']['name']}"
        model = getattr(keda, doc["kind"], None)
        if doc["apiVersion"] != "keda.sh/v1alpha1" or model is None:
            problem(where, f"{doc['apiVersion']} {doc['kind']} is not a KEDA kind")
            continue
        try:
            parsed = model.model_validate(doc, strict=True)
        except ValidationError as err:
            problem(where, f"KEDA schema: {err}".replace("\n", " "))
            continue
        dumped = parsed.model_dump(by_alias=True, exclude_unset=True, mode="json")
        for field in unknown_fields(doc, dumped):
            problem(where, f"KEDA schema has no field {field}")


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def value_of(env, name):
    entry = env.get(name)
    return entry.get("value") if entry else None


def references(obj, kind):
    """Names of Secrets or ConfigMaps an object's pod template (or a volume) refers to."""
    names = set()
    key_ref = "secretKeyRef" if kind == "Secret" else "configMapKeyRef"
    env_ref = "secretRef" if kind == "Secret" else "configMapRef"

    def walk(node):
        if isinstance(node, dict):
            if key_ref in node:
                names.add(node[key_ref]["name"])
            if env_ref in node:
                names.add(node[env_ref]["name"])
            if kind == "Secret" and "secretName" in node:
                names.add(node["secretName"])
            if kind == "ConfigMap" and "configMap" in node and isinstance(node["configMap"], dict):
                names.add(node["configMap"]["name"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(obj.get("spec", {}))
    return names


def check_nats(overlay, by_kind, config, secrets):
    sets = [s for s in by_kind.get("StatefulSet", []) if s["metadata"]["name"] == "nats"]
    if len(sets) != 1:
        problem(overlay, "needs one StatefulSet nats")
        return None
    nats = sets[0]
    spec = nats["spec"]
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    where = f"{overlay} StatefulSet/nats"
    if spec.get("replicas") != NATS_SERVERS:
        problem(where, f"replicas {spec.get('replicas')}, want a {NATS_SERVERS}-node cluster")
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    if ports.get("monitor") != MONITOR_PORT:
        problem(where, f"container needs the monitoring port {MONITOR_PORT} (KEDA reads /jsz there)")
    service = next((s for s in by_kind.get("Service", []) if s["metadata"]["name"] == spec.get("serviceName")), None)
    if service is None or service["spec"].get("clusterIP") != "None":
        problem(where, f"serviceName {spec.get('serviceName')} must be a headless Service")
    elif MONITOR_PORT not in [p["port"] for p in service["spec"]["ports"]]:
        problem(where, f"Service {service['metadata']['name']} must expose {MONITOR_PORT}")
    # The config as the pod sees it, checked by nats-server itself.
    maps = {m["metadata"]["name"]: m for m in by_kind.get("ConfigMap", [])}
    files = {}
    for volume in pod.get("volumes", []):
        for source in volume.get("projected", {}).get("sources", []):
            if "configMap" in source:
                files.update(maps.get(source["configMap"]["name"], {}).get("data", {}))
    if "nats.conf" not in files or "auth.conf" not in files:
        problem(where, f"its config volume holds {sorted(files)}, not nats.conf and auth.conf")
        return nats
    conf = files["nats.conf"]
    if not re.search(rf"^http_port:\s*{MONITOR_PORT}\s*$", conf, re.M):
        problem(where, f"nats.conf must set http_port: {MONITOR_PORT}")
    if "jetstream" not in conf:
        problem(where, "nats.conf must enable JetStream")
    routes = re.findall(r"nats://(nats-\d+)\.", conf)
    if sorted(routes) != [f"nats-{i}" for i in range(NATS_SERVERS)]:
        problem(where, f"nats.conf routes {routes} must name every server")
    env = {"POD_NAME": "nats-0"}
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"].replace("$(POD_NAME)", "nats-0")
        elif "secretKeyRef" in entry.get("valueFrom", {}):
            ref = entry["valueFrom"]["secretKeyRef"]
            secret = secrets.get(ref["name"])
            if secret is not None:
                env[entry["name"]] = secret.get(ref["key"], "")
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in files.items():
            open(os.path.join(tmp, name), "w").write(text)
        out = subprocess.run(
            [os.path.join(tools, "nats-server"), "-t", "-c", os.path.join(tmp, "nats.conf")],
            capture_output=True,
            text=True,
            env={"PATH": os.environ.get("PATH", ""), **env},
        )
    if out.returncode != 0:
        problem(where, f"nats-server -t: {(out.stdout + out.stderr).strip()}")
    url = config.get("NATS_URL", "")
    hosts = re.findall(r"nats://(nats-\d+)\.nats\.lightbox\.svc\.cluster\.local:4222", url)
    if sorted(hosts) != [f"nats-{i}" for i in range(NATS_SERVERS)]:
        problem(overlay, f"NATS_URL {url!r} must list every server")
    if config.get("LIGHTBOX_NATS_REPLICAS") != str(NATS_SERVERS):
        problem(overlay, f"LIGHTBOX_NATS_REPLICAS {config.get('LIGHTBOX_NATS_REPLICAS')} != {NATS_SERVERS} servers")
    return nats


def check_job(overlay, by_kind):
    jobs = [j for j in by_kind.get("Job", []) if j["metadata"]["name"] == "lightbox-infra-apply"]
    if len(jobs) != 1:
        problem(overlay, "needs the Job lightbox-infra-apply")
        return
    container = jobs[0]["spec"]["template"]["spec"]["containers"][0]
    where = f"{overlay} Job/lightbox-infra-apply"
    if container.get("args") != ["infra", "apply"] or "lightbox-cli" not in container["image"]:
        problem(where, "must run `lightbox infra apply` from the lightbox-cli image")
    env = env_of(container)
    if value_of(env, "NATS_USER") != "admin":
        problem(where, "must apply as the admin user (functions may only bind)")
    if "LIGHTBOX_NATS_REPLICAS" not in env:
        problem(where, "must create streams at LIGHTBOX_NATS_REPLICAS replicas")


def check_functions(overlay, by_kind, secrets_declared, used_vars):
    deployments = [d for d in by_kind.get("Deployment", [])
                   if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "function"]
    names = sorted(d["metadata"]["name"] for d in deployments)
    if names != sorted(consumers):
        problem(overlay, f"function Deployments {names} != consumers {sorted(consumers)}")
    for dep in deployments:
        name = dep["metadata"]["name"]
        where = f"{overlay} Deployment/{name}"
        spec = dep["spec"]["template"]["spec"]
        container = spec["containers"][0]
        env = env_of(container)
        used_vars.update(env.keys())
        queue, concurrency = value_of(env, "LIGHTBOX_QUEUE"), value_of(env, "LIGHTBOX_CONCURRENCY")
        drain = int(value_of(env, "LIGHTBOX_DRAIN_GRACE_SECS") or 30)
        consumer = consumers.get(name, {})
        if consumer.get("filter_subject") != queue:
            problem(where, f"serves {queue!r} but consumer {name} filters {consumer.get('filter_subject')!r}")
        if spec.get("terminationGracePeriodSeconds", 30) <= drain:
            problem(where, f"terminationGracePeriodSeconds must exceed the drain grace {drain}s")
        if not spec.get("securityContext", {}).get("runAsNonRoot"):
            problem(where, "must run as non-root")
        security = container.get("securityContext", {})
        if not security.get("readOnlyRootFilesystem") or security.get("allowPrivilegeEscalation") is not False:
            problem(where, "needs a read-only root filesystem and no privilege escalation")
        if "/tmp" not in [m["mountPath"] for m in container.get("volumeMounts", [])]:
            problem(where, "needs a writable /tmp (emptyDir) under the read-only root")
        if "preStop" not in container.get("lifecycle", {}):
            problem(where, "needs a preStop drain hook")
        waits = [c for c in spec.get("initContainers", []) if c["name"] == "wait-for-consumer"]
        if not waits or value_of(env_of(waits[0]), "CONSUMER") != name:
            problem(where, f"needs the init container wait-for-consumer for consumer {name}")
        readiness = container.get("readinessProbe", {})
        if readiness.get("exec", {}).get("command", [])[-1:] != ["--check"]:
            problem(where, "readiness probe must ask the instance over NATS (--check)")
        liveness = container.get("livenessProbe", {})
        ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
        local = liveness.get("httpGet") or liveness.get("tcpSocket")
        if not local:
            problem(where, "liveness probe must not need NATS: an HTTP or TCP probe of the process")
        elif local["port"] not in ports and local["port"] not in ports.values():
            problem(where, f"liveness probe port {local['port']} is not a port the container declares")
        pdbs = [p for p in by_kind.get("PodDisruptionBudget", [])
                if p["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]]
        if not pdbs:
            problem(where, "no PodDisruptionBudget selects it")
        scaled = [s for s in by_kind.get("ScaledObject", []) if s["spec"]["scaleTargetRef"]["name"] == name]
        if len(scaled) != 1:
            problem(where, "needs exactly one ScaledObject")
            continue
        so = scaled[0]["spec"]
        trigger = so["triggers"][0]
        meta = trigger.get("metadata", {})
        if trigger.get("type") != "nats-jetstream":
            problem(where, f"trigger type {trigger.get('type')}")
        if meta.get("stream") != "JOBS" or meta.get("consumer") != name:
            problem(where, f"trigger must watch JOBS/{name}, not {meta.get('stream')}/{meta.get('consumer')}")
        if meta.get("lagThreshold") != concurrency:
            problem(where, f"lagThreshold {meta.get('lagThreshold')} != per-pod concurrency {concurrency}")
        if meta.get("natsServerMonitoringEndpoint") != f"nats.lightbox.svc.cluster.local:{MONITOR_PORT}":
            problem(where, "trigger must ask the headless Service nats on the monitoring port "
                    f"(nats.lightbox.svc.cluster.local:{MONITOR_PORT}), not {meta.get('natsServerMonitoringEndpoint')}")
        if meta.get("account") != "LIGHTBOX":
            problem(where, "trigger account must be LIGHTBOX (infra/nats/auth.conf)")
        if concurrency and consumer:
            most = consumer["max_ack_pending"] // int(concurrency)
            if so.get("maxReplicaCount") != most:
                problem(where, f"maxReplicaCount {so.get('maxReplicaCount')} != max_ack_pending "
                        f"{consumer['max_ack_pending']} / concurrency {concurrency} = {most}")
        gpu = container.get("resources", {}).get("limits", {}).get("nvidia.com/gpu")
        if name == "render-heavy" and overlay == "production":
            if gpu != 1 or not spec.get("tolerations") or not spec.get("nodeSelector"):
                problem(where, "needs nvidia.com/gpu: 1, a node selector and tolerations")
            if so.get("minReplicaCount") != 0:
                problem(where, "must scale to zero")
            if "render-gpu" not in container["image"]:
                problem(where, "must run the GPU image (lightbox-render-gpu)")
        elif gpu:
            problem(where, "must not ask for a GPU")
        for ref in references(dep, "Secret"):
            if ref not in secrets_declared:
                problem(where, f"refers to Secret {ref}, which the overlay does not make")


def check_overlay(overlay, used_vars):
    docs = render(overlay)
    if not docs:
        return
    kubernetes_validate(overlay, docs)
    keda_validate(overlay, docs)
    by_kind = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    secrets = {}
    for secret in by_kind.get("Secret", []):
        import base64

        data = {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}
        data.update(secret.get("stringData", {}))
        secrets[secret["metadata"]["name"]] = data
    config_maps = {m["metadata"]["name"]: m.get("data", {}) for m in by_kind.get("ConfigMap", [])}
    for doc in docs:
        for kind, known in (("Secret", secrets), ("ConfigMap", config_maps)):
            for ref in references(doc, kind):
                if ref not in known:
                    problem(f"{overlay} {doc['kind']}/{doc['metadata']['name']}", f"refers to {kind} {ref}, which is not rendered")
    config = config_maps.get(next((n for n in config_maps if n.startswith("lightbox-config")), ""), {})
    used_vars.update(config.keys())
    check_nats(overlay, by_kind, config, secrets)
    check_job(overlay, by_kind)
    check_functions(overlay, by_kind, set(secrets), used_vars)
    for name, replicas in stream_replicas.items():
        if replicas > NATS_SERVERS:
            problem(overlay, f"stream {name} asks for {replicas} replicas on {NATS_SERVERS} servers")


used_vars = set()
for overlay in OVERLAYS:
    check_overlay(overlay, used_vars)

compose = yaml.safe_load(open(os.path.join(root, "infra/compose.yaml")))
for name, service in compose["services"].items():
    env = service.get("environment", {})
    if isinstance(env, dict):
        used_vars.update(k for k in env if re.match(r"(LIGHTBOX|NATS|AWS)_", k))
for name in ("nats", "seaweedfs", "convert", "tessellate", "render-light", "render-heavy"):
    if name not in compose["services"]:
        problems.append(f"compose.yaml: no service {name}")
if "-m" not in compose["services"].get("nats", {}).get("command", []):
    problems.append("compose.yaml: nats needs the monitoring port (-m 8222)")

for var in sorted(v for v in used_vars if re.match(r"(LIGHTBOX|NATS|AWS)_", v)):
    if var not in documented and var not in ("LIGHTBOX_S3_ACCESS_KEY", "LIGHTBOX_S3_SECRET_KEY"):
        problems.append(f"{var} is set in the deployment files but not documented in README.md")

for line in problems:
    print(line)
print(f"checked {len(OVERLAYS)} overlays, {len(consumers)} consumers, {len(used_vars)} variables: {len(problems)} problem(s)")
sys.exit(1 if problems else 0)
