"""migctl.toml -> Settings: precedence, types, and one-line errors with exit 2."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from migctl.config import TABLES, Settings, load_settings
from migctl.errors import ConfigError
from tests.cli_support import Cli

SKELETON = """
[project]
environment = "test"
region = "us-east-1"
profile = "payments-admin"
stack = "test"
[source]
dsn_env = "MIGCTL_SOURCE_DSN"
[target]
secret_arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:aurora"
[alarms]
prefix = "payments-test-"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "migctl.toml"
    path.write_text(text)
    return path


def test_skeleton_from_the_issue_loads(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, SKELETON), environ={})
    assert s.project.environment == "test" and s.project.stack_name == "test"
    assert s.project.region == "us-east-1" and s.project.profile == "payments-admin"
    assert s.source.dsn_env == "MIGCTL_SOURCE_DSN"
    assert s.target.secret_arn and s.alarms.prefix == "payments-test-"
    assert s.config_path == (tmp_path / "migctl.toml").resolve()


def test_defaults_without_any_file(tmp_path: Path) -> None:
    s = load_settings(None, environ={}, cwd=tmp_path)
    assert s == Settings()
    assert s.project.stack_name == "test" and not s.project.is_production


def test_default_file_is_migctl_toml_in_cwd(tmp_path: Path) -> None:
    write(tmp_path, '[project]\nenvironment = "staging"\n')
    assert load_settings(None, environ={}, cwd=tmp_path).project.environment == "staging"


def test_precedence_flag_over_env_over_file_over_default(tmp_path: Path) -> None:
    path = write(tmp_path, '[project]\nregion = "eu-west-1"\n[validate]\njobs = 3\n')
    assert load_settings(path, environ={}).project.region == "eu-west-1"
    env = {"MIGCTL_PROJECT_REGION": "eu-central-1", "MIGCTL_VALIDATE_JOBS": "7"}
    s = load_settings(path, environ=env)
    assert s.project.region == "eu-central-1" and s.validate.jobs == 7
    assert load_settings(path, environ=env, region="ap-south-1").project.region == "ap-south-1"
    assert load_settings(None, environ={}, cwd=tmp_path / "..").validate.jobs == 2


def test_aws_region_env_is_used_when_nothing_else_sets_it(tmp_path: Path) -> None:
    s = load_settings(None, environ={"AWS_REGION": "us-west-2", "AWS_PROFILE": "p"}, cwd=tmp_path)
    assert s.project.region == "us-west-2" and s.project.profile == "p"


def test_config_path_from_env(tmp_path: Path) -> None:
    path = write(tmp_path, '[project]\nenvironment = "prod"\n')
    s = load_settings(None, environ={"MIGCTL_CONFIG": str(path)}, cwd=Path("/"))
    assert s.project.is_production


def test_output_from_env_and_flag(tmp_path: Path) -> None:
    assert load_settings(None, environ={"MIGCTL_OUTPUT": "json"}, cwd=tmp_path).output == "json"
    assert (
        load_settings(None, output="table", environ={"MIGCTL_OUTPUT": "json"}, cwd=tmp_path).output
        == "table"
    )


def test_lists_and_bools_and_floats(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[validate]\nschemas = ["public", "billing"]\n[alarms]\nallow_insufficient_data = true\n'
        "[dms]\nmax_latency_seconds = 3\n",
    )
    s = load_settings(path, environ={"MIGCTL_ALARMS_NAMES": "a, b"})
    assert s.validate.schemas == ("public", "billing")
    assert s.alarms.allow_insufficient_data is True and s.alarms.names == ("a", "b")
    assert s.dms.max_latency_seconds == 3.0 and isinstance(s.dms.max_latency_seconds, float)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[project\n", r"invalid TOML"),
        ('[project]\nenviroment = "x"\n', r"unknown key 'enviroment' in \[project\]"),
        ("[nope]\nx = 1\n", r"unknown table \[nope\]"),
        ('[validate]\njobs = "four"\n', r"\[validate\] jobs must be int, not str"),
        ("[validate]\njobs = true\n", r"\[validate\] jobs must be int, not a boolean"),
        ('[validate]\nschemas = "public"\n', r"\[validate\] schemas must be a list of strings"),
        (
            '[cutover]\nfreeze_strategy = "pause"\n',
            r"freeze_strategy must be one of fence \| none",
        ),
        ('project = "x"\n', r"\[project\] must be a table"),
    ],
)
def test_bad_files_raise_one_config_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(write(tmp_path, text), environ={})


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "absent.toml", environ={})


