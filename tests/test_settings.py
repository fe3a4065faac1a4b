"""Settings: the one source of defaults, the flags derived from it, and POLYHOST_* variables."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from polyhost.cli import build_parser
from polyhost.settings import Settings, fields
from tests.support.server import free_port


def test_every_field_has_a_flag_with_help_and_an_env_name() -> None:
    specs = list(fields())
    assert [s.name for s in specs] == [f.name for f in dataclasses.fields(Settings)]
    flags = [s.flag for s in specs]
    assert len(set(flags)) == len(flags)
    for spec in specs:
        assert spec.flag.startswith("--") and spec.help
        assert spec.env == "POLYHOST_" + spec.flag[2:].replace("-", "_").upper()


def test_serve_flags_default_to_the_settings_fields() -> None:
    """An unset flag stays out of the namespace, so Settings' own default applies."""
    args = build_parser().parse_args(["serve"])
    assert not any(hasattr(args, spec.name) for spec in fields())
    assert Settings.from_env({}) == Settings()


def test_the_max_inflight_help_names_the_status_the_server_answers() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "polyhost", "serve", "--help"], capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    help_text = done.stdout
    inflight = help_text[help_text.rindex("--max-inflight N") :][:300]
    assert "503" in inflight and "429" not in inflight


def test_environment_sets_fields_and_flags_beat_it() -> None:
    environ = {
        "POLYHOST_STATE_DIR": "/srv/polyhost",
        "POLYHOST_INVOCATION_TIMEOUT": "12.5",
        "POLYHOST_MAX_INFLIGHT": "7",
        "POLYHOST_ACCESS_LOG": "false",
        "POLYHOST_ALLOW_MODEL_HOST": "10.0.0.0/8, models.internal",
    }
    settings = Settings.from_env(environ)
    assert settings.state_dir == Path("/srv/polyhost")
    assert settings.invocation_timeout_s == 12.5
    assert settings.max_inflight_per_container == 7
    assert settings.access_log is False
    assert settings.allow_model_hosts == ("10.0.0.0/8", "models.internal")
    assert Settings.from_env(environ, max_inflight_per_container=9).max_inflight_per_container == 9


@pytest.mark.parametrize(
    ("variable", "value"),
    [("POLYHOST_ACCESS_LOG", "maybe"), ("POLYHOST_PORT", "eighty")],
)
def test_a_malformed_variable_is_refused(variable: str, value: str) -> None:
    with pytest.raises(ValueError):
        Settings.from_env({variable: value})


def test_serve_reads_polyhost_state_dir(tmp_path: Path) -> None:
    """POLYHOST_STATE_DIR, documented since the first release, reaches the server."""
    state = tmp_path / "from-env"
    env = {**os.environ, "POLYHOST_STATE_DIR": str(state), "POLYHOST_PORT": str(free_port())}
    server = subprocess.Popen(
        [sys.executable, "-m", "polyhost", "serve"], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (state / "polyhost.db").exists() and server.poll() is None:
            assert time.monotonic() < deadline, "the server never created its database"
            time.sleep(0.05)
        assert (state / "polyhost.db").exists()
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_a_malformed_variable_stops_serve_with_its_name() -> None:
    env = {**os.environ, "POLYHOST_ACCESS_LOG": "maybe"}
    done = subprocess.run(
        [sys.executable, "-m", "polyhost", "serve"], env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "POLYHOST_ACCESS_LOG" in done.stderr


def test_a_non_loopback_host_from_the_environment_is_refused_without_auth() -> None:
    env = {**os.environ, "POLYHOST_HOST": "0.0.0.0"}
    done = subprocess.run(
        [sys.executable, "-m", "polyhost", "serve"], env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "refusing to bind 0.0.0.0" in done.stderr
