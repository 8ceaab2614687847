"""Building assistants from settings: routes, bounds, and precise start-up errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import typewriter_cli
from typewriter.assistants import Catalog, build_catalog
from typewriter.config import load_settings
from typewriter.errors import ConfigError
from typewriter.models.base import GenerationOptions

TOML = """
builtin_assistants = true

[[upstreams]]
name = "primary"
base_url = "http://127.0.0.1:9/v1"
api_keys = ["k1", "k2"]
models = ["m"]

[[upstreams]]
name = "backup"
base_url = "http://127.0.0.1:10/v1"
models = ["m"]

[[assistants]]
name = "smart"
model = "m"
system_prompt = "Be brief."
temperature = 0.3
max_tokens_limit = 100
temperature_limit = 1.0
idle_timeout = 7
"""


def test_catalog_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(TOML)
    settings = load_settings(path)
    assert [u.name for u in settings.upstreams] == ["primary", "backup"]
    assert settings.upstreams[0].api_keys[0].get_secret_value() == "k1"
    assert "k1" not in repr(settings)  # keys never show in logs or reprs
    catalog = build_catalog(settings)
    assert set(catalog.assistants) == {"default", "echo", "smart"}
    smart = catalog.assistants["smart"]
    assert smart.defaults.temperature == 0.3
    assert smart.timeouts.idle == 7 and smart.timeouts.first_token == settings.first_token_timeout
    assert smart.out_of_bounds(GenerationOptions(max_tokens=100, temperature=1.0)) == []
    fields = [
        p["field"] for p in smart.out_of_bounds(GenerationOptions(max_tokens=101, temperature=1.5))
    ]
    assert fields == ["max_tokens", "temperature"]


def test_configured_assistants_replace_the_simulated_ones_by_default(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(TOML.replace("builtin_assistants = true", ""))
    assert set(build_catalog(load_settings(path)).assistants) == {"smart"}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('[[assistants]]\nname = "x"\nmodel = "nothere"\n', "no upstream serves model 'nothere'"),
        ('[[assistants]]\nname = "x"\nmodel = "m"\nupstreams = ["ghost"]\n', "ghost"),
        ('[[assistants]]\nname = "smart"\nmodel = "m"\n', "configured twice"),
    ],
)
def test_wrong_references_stop_start_up_by_name(tmp_path: Path, extra: str, message: str) -> None:
    path = tmp_path / "t.toml"
    path.write_text(TOML + extra)
    with pytest.raises(ConfigError, match=message):
        build_catalog(load_settings(path))


def test_invalid_upstream_settings_are_named(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text('[[upstreams]]\nname = "a"\nbase_url = "ftp://x"\n')
    with pytest.raises(ConfigError, match="base_url"):
        load_settings(path)


def _catalog(tmp_path: Path, toml: str) -> Catalog:
    path = tmp_path / "t.toml"
    path.write_text(toml)
    return build_catalog(load_settings(path))


def test_the_default_is_default_while_it_is_served(tmp_path: Path) -> None:
    assert _catalog(tmp_path, TOML).default == "default"


def test_the_default_is_the_first_configured_assistant_without_the_simulated_ones(
    tmp_path: Path,
) -> None:
    second = '[[assistants]]\nname = "second"\nmodel = "m"\n'
    toml = TOML.replace("builtin_assistants = true", "") + second
    assert _catalog(tmp_path, toml).default == "smart"


def test_default_assistant_chooses_among_the_served(tmp_path: Path) -> None:
    assert _catalog(tmp_path, 'default_assistant = "smart"\n' + TOML).default == "smart"
    assert _catalog(tmp_path, 'default_assistant = "echo"\n' + TOML).default == "echo"


def test_a_default_assistant_not_served_stops_start_up_by_name(tmp_path: Path) -> None:
    toml = 'default_assistant = "echo"\n' + TOML.replace("builtin_assistants = true", "")
    with pytest.raises(ConfigError) as raised:
        _catalog(tmp_path, toml)
    assert raised.value.message == (
        "default_assistant 'echo' is not a served assistant; served: ['smart']"
    )


def test_no_assistant_at_all_stops_start_up(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no assistant is served"):
        _catalog(tmp_path, "builtin_assistants = false\n")


def test_system_prompts_are_public_only_when_shown(tmp_path: Path) -> None:
    smart = _catalog(tmp_path, TOML).assistants["smart"]
    assert "system_prompt" not in smart.public()
    assert smart.public(show_system_prompt=True)["system_prompt"] == "Be brief."


def test_serve_refuses_a_default_assistant_not_served_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text('default_assistant = "ghost"\n')
    done = typewriter_cli(
        "serve", "--config", str(path), "--data-dir", str(tmp_path / "data"), "--port", "0"
    )
    assert done.returncode == 2
    assert done.stderr == (
        "typewriter: default_assistant 'ghost' is not a served assistant; "
        "served: ['default', 'echo']\n"
    )
