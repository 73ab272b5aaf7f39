"""Settings: every variable read once, bad values named in one line."""

import subprocess
import sys
from pathlib import Path

import pytest

from caracal.db.engine import server_settings
from caracal.redis_client import cluster_nodes
from caracal.settings import KeyRing, SettingsError, load_settings

VALID = {
    "DATABASE_URL": "postgresql://u@127.0.0.1:5432/db",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "CARACAL_KEK": "k1:" + "ab" * 32,
    "STREAMS_HMAC_KEY": "cd" * 32,
    "AUDIT_HMAC_KEY": "ce" * 32,
}


def test_defaults_follow_the_design_table() -> None:
    """Unset variables take DESIGN.md's defaults."""
    settings = load_settings(VALID)
    assert (settings.port, settings.db_pool_max, settings.db_statement_timeout_ms) == (3000, 20, 15000)
    assert (settings.outbox_poll_ms, settings.outbox_batch, settings.outbox_max_attempts) == (250, 32, 100)
    assert (settings.shutdown_timeout_ms, settings.mode, settings.log_level) == (15000, "stable", "info")
    assert settings.local_bootstrap_enabled is False
    assert settings.outbox_batch_max == 512
    assert (settings.v1_rate_limit_per_min, settings.auth_fail_limit_per_min) == (600, 60)


def test_idle_transaction_timeout_is_read_and_set_on_every_connection() -> None:
    """CARACAL_DB_IDLE_TX_TIMEOUT_MS (30000, 0 = off) becomes each connection's
    idle_in_transaction_session_timeout; negative values are refused."""
    assert load_settings(VALID).db_idle_tx_timeout_ms == 30000
    changed = load_settings({**VALID, "CARACAL_DB_IDLE_TX_TIMEOUT_MS": "1500"})
    assert server_settings(changed)["idle_in_transaction_session_timeout"] == "1500"
    with pytest.raises(SettingsError, match="^CARACAL_DB_IDLE_TX_TIMEOUT_MS: must be between"):
        load_settings({**VALID, "CARACAL_DB_IDLE_TX_TIMEOUT_MS": "-1"})


def test_outbox_batch_max_is_read_and_bounded() -> None:
    """CARACAL_OUTBOX_BATCH_MAX sets the dispatcher's largest batch; 0 and huge values are refused."""
    assert load_settings({**VALID, "CARACAL_OUTBOX_BATCH_MAX": "64"}).outbox_batch_max == 64
    for bad in ("0", "10001"):
        with pytest.raises(SettingsError, match="^CARACAL_OUTBOX_BATCH_MAX: must be between"):
            load_settings({**VALID, "CARACAL_OUTBOX_BATCH_MAX": bad})


def test_outbox_wait_replicas_and_timeout_are_read_and_bounded() -> None:
    """CARACAL_OUTBOX_WAIT_REPLICAS (0 = off, at most 16) and CARACAL_OUTBOX_WAIT_TIMEOUT_MS (1000)."""
    default = load_settings(VALID)
    assert (default.outbox_wait_replicas, default.outbox_wait_timeout_ms) == (0, 1000)
    changed = load_settings(
        {**VALID, "CARACAL_OUTBOX_WAIT_REPLICAS": "2", "CARACAL_OUTBOX_WAIT_TIMEOUT_MS": "250"}
    )
    assert (changed.outbox_wait_replicas, changed.outbox_wait_timeout_ms) == (2, 250)
    for name, bad in (("CARACAL_OUTBOX_WAIT_REPLICAS", "17"), ("CARACAL_OUTBOX_WAIT_TIMEOUT_MS", "0")):
        with pytest.raises(SettingsError, match=f"^{name}: must be between"):
            load_settings({**VALID, name: bad})


