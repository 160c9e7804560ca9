#!/usr/bin/env python3
"""Checks the deployment files against each other and against the real binary.

    python .ci/check-deploy.py PATH/TO/commander          # check deploy/, Dockerfile
    python .ci/check-deploy.py PATH/TO/commander --self-test

The compose file must have its services, ports, health checks and one journal volume per
commander; every Kubernetes manifest must parse and have its kinds, probes and non-root
user; and `commander check-config` must accept the configuration each deployment gives the
binary (the image's deploy/commander.toml with the compose environment; the ConfigMap's
commander.toml with the pod environment; the catalogue the import Job loads), and say that
the catalogue is kept in the shared database, so the files cannot drift from what the binary
accepts. `docker compose config -q` runs too where Docker has compose. --self-test
breaks copies of the files in known ways and makes sure each break is reported.
"""

import copy
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
# What the image's paths are (Dockerfile): the data volume holds the journal.
IMAGE_DATA_DIR = "/var/lib/commander/data"
# Stands in for every secret the deployments read from the environment.
PLACEHOLDER_SECRET = "placeholder-secret-0123456789abcdef0123456789"
COMPOSE_SERVICES = ("lb", "commander-1", "commander-2", "postgres", "redis")
COMMANDERS = ("commander-1", "commander-2")
K8S_KINDS = {
    "configmap.yaml": ["ConfigMap"],
    "secret.yaml": ["Secret"],
    "service.yaml": ["Service"],
    "deployment.yaml": ["Deployment"],
    "statefulset/statefulset.yaml": ["StatefulSet", "Service"],
    "catalogue-import.yaml": ["ConfigMap", "Job"],
}
# Where the import Job mounts its catalogue.
IMPORT_CATALOGUE = "/etc/commander-catalogue/specialists.json"
SECRET_NAME = re.compile(r"KEY|SECRET|PASSWORD|TOKEN", re.IGNORECASE)


class Files:
    """The deployment files, parsed (so the self-test can break copies)."""

    def __init__(self):
        self.compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
        self.haproxy = (DEPLOY / "haproxy.cfg").read_text()
        self.image_config = (DEPLOY / "commander.toml").read_text()
        self.dockerfile = (ROOT / "Dockerfile").read_text()
        self.k8s = {
            name: list(yaml.safe_load_all((DEPLOY / "k8s" / name).read_text()))
            for name in K8S_KINDS
        }


def substitute(value):
    """A compose value with its ${VAR...} references filled as a user's shell would."""

    def one(match):
        body = match.group(1)
        if ":?" in body:
            return PLACEHOLDER_SECRET
        if ":-" in body:
            return body.split(":-", 1)[1]
        return PLACEHOLDER_SECRET

    return re.sub(r"\$\{([^}]*)\}", one, str(value))


