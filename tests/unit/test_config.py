"""Configuration: every error names the key; secrets come from files and the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from crmcomms.config import ConfigError, load_settings, parse_settings

EXAMPLE = Path(__file__).parents[2] / "config" / "crmcomms.example.toml"


def test_example_config_is_valid_and_documents_every_key() -> None:
    settings = load_settings(EXAMPLE, env={})
    text = EXAMPLE.read_text()
    for section in ("general", "database", "http", "lookup", "ami"):
        model = getattr(settings, section)
        for key in type(model).model_fields:
            assert f"{key} =" in text or f"# {key} =" in text, f"{section}.{key} undocumented"
    from crmcomms.config import MailboxSettings

    for key in MailboxSettings.model_fields:
        assert f"# {key} =" in text, f"mailboxes.{key} undocumented"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"general": {"colour": "red"}}, "general.colour: unknown key"),
        ({"generl": {}}, "generl: unknown key"),
        ({"http": {"port": 70000}}, "http.port: Input should be less than or equal to 65535"),
        ({"http": {"port": "eighty"}}, "http.port: Input should be a valid integer"),
        (
            {"general": {"default_region": "XX"}},
            "general.default_region: Value error, unknown region",
        ),
        ({"general": {"log_level": "LOUD"}}, "general.log_level: Input should be"),
        ({"database": {"url": "mysql://x"}}, "database.url: Value error, must start with"),
        (
            {"ami": {"agent_channel_patterns": ["PJSIP/"]}},
            "ami.agent_channel_patterns: Value error",
        ),
        (
            {"mailboxes": [{"name": "a b", "address": "x@y"}]},
            "mailboxes.0.name: String should match",
        ),
        ({"mailboxes": [{"name": "sales"}]}, "mailboxes.0.address: Field required"),
    ],
)
def test_errors_name_the_key(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings(raw, env={})
    assert message in str(info.value)


def test_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[general\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
        load_settings(path, env={})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(tmp_path / "nope.toml", env={})


def test_secrets_from_file_and_environment(tmp_path: Path) -> None:
    (tmp_path / "ami.secret").write_text("from-file\n")
    (tmp_path / "box.pw").write_text("box-file\n")
    path = tmp_path / "c.toml"
    path.write_text(
        '[ami]\nsecret = "inline"\nsecret_file = "ami.secret"\n'
        '[[mailboxes]]\nname = "sales-de"\naddress = "s@x.de"\npassword_file = "box.pw"\n'
        'smtp_host = "smtp.x.de"\n'
    )
    settings = load_settings(path, env={})
    assert settings.ami.secret.get_secret_value() == "from-file"
    assert settings.mailboxes[0].password.get_secret_value() == "box-file"
    assert settings.mailboxes[0].smtp_password.get_secret_value() == "box-file"
    env = {"CRMCOMMS_AMI_SECRET": "from-env", "CRMCOMMS_MAILBOX_SALES_DE_PASSWORD": "box-env"}
    settings = load_settings(path, env=env)
    assert settings.ami.secret.get_secret_value() == "from-env"
    assert settings.mailboxes[0].password.get_secret_value() == "box-env"


def test_secrets_are_never_shown(tmp_path: Path) -> None:
    raw = {
        "ami": {"secret": "ami-s3cret"},
        "database": {"url": "postgresql+asyncpg://crm:db-s3cret@h/db"},
        "cdr": {"url": "mysql://cdr:cdr-s3cret@pbx/asteriskcdrdb"},
        "http": {"signing_key": "signing-s3cret-0123456789"},
        "mailboxes": [{"name": "m", "address": "m@x.de", "password": "box-s3cret"}],
    }
    settings = parse_settings(raw, env={})
    for shown in (repr(settings), str(settings), str(settings.model_dump())):
        assert "s3cret" not in shown
    assert settings.database_url == "postgresql+asyncpg://crm:db-s3cret@h/db"
    assert settings.mailboxes[0].smtp_password.get_secret_value() == "box-s3cret"
    assert settings.http.signing_key.get_secret_value() == "signing-s3cret-0123456789"


def test_unreadable_secret_file_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"ami\.secret_file: cannot read"):
        parse_settings({"ami": {"secret_file": "missing"}}, env={}, base=tmp_path)


def test_default_database_is_sqlite_in_data_dir(tmp_path: Path) -> None:
    settings = parse_settings({"general": {"data_dir": str(tmp_path)}}, env={})
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path}/crmcomms.sqlite3"
    env = {"CRMCOMMS_DATABASE_URL": "postgresql+asyncpg://u@h/db"}
    assert parse_settings({}, env=env).database_url == "postgresql+asyncpg://u@h/db"


def test_cdr_section_is_documented_and_off_by_default() -> None:
    from crmcomms.config import CdrSettings

    text = EXAMPLE.read_text()
    for key in CdrSettings.model_fields:
        assert f"{key} =" in text, f"cdr.{key} undocumented"
    settings = load_settings(EXAMPLE, env={})
    assert not settings.cdr.configured
    assert settings.cdr.table == "cdr"
    assert settings.cdr.margin_seconds == 120


@pytest.mark.parametrize(
    ("cdr", "message"),
    [
        ({"url": "sqlite:///x"}, "cdr.url: Value error, must start with"),
        ({"table": "cdr; drop table x"}, "cdr.table: String should match"),
        ({"table": "1cdr"}, "cdr.table: String should match"),
        ({"margin_seconds": -1}, "cdr.margin_seconds: Input should be greater"),
        ({"timezone": "Mars/Base"}, "cdr.timezone: Value error, unknown time zone"),
        ({"csv": "/x.csv", "url": "mysql://u@h/db"}, "cdr: Value error, csv and url are exclusive"),
        ({"colour": "red"}, "cdr.colour: unknown key"),
    ],
)
def test_cdr_errors_name_the_key(cdr: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings({"cdr": cdr}, env={})
    assert message in str(info.value)


def test_cdr_url_from_file_and_environment(tmp_path: Path) -> None:
    (tmp_path / "cdr.url").write_text("mysql://cdr:secret@pbx/asteriskcdrdb\n")
    settings = parse_settings({"cdr": {"url_file": "cdr.url"}}, env={}, base=tmp_path)
    assert settings.cdr.url.get_secret_value() == "mysql://cdr:secret@pbx/asteriskcdrdb"
    assert settings.cdr.configured
    env = {"CRMCOMMS_CDR_URL": "postgresql://cdr@pbx/asterisk"}
    assert parse_settings({}, env=env).cdr.url.get_secret_value() == "postgresql://cdr@pbx/asterisk"
    with pytest.raises(ConfigError, match=r"cdr: csv and url are exclusive"):
        parse_settings({"cdr": {"csv": "/x.csv"}}, env=env)
    with pytest.raises(ConfigError, match=r"cdr\.url: must start with"):
        parse_settings({}, env={"CRMCOMMS_CDR_URL": "oracle://x"})
    csv_only = parse_settings({"cdr": {"csv": "/var/log/asterisk/cdr-custom/Master.csv"}}, env={})
    assert csv_only.cdr.configured


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"mailboxes": [{"name": "sales", "address": "nope"}]},
            "mailboxes.0.address: Value error, 'nope' is no e-mail address",
        ),
        (
            {"mailboxes": [{"name": "s", "address": "s@example.com", "imap_host": "imap host"}]},
            "mailboxes.0.imap_host: Value error, 'imap host' is no host name or IP address",
        ),
        ({"ami": {"host": "pbx_01..example"}}, "ami.host: Value error"),
        ({"ami": {"extension_pattern": "[0-9"}}, "ami.extension_pattern: Value error"),
        ({"http": {"trusted_proxies": ["nginx"]}}, "http.trusted_proxies.0"),
    ],
)
def test_addresses_and_hosts_are_checked(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings(raw, env={})
    assert message in str(info.value)


def test_smtp_host_is_required_in_a_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[[mailboxes]]\nname = "sales"\naddress = "sales@example.com"\n')
    with pytest.raises(ConfigError, match=r"^mailboxes\.0\.smtp_host: required"):
        load_settings(path, env={})
    path.write_text(path.read_text() + 'smtp_host = "smtp.example.com"\n')
    assert load_settings(path, env={}).mailboxes[0].smtp_host == "smtp.example.com"


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "c.toml"
    path.parent.mkdir()
    path.write_text(
        '[general]\ndata_dir = "state"\n[ami]\nrecordings_dir = "/var/spool/rec"\n'
        '[cdr]\ncsv = "cdr/Master.csv"\n'
    )
    settings = load_settings(path, env={})
    assert settings.general.data_dir == tmp_path / "etc" / "state"
    assert settings.ami.recordings_dir == Path("/var/spool/rec")
    assert settings.cdr.csv == str(tmp_path / "etc" / "cdr" / "Master.csv")
    assert load_settings(EXAMPLE, env={}).general.data_dir == EXAMPLE.parent / ".." / "data"