def test_a_cluster_redis_url_names_its_nodes_and_a_bad_one_is_refused() -> None:
    """REDIS_URL=redis+cluster://[user:pass@]host:port[,host:port...] names a Redis Cluster's nodes."""
    url = "redis+cluster://ops:p%40ss@10.0.0.1:7000,10.0.0.2:7001"
    assert load_settings({**VALID, "REDIS_URL": url}).redis_url == url
    assert "p%40ss" not in repr(load_settings({**VALID, "REDIS_URL": url}))
    assert cluster_nodes(url) == (
        [("10.0.0.1", 7000), ("10.0.0.2", 7001)],
        {"username": "ops", "password": "p@ss"},
    )
    assert cluster_nodes("redis+cluster://[::1]:7000") == ([("::1", 7000)], {})
    for bad in ("redis+cluster://", "redis+cluster://h1:7000,h2", "redis+cluster://h1:99999"):
        with pytest.raises(SettingsError, match="^REDIS_URL: "):
            load_settings({**VALID, "REDIS_URL": bad})


def test_resource_quota_and_control_audience_are_read() -> None:
    """API_MAX_RESOURCES_PER_ZONE (default 100000, 0 allowed) and CONTROL_AUDIENCE (caracal-control)."""
    default = load_settings(VALID)
    assert (default.max_resources_per_zone, default.control_audience) == (100_000, "caracal-control")
    changed = load_settings({**VALID, "API_MAX_RESOURCES_PER_ZONE": "0", "CONTROL_AUDIENCE": " ctl "})
    assert (changed.max_resources_per_zone, changed.control_audience) == (0, "ctl")
    with pytest.raises(SettingsError, match="^API_MAX_RESOURCES_PER_ZONE: must be between"):
        load_settings({**VALID, "API_MAX_RESOURCES_PER_ZONE": "-1"})


def test_dcr_live_cap_is_read_and_at_least_one() -> None:
    """CARACAL_DCR_MAX_LIVE_PER_ZONE: default 1000 (the contract's cap); 0 is refused."""
    assert load_settings(VALID).dcr_max_live_per_zone == 1000
    assert load_settings({**VALID, "CARACAL_DCR_MAX_LIVE_PER_ZONE": "3"}).dcr_max_live_per_zone == 3
    with pytest.raises(SettingsError, match="^CARACAL_DCR_MAX_LIVE_PER_ZONE: must be between"):
        load_settings({**VALID, "CARACAL_DCR_MAX_LIVE_PER_ZONE": "0"})


def test_oauth_token_exchange_settings_are_read_and_bounded(tmp_path: Path) -> None:
    """CARACAL_OAUTH_TOKEN_TIMEOUT_MS (15000, at most 15000) and CARACAL_OAUTH_TOKEN_CA_FILE."""
    default = load_settings(VALID)
    assert (default.oauth_token_timeout_ms, default.oauth_token_ca_file) == (15_000, None)
    assert default.oauth_allow_loopback_token_hosts is False
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    changed = load_settings(
        {**VALID, "CARACAL_OAUTH_TOKEN_TIMEOUT_MS": "500", "CARACAL_OAUTH_TOKEN_CA_FILE": str(bundle)}
    )
    assert (changed.oauth_token_timeout_ms, changed.oauth_token_ca_file) == (500, str(bundle))
    with pytest.raises(SettingsError, match="^CARACAL_OAUTH_TOKEN_TIMEOUT_MS: must be between"):
        load_settings({**VALID, "CARACAL_OAUTH_TOKEN_TIMEOUT_MS": "60000"})
    with pytest.raises(SettingsError, match="^CARACAL_OAUTH_TOKEN_CA_FILE: .* is not a readable file"):
        load_settings({**VALID, "CARACAL_OAUTH_TOKEN_CA_FILE": str(tmp_path / "missing.pem")})