def test_bad_env_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="MIGCTL_VALIDATE_JOBS='many'"):
        load_settings(None, environ={"MIGCTL_VALIDATE_JOBS": "many"}, cwd=tmp_path)


def test_bad_output_format(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--output must be 'table' or 'json'"):
        load_settings(None, output="yaml", environ={}, cwd=tmp_path)


def test_every_key_is_documented() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    for table, cls in TABLES.items():
        section = re.search(rf"^## `\[{table}\]`(.*?)(?=^## |\Z)", doc, re.M | re.S)
        assert section, f"docs/configuration.md lacks a section for [{table}]"
        for f in dataclasses.fields(cls):
            assert f"`{f.name}`" in section.group(1), f"[{table}] {f.name} is not documented"


def test_validate_defaults_are_the_library_defaults() -> None:
    """config.py repeats the validation library's defaults (importing it would slow start-up)."""
    from migctl.validate.runner import ValidateOptions

    library, settings = ValidateOptions(), Settings().validate
    for name in ("schemas", "jobs", "max_keys", "chunk_rows"):
        assert getattr(settings, name) == getattr(library, name), name


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[dms]\nstable_for = -3\n", r"\[dms\] stable_for must be at least 1, not -3"),
        ("[validate]\njobs = 0\n", r"\[validate\] jobs must be at least 1, not 0"),
        ("[validate]\nchunk_rows = 0\n", r"\[validate\] chunk_rows must be at least 1"),
        ("[ecs]\ninterval_seconds = 0\n", r"\[ecs\] interval_seconds must be more than 0"),
        ("[cutover]\nsequence_margin = -1\n", r"\[cutover\] sequence_margin must be at least 0"),
        ('[validate]\nexecutor = "ec2"\n', r"executor must be one of local \| lambda"),
    ],
)
def test_a_keys_range_is_checked_in_the_file(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(write(tmp_path, text), environ={})


def test_a_keys_range_is_checked_in_the_environment(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[dms\] stable_for must be at least 1, not -3"):
        load_settings(None, environ={"MIGCTL_DMS_STABLE_FOR": "-3"}, cwd=tmp_path)


def test_flags_go_over_the_settings_in_one_step_and_a_zero_is_a_value() -> None:
    from migctl.config import overridden

    base = load_settings(None, environ={"MIGCTL_VALIDATE_MAX_KEYS": "50"}, cwd=Path("/"))
    over = overridden(base, "validate", max_keys=0, jobs=None, tables=["public.pay*"])
    assert (over.validate.max_keys, over.validate.jobs) == (0, 2)  # 0 wins, None is not given
    assert over.validate.tables == ("public.pay*",)
    assert overridden(base, "validate", jobs=None) is base
    with pytest.raises(ConfigError, match="--jobs must be at least 1, not 0"):
        overridden(base, "validate", jobs=0)
    with pytest.raises(ConfigError, match="--interval must be more than 0"):
        overridden(base, "ecs", interval_seconds=0.0)
    with pytest.raises(ConfigError, match="--executor must be one of local"):
        overridden(base, "validate", executor="ec2")


def test_a_flag_and_its_key_share_one_range() -> None:
    """The typer range of a flag is read from the key it overrides (cli: Cli/options.py)."""
    from migctl.cli.options import at_least

    assert at_least("validate", "jobs") == 1 and at_least("dms", "stable_for") == 1
    assert at_least("validate", "max_keys") == 0 and at_least("ecs", "interval_seconds") is None


def test_the_nearest_migctl_toml_above_the_folder_is_used(tmp_path: Path) -> None:
    """As git finds .git: a command run in a subfolder of the project uses its config."""
    path = write(tmp_path, '[project]\nenvironment = "staging"\n')
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    settings = load_settings(None, environ={}, cwd=deep)
    assert settings.config_path == path.resolve() and settings.project.environment == "staging"
    write(tmp_path / "a", '[project]\nenvironment = "nearer"\n')
    assert load_settings(None, environ={}, cwd=deep).project.environment == "nearer"


def test_v_says_which_config_is_used(cli: Cli, tmp_path: Path) -> None:
    write(tmp_path, '[project]\nenvironment = "staging"\n')
    result = cli("-v", "cutover", "plan")
    assert f"config: {(tmp_path / 'migctl.toml').resolve()}" in result.stderr
