"""compose.yaml stays in step with the code: commands, variable names, replicas and the parts around them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from caracal.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[2]
CARACAL_SERVICES = ("api", "dispatcher", "reaper")
SECRETS = (
    "CARACAL_ADMIN_TOKEN",
    "CARACAL_KEK",
    "STREAMS_HMAC_KEY",
    "ZONE_KEK",
    "AUDIT_HMAC_KEY",
    "POSTGRES_PASSWORD",
)


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _services() -> dict[str, dict[str, Any]]:
    services = _compose()["services"]
    assert isinstance(services, dict)
    return services


def _words(command: str | list[str] | None) -> list[str]:
    if command is None:
        return []
    return command.split() if isinstance(command, str) else [str(word) for word in command]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.partition("=")[::2] for item in env)
    return {str(name): str(value) for name, value in env.items()}


def _depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def _replicas(service: dict[str, Any]) -> int:
    return int((service.get("deploy") or {}).get("replicas", 1))


def _caracal_services() -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in _services().items() if _words(svc.get("command"))[:1] == ["caracal"]}


def settings_variables() -> set[str]:
    source = (ROOT / "libs" / "caracal" / "settings.py").read_text(encoding="utf-8")
    return set(re.findall(r'"([A-Z][A-Z0-9_]+)"', source))


def test_every_caracal_command_names_a_cli_subcommand() -> None:
    """A service started with `caracal <x>` names a subcommand the CLI accepts."""
    services = _caracal_services()
    assert set(CARACAL_SERVICES) <= set(services)
    for name, service in services.items():
        words = _words(service["command"])
        assert len(words) == 2, f"{name}: {words}"
        assert words[1] in COMMANDS, f"{name}: `caracal {words[1]}` is not one of {COMMANDS}"


@pytest.mark.parametrize("service", CARACAL_SERVICES)
def test_caracal_services_set_only_variables_the_settings_loader_reads(service: str) -> None:
    """Each variable given to a Caracal process is one settings.py reads, so a typo cannot go unnoticed."""
    known = settings_variables()
    unknown = set(_environment(_services()[service])) - known
    assert not unknown, f"{service}: settings.py reads none of {sorted(unknown)}"


def test_every_process_running_the_caracal_image_gets_the_settings_it_needs() -> None:
    """Every `caracal` service has the URLs and, in stable mode, the KEK and the stream signing key."""
    needed = {"DATABASE_URL", "REDIS_URL", "CARACAL_KEK", "STREAMS_HMAC_KEY", "ZONE_KEK", "AUDIT_HMAC_KEY"}
    needed.add("CARACAL_MODE")
    for name, service in _caracal_services().items():
        missing = needed - set(_environment(service))
        assert not missing, f"{name}: missing {sorted(missing)}"
    assert "CARACAL_ADMIN_TOKEN" in _environment(_services()["api"])
    assert "CARACAL_ADMIN_TOKEN" not in _environment(_services()["reaper"])


def test_secrets_come_from_the_environment_and_are_required() -> None:
    """A secret is never written into compose.yaml: it is `${NAME:?...}`, so a missing one stops compose."""
    for name, service in _services().items():
        for variable, value in _environment(service).items():
            for secret in SECRETS:
                if variable == secret:
                    assert value.startswith(f"${{{secret}:?"), f"{name}: {variable}={value!r}"
                elif secret in value:
                    assert f"${{{secret}:?" in value, f"{name}: {variable}={value!r}"


@pytest.mark.parametrize(("service", "replicas"), [("api", 3), ("dispatcher", 2), ("reaper", 1)])
def test_each_process_runs_its_number_of_replicas(service: str, replicas: int) -> None:
    """Three api replicas behind the lb, two dispatchers sharing the streams, a single reaper."""
    assert _replicas(_services()[service]) == replicas


def test_redis_keeps_an_append_only_file_and_never_evicts() -> None:
    """Stream entries survive a Redis restart and are never dropped to make room."""
    command = " ".join(_words(_services()["redis"].get("command")))
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command


def test_postgres_is_version_18_with_a_healthcheck() -> None:
    """The database is PostgreSQL 18 and reports readiness for the services that wait on it."""
    postgres = _services()["postgres"]
    assert postgres["image"] == "postgres:18"
    assert "pg_isready" in _words(postgres["healthcheck"]["test"])


def test_a_load_balancer_fronts_the_api() -> None:
    """An nginx or traefik service publishes a port and depends on the api."""
    lbs = {
        name: svc
        for name, svc in _services().items()
        if str(svc.get("image", "")).split(":")[0] in ("nginx", "traefik")
    }
    assert lbs, "no nginx or traefik service"
    assert any("api" in _depends_on(svc) and svc.get("ports") for svc in lbs.values())
    assert not _services()["api"].get("ports"), "replicas are reached through the lb only"


def test_nginx_resolves_the_api_replicas_through_docker_dns() -> None:
    """deploy/nginx/nginx.conf asks Docker's DNS for `api` and proxies to port 3000 with the request id."""
    nginx = ROOT / "deploy" / "nginx"
    conf = "".join(
        (nginx / name).read_text(encoding="utf-8") for name in ("nginx.conf", "upstream.conf", "proxy.conf")
    )
    assert "resolver 127.0.0.11" in conf
    assert "api:3000" in conf
    assert "X-Forwarded-For" in conf
    assert "X-Request-Id" in conf


def test_api_healthcheck_probes_ready_on_its_port() -> None:
    """The api is healthy only when GET /ready on port 3000 succeeds."""
    api = _services()["api"]
    probe = " ".join(_words(api["healthcheck"]["test"]))
    assert "/ready" in probe
    assert ":3000" in probe
    assert _environment(api)["PORT"] == "3000"


def test_every_dependency_condition_can_be_met() -> None:
    """`service_healthy` targets have a healthcheck and every dependency is a service of the file."""
    services = _services()
    for name, service in services.items():
        for target, condition in _depends_on(service).items():
            assert target in services, f"{name} depends on unknown {target}"
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits on {target}: no healthcheck"