@pytest.mark.parametrize("mode", ["stable", "rc"])
def test_loopback_token_hosts_are_refused_outside_dev_mode(mode: str) -> None:
    """The test-only allowance for a token endpoint on loopback fails start-up in production modes."""
    with pytest.raises(SettingsError, match="^CARACAL_OAUTH_ALLOW_LOOPBACK_TOKEN_HOSTS: only for tests"):
        load_settings({**VALID, "CARACAL_MODE": mode, "CARACAL_OAUTH_ALLOW_LOOPBACK_TOKEN_HOSTS": "true"})
    dev = load_settings({"CARACAL_MODE": "dev", "CARACAL_OAUTH_ALLOW_LOOPBACK_TOKEN_HOSTS": "true"})
    assert dev.oauth_allow_loopback_token_hosts is True


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CARACAL_DB_POOL_MAX", "abc", "CARACAL_DB_POOL_MAX: must be an integer, got 'abc'"),
        ("PORT", "70000", "PORT: must be between 1 and 65535, got 70000"),
        (
            "CARACAL_LOCAL_BOOTSTRAP_ENABLED",
            "maybe",
            "CARACAL_LOCAL_BOOTSTRAP_ENABLED: must be true or false",
        ),
        ("CARACAL_MODE", "prod", "CARACAL_MODE: must be one of dev, rc, stable"),
        ("CARACAL_KEK", "k1:xyz", "CARACAL_KEK: key 'k1' must be 64 hex characters"),
        ("STREAMS_HMAC_KEY", "abcd", "STREAMS_HMAC_KEY: must decode to at least 32 bytes"),
        ("DATABASE_URL", "mysql://x", "DATABASE_URL: must start with postgresql://"),
        ("CARACAL_ADMIN_TOKEN", "short", "CARACAL_ADMIN_TOKEN: must be 16..4096 characters"),
    ],
)
def test_bad_value_names_the_variable(name: str, value: str, message: str) -> None:
    """A bad value raises SettingsError whose message starts with the variable's name."""
    with pytest.raises(SettingsError) as raised:
        load_settings({**VALID, name: value})
    assert str(raised.value).startswith(message)


def test_bundle_signing_key_and_sts_url_are_optional_and_checked() -> None:
    """CARACAL_BUNDLE_SIGNING_KEY is a 64-hex Ed25519 seed and STS_URL an http(s) URL; both optional."""
    unset = load_settings(VALID)
    assert (unset.bundle_signing_key, unset.sts_url) == (None, None)
    given = load_settings({**VALID, "CARACAL_BUNDLE_SIGNING_KEY": "ef" * 32, "STS_URL": "http://sts:8080/"})
    assert (given.bundle_signing_key, given.sts_url) == (bytes.fromhex("ef" * 32), "http://sts:8080")
    with pytest.raises(SettingsError, match="^CARACAL_BUNDLE_SIGNING_KEY: must be 64 hex"):
        load_settings({**VALID, "CARACAL_BUNDLE_SIGNING_KEY": "ef" * 16})
    with pytest.raises(SettingsError, match="^STS_URL: must be an http"):
        load_settings({**VALID, "STS_URL": "sts:8080"})
    assert "efef" not in repr(given)


def test_audit_hmac_key_is_hex_required_outside_dev_and_may_come_from_a_file(tmp_path: Path) -> None:
    """AUDIT_HMAC_KEY: hex of at least 32 bytes, also as AUDIT_HMAC_KEY_FILE; dev mode may go without."""
    without = {k: v for k, v in VALID.items() if k != "AUDIT_HMAC_KEY"}
    with pytest.raises(SettingsError, match="^AUDIT_HMAC_KEY: required when CARACAL_MODE=stable"):
        load_settings(without)
    assert load_settings({**without, "CARACAL_MODE": "dev"}).audit_hmac_key is None
    assert load_settings({**VALID, "AUDIT_HMAC_KEY": "ab" * 32}).audit_hmac_key == KeyRing(
        (("default", bytes.fromhex("ab" * 32)),)
    )
    with pytest.raises(SettingsError, match="^AUDIT_HMAC_KEY: must decode to at least 32 bytes"):
        load_settings({**VALID, "AUDIT_HMAC_KEY": "ab" * 16})
    path = tmp_path / "audit.key"
    path.write_text("cd" * 32 + "\n")
    from_file = load_settings({**without, "AUDIT_HMAC_KEY_FILE": str(path)})
    assert from_file.audit_hmac_key == KeyRing((("default", bytes.fromhex("cd" * 32)),))


def test_audit_hmac_key_lists_keys_by_id_the_first_sealing_and_each_bad_one_is_named() -> None:
    """`<id>:<hex>,...` as CARACAL_KEK (any length from 32 bytes); repr shows the ids, never the keys."""
    ring = load_settings({**VALID, "AUDIT_HMAC_KEY": f"new:{'11' * 40}, old:{'22' * 32}"}).audit_hmac_key
    assert ring is not None and ring.active == ("new", bytes.fromhex("11" * 40))
    assert ring.get("old") == bytes.fromhex("22" * 32) and "1111" not in repr(ring)
    with pytest.raises(SettingsError, match="^AUDIT_HMAC_KEY: key 'old' must decode to at least 32 bytes"):
        load_settings({**VALID, "AUDIT_HMAC_KEY": f"new:{'11' * 32},old:{'22' * 8}"})
    with pytest.raises(SettingsError, match="^AUDIT_HMAC_KEY: key id 'a' appears twice"):
        load_settings({**VALID, "AUDIT_HMAC_KEY": f"a:{'11' * 32},a:{'22' * 32}"})


