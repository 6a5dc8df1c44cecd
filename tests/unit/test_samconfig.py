"""samconfig.toml and infra_params/<env>.json: complete per environment and in agreement.

SAM CLI does not merge [default] into a named environment, so each of [dev], [staging] and
[prod] must contain everything `sam deploy --config-env <env>` needs. The files are read with
SAM CLI's own reader and parameter parser where it has one, and with shlex as a shell would.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from typing import Any

import pytest
import yaml
from samcli.cli.types import CfnParameterOverridesType, CfnTags
from samcli.lib.config.samconfig import SamConfig

from tests.unit.template_render import (
    ENVIRONMENTS,
    INFRA_PARAMS_DIR,
    REPO_ROOT,
    SAMCONFIG_PATH,
    default_stack_name,
    load_template,
    render_template,
)

REQUIRED_DEPLOY_KEYS = {"stack_name", "region", "capabilities", "resolve_s3", "parameter_overrides"}
REGION_NAME = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")


def samconfig() -> dict[str, Any]:
    """Parse samconfig.toml as TOML."""
    with SAMCONFIG_PATH.open("rb") as file:
        return tomllib.load(file)


def deploy_parameters(environment: str) -> dict[str, Any]:
    """Return the deploy parameters SAM CLI uses for `--config-env <environment>`."""
    return SamConfig(config_dir=str(REPO_ROOT), filename=SAMCONFIG_PATH.name).get_all(
        ["deploy"], "parameters", env=environment
    )


def split_pairs(text: str) -> dict[str, str]:
    """Split 'Key=Value Key=Value' as a shell would, one pair per word."""
    pairs = {}
    for word in shlex.split(text):
        name, separator, value = word.partition("=")
        assert separator == "=", f"'{word}' is not Key=Value"
        assert name not in pairs, f"'{name}' is set twice"
        pairs[name] = value
    return pairs


def overrides(environment: str) -> dict[str, str]:
    """Return the parameter_overrides of an environment, split as a shell would."""
    return split_pairs(deploy_parameters(environment)["parameter_overrides"])


def infra_params(environment: str) -> dict[str, Any]:
    """Parse infra_params/<environment>.json."""
    return json.loads((INFRA_PARAMS_DIR / f"{environment}.json").read_text(encoding="utf-8"))


def test_samconfig_version() -> None:
    """samconfig.toml declares the format version SAM CLI reads."""
    assert samconfig()["version"] == 0.1


def test_samconfig_has_each_environment() -> None:
    """samconfig.toml has a section for dev, staging and prod."""
    assert set(ENVIRONMENTS) <= set(samconfig())


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_environment_deploy_section_complete(environment: str) -> None:
    """Each environment's own deploy section contains every setting sam deploy needs."""
    own_section = samconfig()[environment]["deploy"]["parameters"]
    assert REQUIRED_DEPLOY_KEYS <= set(own_section)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_environment_uses_managed_bucket(environment: str) -> None:
    """sam deploy uploads artifacts to SAM's managed bucket, never one the stack defines."""
    parameters = deploy_parameters(environment)
    assert parameters["resolve_s3"] is True
    assert "s3_bucket" not in parameters


def test_default_section_has_no_deploy_settings() -> None:
    """[default] contains no deploy settings that someone could expect to be inherited."""
    assert "deploy" not in samconfig().get("default", {})


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_stack_name_carries_environment_and_suffix(environment: str) -> None:
    """The stack name follows payment-webhook-<environment>-<suffix>."""
    parameters = deploy_parameters(environment)
    suffix = overrides(environment)["EnvironmentSuffix"]
    assert parameters["stack_name"] == default_stack_name(environment, suffix)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_region_is_one_region_name(environment: str) -> None:
    """Each environment deploys to exactly one named region."""
    assert REGION_NAME.fullmatch(deploy_parameters(environment)["region"])


def test_cfn_lint_checks_deployment_regions() -> None:
    """cfn-lint validates the template against every region samconfig.toml deploys to."""
    config = yaml.safe_load((REPO_ROOT / ".cfnlintrc").read_text(encoding="utf-8"))
    regions = {deploy_parameters(environment)["region"] for environment in ENVIRONMENTS}
    assert regions <= set(config["regions"])


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_capabilities_allow_iam_roles(environment: str) -> None:
    """The stack creates IAM roles, so sam deploy acknowledges CAPABILITY_IAM."""
    assert "CAPABILITY_IAM" in deploy_parameters(environment)["capabilities"].split()


