#!/usr/bin/env python3
"""Checks ops/deploy/compose.yaml and the configs it and the Kubernetes ConfigMap carry:
the services a cluster needs, each NATS node routed to the other two, every file the
compose file mounts present, and every Switchyard config accepted by `switchyard
check-config`. Usage: check.py SWITCHYARD_BINARY"""
import os, subprocess, sys, tempfile

import yaml

here = os.path.dirname(os.path.abspath(__file__))
binary = sys.argv[1]
env = dict(os.environ, SWITCHYARD_ADMIN_KEY="a" * 32, SWITCHYARD_APP_KEY="b" * 32, OPENAI_API_KEY="sk-test")


def check_config(text, name):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "switchyard.toml")
        with open(os.path.join(here, "../../config/pricing.toml")) as p:
            open(os.path.join(d, "pricing.toml"), "w").write(p.read())
        open(path, "w").write(text.replace("/etc/switchyard/pricing.toml", os.path.join(d, "pricing.toml")))
        r = subprocess.run([binary, "check-config", path], env=env, capture_output=True, text=True)
        assert r.returncode == 0, f"{name}: {r.stdout}{r.stderr}"


compose = yaml.safe_load(open(os.path.join(here, "compose.yaml")))
services = compose["services"]
for s in ["nats-1", "nats-2", "nats-3", "gateway-1", "gateway-2", "prometheus", "grafana"]:
    assert s in services, f"compose: no service {s}"
for n in ["nats-1", "nats-2", "nats-3"]:
    cmd = services[n]["command"]
    assert "-js" in cmd and "--cluster_name" in cmd, f"{n}: not a JetStream cluster node: {cmd}"
    routes = cmd[cmd.index("--routes") + 1]
    others = {o for o in ["nats-1", "nats-2", "nats-3"] if o != n}
    assert all(f"nats://{o}:6222" in routes for o in others), f"{n}: routes {routes}"
for g in ["gateway-1", "gateway-2"]:
    assert services[g]["build"]["dockerfile"] == "ops/deploy/Containerfile"
    assert os.path.exists(os.path.join(here, services[g]["build"]["context"], services[g]["build"]["dockerfile"]))
for name, svc in services.items():
    for v in svc.get("volumes", []):
        src = v.split(":")[0]
        if src.startswith("."):
            assert os.path.exists(os.path.join(here, src)), f"{name}: mounts {src}, which does not exist"
cluster = open(os.path.join(here, "switchyard-cluster.toml")).read()
assert all(f"nats://nats-{i}:4222" in cluster for i in (1, 2, 3)), "the gateways list every NATS node"
check_config(cluster, "switchyard-cluster.toml")
check_config(open(os.path.join(here, "switchyard.toml")).read(), "switchyard.toml")
cm = yaml.safe_load(open(os.path.join(here, "k8s/configmap.yaml")))
check_config(cm["data"]["switchyard.toml"], "k8s/configmap.yaml")
print("deployment files: ok")