def test_stable_mode_requires_signing_key_and_kek() -> None:
    """Outside dev mode the stream signing key and the KEK are required."""
    with pytest.raises(SettingsError, match="^STREAMS_HMAC_KEY: required"):
        load_settings({k: v for k, v in VALID.items() if k != "STREAMS_HMAC_KEY"})
    with pytest.raises(SettingsError, match="^CARACAL_KEK: required"):
        load_settings({k: v for k, v in VALID.items() if k != "CARACAL_KEK"})
    dev = load_settings({"CARACAL_MODE": "dev"})
    assert dev.streams_hmac_key is None and dev.kek.active is None


def test_kek_holds_several_keys_and_the_first_wraps() -> None:
    """CARACAL_KEK lists keys with ids; the first is active, every one can unwrap."""
    settings = load_settings({**VALID, "CARACAL_KEK": f"new:{'11' * 32}, old:{'22' * 32}"})
    assert settings.kek.active == ("new", bytes.fromhex("11" * 32))
    assert settings.kek.get("old") == bytes.fromhex("22" * 32)
    assert load_settings({**VALID, "CARACAL_KEK": "33" * 32}).kek.active == (
        "default",
        bytes.fromhex("33" * 32),
    )


def test_zone_kek_old_is_a_zone_kek_read_only_for_rotation_and_never_shown(tmp_path: Path) -> None:
    """ZONE_KEK_OLD (or ZONE_KEK_OLD_FILE) takes ZONE_KEK's format; a bad one is named; repr hides it."""
    assert load_settings(VALID).zone_kek_old is None
    path = tmp_path / "old.key"
    path.write_text("ab" * 32 + "\n")
    settings = load_settings({**VALID, "ZONE_KEK_OLD_FILE": str(path)})
    assert settings.zone_kek_old == bytes.fromhex("ab" * 32)
    assert "ab" * 32 not in repr(settings)
    with pytest.raises(SettingsError, match="^ZONE_KEK_OLD: must be 64 hex"):
        load_settings({**VALID, "ZONE_KEK_OLD": "abc"})


def test_unreadable_secret_file_is_named() -> None:
    """<NAME>_FILE that cannot be read stops start-up naming the variable."""
    with pytest.raises(SettingsError, match="^CARACAL_KEK_FILE: cannot read"):
        load_settings({**VALID, "CARACAL_KEK": "", "CARACAL_KEK_FILE": "/nonexistent/kek"})


def test_secret_file_is_read_and_trimmed(tmp_path: Path) -> None:
    """STREAMS_HMAC_KEY_FILE supplies the key, trailing whitespace trimmed."""
    path = tmp_path / "hmac"
    path.write_text("ef" * 32 + "\n\n")
    settings = load_settings(
        {**{k: v for k, v in VALID.items() if k != "STREAMS_HMAC_KEY"}, "STREAMS_HMAC_KEY_FILE": str(path)}
    )
    assert settings.streams_hmac_key == bytes.fromhex("ef" * 32)


