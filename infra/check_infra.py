"""Structural checks of Lightbox's deployment files that no schema covers (run by tests/infra.rs).

- Every KEDA ScaledObject targets a Deployment in the same file, uses the nats-jetstream trigger on
  stream JOBS and on the consumer of that Deployment's queue (from infra/nats/consumer.*.json), and
  its lagThreshold equals the Deployment's per-host concurrency.
- Every Deployment's terminationGracePeriodSeconds is longer than its drain grace, it runs as a
  non-root user, has a preStop hook and a PodDisruptionBudget; render-heavy asks for a GPU and
  scales to zero.
- Every LIGHTBOX_*/NATS_*/AWS_* variable set in compose.yaml or the k8s manifests is documented in
  README.md.
Prints one line per problem and exits 1 if there is any.
"""
import glob
import json
import os
import re
import sys

import yaml

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
problems = []
consumers = {}
for path in glob.glob(os.path.join(root, "infra/nats/consumer.*.json")):
    config = json.load(open(path))
    consumers[config["durable_name"]] = config["filter_subject"]
readme = open(os.path.join(root, "README.md")).read()
documented = set(re.findall(r"`((?:LIGHTBOX|NATS|AWS)_[A-Z0-9_]+)`", readme))


def env_of(container):
    return {e["name"]: e.get("value") for e in container.get("env", [])}


used_vars = set()
for path in sorted(glob.glob(os.path.join(root, "infra/k8s/*.yaml"))):
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    by_kind = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    for cm in by_kind.get("ConfigMap", []):
        used_vars.update(cm.get("data", {}).keys())
    for dep in by_kind.get("Deployment", []):
        name = dep["metadata"]["name"]
        spec = dep["spec"]["template"]["spec"]
        container = spec["containers"][0]
        env = env_of(container)
        used_vars.update(env.keys())
        queue, concurrency = env.get("LIGHTBOX_QUEUE"), env.get("LIGHTBOX_CONCURRENCY")
        drain = int(env.get("LIGHTBOX_DRAIN_GRACE_SECS") or 30)
        if spec.get("terminationGracePeriodSeconds", 30) <= drain:
            problems.append(f"{name}: terminationGracePeriodSeconds must exceed the drain grace {drain}s")
        if not spec.get("securityContext", {}).get("runAsNonRoot"):
            problems.append(f"{name}: must run as non-root")
        if "preStop" not in container.get("lifecycle", {}):
            problems.append(f"{name}: needs a preStop drain hook")
        if consumers.get(name) != queue:
            problems.append(f"{name}: serves {queue!r} but consumer {name} filters {consumers.get(name)!r}")
        pdbs = [p for p in by_kind.get("PodDisruptionBudget", []) if p["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]]
        if not pdbs:
            problems.append(f"{name}: no PodDisruptionBudget selects it")
        scaled = [s for s in by_kind.get("ScaledObject", []) if s["spec"]["scaleTargetRef"]["name"] == name]
        if len(scaled) != 1:
            problems.append(f"{name}: needs exactly one ScaledObject")
            continue
        so = scaled[0]
        if so["apiVersion"] != "keda.sh/v1alpha1":
            problems.append(f"{name}: ScaledObject apiVersion {so['apiVersion']}")
        trigger = so["spec"]["triggers"][0]
        meta = trigger.get("metadata", {})
        if trigger.get("type") != "nats-jetstream":
            problems.append(f"{name}: trigger type {trigger.get('type')}")
        if meta.get("stream") != "JOBS" or meta.get("consumer") != name:
            problems.append(f"{name}: trigger must watch JOBS/{name}, not {meta.get('stream')}/{meta.get('consumer')}")
        if meta.get("lagThreshold") != concurrency:
            problems.append(f"{name}: lagThreshold {meta.get('lagThreshold')} != per-host concurrency {concurrency}")
        for key in ("natsServerMonitoringEndpoint", "account"):
            if not meta.get(key):
                problems.append(f"{name}: trigger metadata needs {key}")
        gpu = container.get("resources", {}).get("limits", {}).get("nvidia.com/gpu")
        if name == "render-heavy":
            if gpu != 1 or not spec.get("tolerations") or not spec.get("nodeSelector"):
                problems.append("render-heavy: needs nvidia.com/gpu: 1, a node selector and tolerations")
            if so["spec"].get("minReplicaCount") != 0:
                problems.append("render-heavy: must scale to zero")
        elif gpu:
            problems.append(f"{name}: must not ask for a GPU")

compose = yaml.safe_load(open(os.path.join(root, "infra/compose.yaml")))
for name, service in compose["services"].items():
    env = service.get("environment", {})
    if isinstance(env, dict):
        used_vars.update(k for k in env if re.match(r"(LIGHTBOX|NATS|AWS)_", k))
for name in ("nats", "seaweedfs", "convert", "tessellate", "render-light", "render-heavy"):
    if name not in compose["services"]:
        problems.append(f"compose.yaml: no service {name}")

for var in sorted(v for v in used_vars if re.match(r"(LIGHTBOX|NATS|AWS)_", v)):
    if var not in documented and var not in ("LIGHTBOX_S3_ACCESS_KEY", "LIGHTBOX_S3_SECRET_KEY"):
        problems.append(f"{var} is set in the deployment files but not documented in README.md")

for problem in problems:
    print(problem)
print(f"checked {len(consumers)} consumers, {len(used_vars)} variables: {len(problems)} problem(s)")
sys.exit(1 if problems else 0)
