"""Every setting reachable and explained: a flag each, grouped help, docs that match.

The flags are made from the ``Settings`` fields, so these tests hold for a
setting added later as much as for today's: it gets a flag that reaches it, a
place in ``serve --help``, and docs/configuration.md fails this suite until it
lists the setting.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from typewriter.cli import app
from typewriter.cli_settings import SettingFlag, given_flags, setting_flags
from typewriter.config import GROUPS, Settings, default_data_dir, load_settings
from typewriter.errors import ConfigError

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
TABLES_ONLY = {"upstreams", "assistants", "retry"}
ROW = re.compile(r"^\| `(\w+)` \| (.+?) \| `(\w+)` \| (.+?) \| (.+) \|$")


def help_of(*command: str) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    return result.output


def test_every_scalar_setting_has_a_flag_and_only_tables_have_none() -> None:
    flagged = {flag.name for flag in setting_flags()}
    assert set(Settings.model_fields) - flagged == TABLES_ONLY
    assert {flag.name: flag.kind for flag in setting_flags() if flag.kind != "value"} == {
        "cors_origins": "list",
        "insecure": "switch",
        "builtin_assistants": "switch",
        "show_system_prompts": "switch",
        "trusted_proxies": "list",
        "limit_loopback": "switch",
    }


def test_serve_help_shows_every_flag_in_its_group_with_its_default() -> None:
    shown = " ".join(help_of("serve").replace("│", " ").split())  # lines wrapped: one text
    for group in GROUPS:
        assert f"╭─ {group.title} ─" in shown
    for flag in setting_flags():
        assert re.search(rf"{flag.flag}\b", shown), flag.flag
        if flag.default is not None and flag.name != "data_dir":  # its own test, in a process
            assert f"[default: {flag.default}]" in shown, flag.name
    assert "--config" in shown
    assert "[default: 8000]" in shown and "[default: 1048576]" in shown


@pytest.mark.parametrize(
    "command",
    [
        (),
        ("serve",),
        ("chat",),
        ("users",),
        ("users", "add"),
        ("users", "list"),
        ("users", "revoke"),
        ("keys",),
        ("keys", "add"),
        ("keys", "list"),
        ("keys", "revoke"),
    ],
)
def test_help_has_no_raw_markup_or_type_labels_on_flags(command: tuple[str, ...]) -> None:
    shown = help_of(*command)
    assert "``" not in shown
    assert "<bool>" not in shown
    assert "\\[" not in shown  # an escaped bracket printed as typed
    if command[-1:] in [("add",), ("list",), ("revoke",)]:  # rich markup eats "[default: …]"
        assert "(default: the platform's data directory)" in " ".join(shown.split())


def _given(flag: SettingFlag, tmp_path: Path) -> tuple[list[str], Any]:
    """Command-line words that set ``flag`` away from its default, and the value expected."""
    special: dict[str, tuple[str, Any]] = {
        "broker": ("redis://127.0.0.1:6399/0", "redis://127.0.0.1:6399/0"),
        "database_url": ("none", "none"),
        "log_level": ("debug", "debug"),
        "log_format": ("json", "json"),
        "auth": ("on", "on"),
        "data_dir": (str(tmp_path), tmp_path),
    }
    field = Settings.model_fields[flag.name]
    if flag.kind == "switch":
        on = field.default is not True
        return [flag.flag if on else "--no-" + flag.flag[2:]], on
    if flag.kind == "list":
        two = ["https://a.example", "https://b.example"]
        if flag.name == "trusted_proxies":  # addresses or networks only
            two = ["192.0.2.1", "10.0.0.0/8"]
        return [flag.flag, two[0], flag.flag, two[1]], two
    if flag.name in special:
        text, value = special[flag.name]
        return [flag.flag, text], value
    if flag.metavar == "INTEGER":
        return [flag.flag, "7"], 7
    if flag.metavar == "NUMBER":
        return [flag.flag, "7.5"], 7.5
    return [flag.flag, "something"], "something"


@pytest.mark.parametrize("flag", setting_flags(), ids=lambda flag: flag.name)
def test_each_flag_reaches_its_setting(flag: SettingFlag, tmp_path: Path) -> None:
    words, expected = _given(flag, tmp_path)
    serve = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    with serve.make_context("serve", words) as ctx:
        params = dict(ctx.params)
    assert params.pop("config") is None
    given = given_flags(params)
    assert list(given) == [flag.name]
    settings = load_settings(**given)
    value = getattr(settings, flag.name)
    if hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    assert value == expected


def _documented() -> dict[str, tuple[str, str, str]]:
    rows = {}
    for line in DOC.read_text().splitlines():
        match = ROW.match(line)
        if match:
            name, flag, variable, default, _meaning = match.groups()
            assert name not in rows, f"{name} is documented twice"
            rows[name] = (flag, variable, default)
    return rows


def test_configuration_doc_lists_every_setting_as_it_is() -> None:
    documented = _documented()
    assert set(documented) == set(Settings.model_fields), (
        f"missing from docs/configuration.md: {set(Settings.model_fields) - set(documented)}; "
        f"stale there: {set(documented) - set(Settings.model_fields)}"
    )
    flags = {flag.name: flag for flag in setting_flags()}
    for name, (flag_cell, variable, default_cell) in documented.items():
        assert variable == f"TYPEWRITER_{name.upper()}", name
        flag = flags.get(name)
        if flag is None:
            assert flag_cell == "TOML or JSON only", name
            continue
        assert flag_cell == f"`{flag.flag}`", name
        if name == "data_dir":
            assert "`~/.local/share/typewriter` on Linux" in default_cell
        elif flag.default is None:
            assert default_cell == "—", name
        else:
            assert default_cell == f"`{flag.default}`", name


def test_the_documented_data_dir_is_the_default_on_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.delenv("TYPEWRITER_DATA_DIR")
    assert default_data_dir() == Path.home() / ".local" / "share" / "typewriter"


def test_the_data_dir_does_not_depend_on_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TYPEWRITER_DATA_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    monkeypatch.chdir(tmp_path)
    assert load_settings().data_dir == tmp_path / "share" / "typewriter"
    assert load_settings().data_dir.is_absolute()


@pytest.mark.parametrize(
    ("overrides", "env", "says"),
    [
        ({"port": "70000"}, {}, "invalid setting port: "),
        ({"log_level": "loud"}, {}, "invalid setting log_level: "),
        ({"log_level": "WARNING"}, {}, None),
        ({"database_url": "postgresql://app:pw@db/x"}, {}, "postgresql+asyncpg://"),
        ({"database_url": "mysql://app:pw@db/x"}, {}, "invalid setting database_url: 'mysql'"),
        ({}, {"TYPEWRITER_UPSTREAMS": "[{bad"}, "invalid setting upstreams (TYPEWRITER_UPS"),
        ({}, {"TYPEWRITER_RETRY": '{"deadline": -1}'}, "invalid setting retry.deadline: "),
        ({}, {"TYPEWRITER_HEARTBEAT": "often"}, "invalid setting heartbeat: "),
    ],
)
def test_a_wrong_value_is_one_line_naming_the_setting(
    overrides: dict[str, str],
    env: dict[str, str],
    says: str | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if says is None:
        assert load_settings(**overrides).log_level == "warning"
        return
    with pytest.raises(ConfigError) as caught:
        load_settings(**overrides)
    message = caught.value.message
    assert says in message and "\n" not in message
    assert "pw@" not in message  # a URL's password is never repeated back