@pytest.mark.parametrize("module", ["caracal_api", "caracal_dispatcher", "caracal_reaper"])
def test_process_with_bad_value_exits_with_one_line(module: str) -> None:
    """Each process stops at start-up with exit code 2 and one line naming the variable."""
    env = {**VALID, "CARACAL_DB_POOL_MAX": "abc", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", module], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == ["caracal: configuration error: CARACAL_DB_POOL_MAX: must be an integer, got 'abc'"]


SECRETS = {
    "DATABASE_URL": "postgresql://caracal:db-pass-Xq81@127.0.0.1:5432/db?password=qs-pass-Zt42",
    "REDIS_URL": "redis://:redis-pass-Kv27@127.0.0.1:6379/0",
    "CARACAL_ADMIN_TOKEN": "cat_admin-token-Wm55-long-enough",
    "CARACAL_KEK": "k1:" + "5e" * 32,
    "STREAMS_HMAC_KEY": "7a" * 32,
    "AUDIT_HMAC_KEY": "6b" * 32,
    "METRICS_BEARER": "metrics-bearer-Hn63",
}
SECRET_VALUES = (
    "db-pass-Xq81",
    "qs-pass-Zt42",
    "redis-pass-Kv27",
    "cat_admin-token-Wm55-long-enough",
    "5e" * 32,
    "7a" * 32,
    "6b" * 32,
    "metrics-bearer-Hn63",
)


def _leaks(text: str, settings_env: dict[str, str]) -> list[str]:
    found = [value for value in SECRET_VALUES if value in text]
    loaded = load_settings(settings_env)
    raw = [key.hex() for _kid, key in loaded.kek.keys]
    raw += [repr(key) for _kid, key in loaded.kek.keys]
    raw += [repr(loaded.streams_hmac_key)]
    return found + [value for value in raw if value in text]


def test_repr_and_str_of_settings_show_no_secret() -> None:
    """repr/str of Settings hide the admin token, KEK, signing key, bearer and URL passwords."""
    settings = load_settings(SECRETS)
    for shown in (repr(settings), str(settings), repr(settings.kek), f"{settings}"):
        assert _leaks(shown, SECRETS) == []


def test_repr_of_settings_keeps_what_an_operator_needs() -> None:
    """The masked repr still names the hosts, the key ids and every non-secret value."""
    shown = repr(load_settings(SECRETS))
    assert "postgresql://caracal:***@127.0.0.1:5432/db?password=***" in shown
    assert "redis://:***@127.0.0.1:6379/0" in shown
    assert "KeyRing(ids=['k1'])" in shown
    assert "admin_token='***'" in shown
    assert "port=3000" in shown


def test_rego_engine_settings_are_read_and_bounded() -> None:
    """CARACAL_REGO_WORKERS, _TIMEOUT_MS, _MAX_PENDING and CARACAL_POLICY_MAX_BYTES, with their bounds."""
    default = load_settings(VALID)
    assert (default.rego_workers, default.rego_timeout_ms, default.rego_max_pending) == (2, 2000, 64)
    assert default.policy_max_bytes == 262_144
    changed = load_settings(
        {
            **VALID,
            "CARACAL_REGO_WORKERS": "1",
            "CARACAL_REGO_TIMEOUT_MS": "500",
            "CARACAL_REGO_MAX_PENDING": "4",
            "CARACAL_POLICY_MAX_BYTES": "4096",
        }
    )
    assert (changed.rego_workers, changed.rego_timeout_ms, changed.rego_max_pending) == (1, 500, 4)
    assert changed.policy_max_bytes == 4096
    with pytest.raises(SettingsError, match="^CARACAL_REGO_WORKERS: must be between"):
        load_settings({**VALID, "CARACAL_REGO_WORKERS": "0"})
    with pytest.raises(SettingsError, match="^CARACAL_POLICY_MAX_BYTES: must be between"):
        load_settings({**VALID, "CARACAL_POLICY_MAX_BYTES": "2000000"})


def test_an_otlp_endpoint_alone_turns_on_the_otlp_exporter() -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT selects `otlp`; OTEL_TRACES_EXPORTER still wins; neither: none."""
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}
    assert load_settings(VALID).otel_traces_exporter == "none"
    assert load_settings({**VALID, **endpoint}).otel_traces_exporter == "otlp"
    both = {**VALID, **endpoint, "OTEL_TRACES_EXPORTER": "none"}
    assert load_settings(both).otel_traces_exporter == "none"


def test_log_format_is_json_unless_text_is_asked_for() -> None:
    """LOG_FORMAT: `json` by default (one object per line), `text` for a person; others are refused."""
    assert load_settings(VALID).log_format == "json"
    assert load_settings({**VALID, "LOG_FORMAT": "text"}).log_format == "text"
    with pytest.raises(SettingsError, match="^LOG_FORMAT: "):
        load_settings({**VALID, "LOG_FORMAT": "xml"})