def check_config(binary, config_text, env, problems, where, catalogue=None):
    """Runs `commander check-config` on config_text with only env set; a refusal is a problem."""
    with tempfile.TemporaryDirectory() as scratch:
        config = Path(scratch) / "commander.toml"
        config.write_text(config_text)
        env = dict(env)
        # The catalogue path points into the container; check the catalogue it will read.
        catalogue_path = Path(scratch) / "specialists.json"
        if catalogue is not None:
            catalogue_path.write_text(catalogue)
        env["COMMANDER__SPECIALISTS__PATH"] = str(catalogue_path)
        env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
        run = subprocess.run(
            [str(binary), "--config", str(config), "check-config"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    if run.returncode != 0:
        problems.append(f"{where}: commander check-config refuses it:\n{run.stderr.strip()}")
        return None
    return run.stdout


def printed_key(printed, section, key):
    """The value check-config printed for [section] key (a string), or None."""
    in_section = False
    for line in printed.splitlines():
        if line.startswith("["):
            in_section = line.strip() == f"[{section}]"
        elif in_section and line.startswith(f"{key} = "):
            return line.split(" = ", 1)[1].strip().strip('"')
    return None


def check_compose(files, binary, problems):
    services = files.compose.get("services") or {}
    for name in COMPOSE_SERVICES:
        if name not in services:
            problems.append(f"compose: no service {name}")
    if problems:
        return
    lb = services["lb"]
    if not any(str(port).split(":")[-1] == "8080" for port in lb.get("ports", [])):
        problems.append("compose: lb publishes no port 8080")
    lb_address = (lb.get("networks") or {}).get("backend", {}).get("ipv4_address")
    for name in ("postgres", "redis"):
        if "healthcheck" not in services[name]:
            problems.append(f"compose: {name} has no healthcheck")
    if "pg_isready" not in str(services["postgres"].get("healthcheck")):
        problems.append("compose: postgres's healthcheck is not pg_isready")
    if "ping" not in str(services["redis"].get("healthcheck")):
        problems.append("compose: redis's healthcheck is not redis-cli ping")

    data_volumes = {}
    for name in COMMANDERS:
        service = services[name]
        if "/health" not in str(service.get("healthcheck")):
            problems.append(f"compose: {name}'s healthcheck does not ask /health")
        depends = service.get("depends_on") or {}
        for needed in ("postgres", "redis"):
            if (depends.get(needed) or {}).get("condition") != "service_healthy":
                problems.append(f"compose: {name} does not wait for {needed} to be healthy")
        mounts = [str(volume).split(":") for volume in service.get("volumes", [])]
        data = [m[0] for m in mounts if len(m) > 1 and m[1] == IMAGE_DATA_DIR]
        if not data:
            problems.append(f"compose: {name} has no volume on {IMAGE_DATA_DIR} (its journal)")
        for volume in data:
            if volume in data_volumes:
                problems.append(
                    f"compose: {name} and {data_volumes[volume]} share the journal volume "
                    f"{volume}; the journal is locked by one process"
                )
            data_volumes[volume] = name
        if f"{name}:8000" not in files.haproxy:
            problems.append(f"haproxy.cfg: no server for {name}")

        environment = service.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(item.split("=", 1) for item in environment)
        for key, value in environment.items():
            if SECRET_NAME.search(key) and value and "${" not in str(value):
                problems.append(f"compose: {name} has {key} written in the file, not passed in")
        env = {key: substitute(value) for key, value in environment.items()}
        if lb_address and lb_address not in env.get("COMMANDER__RATE_LIMIT__TRUSTED_PROXIES", ""):
            problems.append(f"compose: {name} does not trust the lb's address {lb_address}")
        # The image's own settings, as the Dockerfile sets them.
        env.setdefault("COMMANDER__SERVER__BIND", "0.0.0.0:8000")
        printed = check_config(binary, files.image_config, env, problems, f"compose {name}")
        if printed is not None:
            journal = printed_key(printed, "database", "journal_dir") or ""
            if not journal.startswith(IMAGE_DATA_DIR + "/"):
                problems.append(f"compose: {name}'s journal_dir {journal} is not on its volume")
            if not (printed_key(printed, "database", "url") or "").startswith("postgres"):
                problems.append(f"compose: {name} does not use PostgreSQL")
            if printed_key(printed, "specialists", "store") != "database":
                problems.append(f"compose: {name} does not keep the catalogue in the database")
    if "uri /ready" not in files.haproxy or "option httpchk" not in files.haproxy:
        problems.append("haproxy.cfg: the backend's health check is not GET /ready")

    compose_version = shutil.which("docker") and subprocess.run(
        ["docker", "compose", "version"], capture_output=True, check=False, timeout=30
    )
    if compose_version and compose_version.returncode == 0:
        env = dict(os.environ, POSTGRES_PASSWORD="placeholder", COMMANDER_JWT_SECRET=PLACEHOLDER_SECRET)
        run = subprocess.run(
            ["docker", "compose", "-f", str(DEPLOY / "compose.yaml"), "config", "-q"],
            env=env, capture_output=True, text=True, check=False, timeout=60,
        )
        if run.returncode != 0:
            problems.append(f"docker compose config: {run.stderr.strip()}")


def containers(document):
    return document["spec"]["template"]["spec"]["containers"]


def check_k8s(files, binary, problems):
    for name, kinds in K8S_KINDS.items():
        found = [document.get("kind") for document in files.k8s[name] if document]
        if found != kinds:
            problems.append(f"k8s/{name}: kinds {found}, expected {kinds}")
    if problems:
        return
    config_map = files.k8s["configmap.yaml"][0]
    secret = files.k8s["secret.yaml"][0]
    for name in ("deployment.yaml", "statefulset/statefulset.yaml"):
        workload = files.k8s[name][0]
        where = f"k8s/{name}"
        if workload["spec"].get("replicas", 1) < 2:
            problems.append(f"{where}: fewer than 2 replicas")
        pod = workload["spec"]["template"]["spec"]
        if not pod.get("securityContext", {}).get("runAsNonRoot"):
            problems.append(f"{where}: pods may run as root")
        container = containers(workload)[0]
        if container.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/health":
            problems.append(f"{where}: the liveness probe is not /health")
        if container.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/ready":
            problems.append(f"{where}: the readiness probe is not /ready")
        if "resources" not in container:
            problems.append(f"{where}: no resources")
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        if IMAGE_DATA_DIR not in mounts:
            problems.append(f"{where}: no volume on {IMAGE_DATA_DIR} (the journal)")
        env = pod_environment(container, secret, problems, where)
        printed = check_config(binary, config_map["data"]["commander.toml"], env, problems, where)
        if printed is not None:
            journal = printed_key(printed, "database", "journal_dir") or ""
            if not journal.startswith(IMAGE_DATA_DIR + "/"):
                problems.append(f"{where}: journal_dir {journal} is not on the pod's volume")
            if printed_key(printed, "specialists", "store") != "database":
                problems.append(f"{where}: the catalogue is not kept in the database")
    check_import_job(files, binary, config_map, secret, problems)


def pod_environment(container, secret, problems, where):
    """The environment a container gets (secrets as placeholders, the database URL as the
    Secret's example), reporting secrets written in the manifest and unknown references."""
    env = {}
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = variable["value"]
            if SECRET_NAME.search(variable["name"]):
                problems.append(f"{where}: {variable['name']} written in the manifest")
            continue
        reference = variable["valueFrom"]["secretKeyRef"]
        if reference["name"] != secret["metadata"]["name"]:
            problems.append(f"{where}: {variable['name']} reads an unknown Secret")
        elif reference["key"] not in secret["stringData"] and not reference.get("optional"):
            problems.append(f"{where}: {variable['name']} reads a key the Secret lacks")
        if variable["name"] == "COMMANDER__DATABASE__URL":
            env[variable["name"]] = secret["stringData"].get(reference["key"], "")
        elif not reference.get("optional"):
            env[variable["name"]] = PLACEHOLDER_SECRET
    return env


def check_import_job(files, binary, config_map, secret, problems):
    """The Job imports its ConfigMap's catalogue with the pods' configuration, and the binary
    accepts that catalogue (checked as a catalogue file, which is what the import parses)."""
    where = "k8s/catalogue-import.yaml"
    catalogue_map, job = files.k8s["catalogue-import.yaml"]
    container = containers(job)[0]
    if container.get("args") != ["specialists", "import", IMPORT_CATALOGUE]:
        problems.append(f"{where}: the Job does not run `specialists import {IMPORT_CATALOGUE}`")
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"].get("volumes", [])}
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    mounted = volumes.get(mounts.get(str(Path(IMPORT_CATALOGUE).parent)), {})
    if mounted.get("configMap", {}).get("name") != catalogue_map["metadata"]["name"]:
        problems.append(f"{where}: the catalogue ConfigMap is not mounted where the Job reads it")
    if volumes.get(mounts.get("/etc/commander"), {}).get("configMap", {}).get("name") != (
        config_map["metadata"]["name"]
    ):
        problems.append(f"{where}: the Job does not read the pods' commander.toml")
    if not job["spec"]["template"]["spec"].get("securityContext", {}).get("runAsNonRoot"):
        problems.append(f"{where}: the Job may run as root")
    env = pod_environment(container, secret, problems, where)
    if "COMMANDER__DATABASE__URL" not in env:
        problems.append(f"{where}: the Job is not given the database URL")
    env["COMMANDER__SPECIALISTS__STORE"] = "file"
    check_config(
        binary,
        config_map["data"]["commander.toml"],
        env,
        problems,
        where,
        catalogue=catalogue_map["data"].get("specialists.json", ""),
    )


def check_dockerfile(files, problems):
    text = files.dockerfile
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    if not users or not re.fullmatch(r"\d+(:\d+)?", users[-1]) or users[-1].startswith("0"):
        problems.append("Dockerfile: the final stage's USER is not a numeric non-root user")
    for needed in ("EXPOSE 8000", "COMMANDER__SERVER__BIND=0.0.0.0:8000",
                   "deploy/commander.toml /etc/commander/commander.toml", IMAGE_DATA_DIR):
        if needed not in text:
            problems.append(f"Dockerfile: lacks {needed}")
    if text.count("FROM ") < 2:
        problems.append("Dockerfile: not multi-stage")


def check_all(files, binary):
    problems = []
    check_compose(files, binary, problems)
    check_k8s(files, binary, problems)
    check_dockerfile(files, problems)
    return problems


def self_test(binary):
    """Each way of breaking the files below must be reported."""
    # Each break, and words the report of it must contain (so it is caught for its reason).
    breaks = {
        "a missing service": (
            lambda f: f.compose["services"].pop("redis"), "no service redis"),
        "a shared journal volume": (
            lambda f: f.compose["services"]["commander-2"].update(
                volumes=["commander-1-data:" + IMAGE_DATA_DIR]),
            "share the journal volume"),
        "a key the binary does not know": (
            lambda f: f.compose["services"]["commander-1"]["environment"].update(
                COMMANDER__DATABASE__URLL="x"),
            "unknown field `urll`"),
        "a hard-coded secret": (
            lambda f: f.compose["services"]["commander-1"]["environment"].update(
                OPENAI_API_KEY="sk-live"),
            "OPENAI_API_KEY written in the file"),
        "a bad catalogue in the import Job's ConfigMap": (
            lambda f: f.k8s["catalogue-import.yaml"][0]["data"].update(
                {"specialists.json": '{"specialists": [{"id": "x y"}]}'}),
            "specialist catalogue"),
        "the import Job reading another file": (
            lambda f: containers(f.k8s["catalogue-import.yaml"][1])[0].update(
                args=["specialists", "import", "/tmp/specialists.json"]),
            "does not run `specialists import"),
        "compose's catalogue back in a file": (
            lambda f: f.compose["x-commander"]["environment"].pop(
                "COMMANDER__SPECIALISTS__STORE"),
            "does not keep the catalogue in the database"),
        "the ConfigMap's catalogue back in a file": (
            lambda f: f.k8s["configmap.yaml"][0]["data"].update(
                {"commander.toml": f.k8s["configmap.yaml"][0]["data"]["commander.toml"].replace(
                    'store = "database"', 'store = "file"')}),
            "the catalogue is not kept in the database"),
        "a readiness probe on /health": (
            lambda f: containers(f.k8s["deployment.yaml"][0])[0]["readinessProbe"][
                "httpGet"].update(path="/health"),
            "readiness probe is not /ready"),
        "a root user": (
            lambda f: setattr(f, "dockerfile", f.dockerfile.replace("USER 10001", "USER 0")),
            "numeric non-root user"),
        "the load balancer checking /health": (
            lambda f: setattr(f, "haproxy", f.haproxy.replace("uri /ready", "uri /health")),
            "not GET /ready"),
    }
    pristine = Files()
    failed = []
    for name, (breaking, expected) in breaks.items():
        broken = copy.deepcopy(pristine)
        breaking(broken)
        if not any(expected in problem for problem in check_all(broken, binary)):
            failed.append(name)
    return failed


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    binary = Path(sys.argv[1]).resolve()
    if not binary.is_file():
        sys.exit(f"check-deploy: no commander binary at {binary}")
    if "--self-test" in sys.argv[2:]:
        failed = self_test(binary)
        if failed:
            sys.exit("check-deploy self-test: not reported: " + ", ".join(failed))
        print("check-deploy self-test: every break reported")
        return
    problems = check_all(Files(), binary)
    if problems:
        sys.exit("check-deploy: " + str(len(problems)) + " problem(s):\n  - " + "\n  - ".join(problems))
    print("check-deploy: compose, Kubernetes and Dockerfile agree with each other and the binary")


if __name__ == "__main__":
    main()