def test_prod_confirms_changeset() -> None:
    """A prod deploy shows the change set and waits for confirmation."""
    assert deploy_parameters("prod")["confirm_changeset"] is True


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_overrides_split_into_clean_pairs(environment: str) -> None:
    """Each override is one Key=Value word with no spaces or quotes."""
    text = deploy_parameters(environment)["parameter_overrides"]
    for word in shlex.split(text):
        assert re.fullmatch(r"[A-Za-z0-9]+=[^\s'\"]+", word), word
    assert "'" not in text
    assert '"' not in text


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_overrides_parse_same_in_sam_cli(environment: str) -> None:
    """SAM CLI's own parser reads the overrides as the shell split does."""
    text = deploy_parameters(environment)["parameter_overrides"]
    assert CfnParameterOverridesType().convert(text, None, None) == overrides(environment)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_overrides_name_template_parameters(environment: str) -> None:
    """Every override names a parameter the template declares."""
    declared = set(load_template()["Parameters"])
    assert set(overrides(environment)) <= declared


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_overrides_set_environment_to_section(environment: str) -> None:
    """The Environment override equals the section's name."""
    assert overrides(environment)["Environment"] == environment


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_overrides_give_required_parameters(environment: str) -> None:
    """Every parameter without a default gets a value."""
    required = {name for name, parameter in load_template()["Parameters"].items() if "Default" not in parameter}
    assert required <= set(overrides(environment))


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_overrides_satisfy_parameter_constraints(environment: str) -> None:
    """Each override passes its parameter's AllowedValues, AllowedPattern and range."""
    declared = load_template()["Parameters"]
    for name, value in overrides(environment).items():
        parameter = declared[name]
        if "AllowedValues" in parameter:
            assert value in parameter["AllowedValues"], name
        if "AllowedPattern" in parameter:
            assert re.fullmatch(parameter["AllowedPattern"], value), name
        if "MinValue" in parameter:
            assert float(value) >= parameter["MinValue"], name
        if "MaxValue" in parameter:
            assert float(value) <= parameter["MaxValue"], name


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_overrides_render_complete_stack(environment: str) -> None:
    """The template renders with each environment's overrides and no dangling reference."""
    values = overrides(environment)
    rendered = render_template(
        values["Environment"],
        values["EnvironmentSuffix"],
        overrides=tuple(sorted((name, value) for name, value in values.items() if name not in ("Environment", "EnvironmentSuffix"))),
        stack_name=deploy_parameters(environment)["stack_name"],
    )
    assert rendered.dangling_references() == {}


def test_samconfig_holds_no_password() -> None:
    """No password appears in samconfig.toml."""
    assert "password" not in SAMCONFIG_PATH.read_text(encoding="utf-8").lower()


def test_stack_names_distinct_per_environment() -> None:
    """Stack names differ between environments, so no two sections deploy the same stack."""
    stack_names = [deploy_parameters(environment)["stack_name"] for environment in ENVIRONMENTS]
    assert len(set(stack_names)) == len(stack_names)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_tags_split_into_clean_pairs(environment: str) -> None:
    """Stack tags are Key=Value words that SAM CLI parses like a shell split."""
    text = deploy_parameters(environment)["tags"]
    assert CfnTags().convert(text, None, None) == split_pairs(text)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_infra_params_format(environment: str) -> None:
    """infra_params/<env>.json is a template configuration file with string values."""
    document = infra_params(environment)
    assert set(document) == {"Parameters", "Tags"}
    assert all(isinstance(value, str) for value in document["Parameters"].values())
    assert all(isinstance(value, str) for value in document["Tags"].values())


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_infra_params_match_samconfig_parameters(environment: str) -> None:
    """infra_params/<env>.json sets the same parameters as samconfig.toml."""
    assert infra_params(environment)["Parameters"] == overrides(environment)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_infra_params_match_samconfig_tags(environment: str) -> None:
    """infra_params/<env>.json sets the same stack tags as samconfig.toml."""
    assert infra_params(environment)["Tags"] == split_pairs(deploy_parameters(environment)["tags"])


def test_infra_params_cover_each_environment() -> None:
    """There is one infra_params file per environment and no other."""
    assert sorted(path.stem for path in INFRA_PARAMS_DIR.glob("*.json")) == sorted(ENVIRONMENTS)
