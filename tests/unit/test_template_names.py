"""Parameters, physical names, Name tags and Outputs of template.yaml.

Several copies of the stack share one account and region, distinguished by Environment and
EnvironmentSuffix. These tests render the template for each and compare what would clash.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.unit.template_render import (
    ENVIRONMENTS,
    RenderedTemplate,
    default_stack_name,
    load_template,
    render_template,
)

# The property that contains a user-chosen physical name, per resource type in the template.
PHYSICAL_NAME_PROPERTIES = {
    "AWS::ApiGatewayV2::Api": ("Body", "info", "title"),
    "AWS::KMS::Alias": ("AliasName",),
    "AWS::Lambda::Function": ("FunctionName",),
    "AWS::Logs::LogGroup": ("LogGroupName",),
    "AWS::RDS::DBInstance": ("DBInstanceIdentifier",),
    "AWS::SecretsManager::Secret": ("Name",),
}

# Maximum length of each physical name, from the services' naming rules.
PHYSICAL_NAME_MAX_LENGTH = {
    "AWS::ApiGatewayV2::Api": 128,
    "AWS::KMS::Alias": 256,
    "AWS::Lambda::Function": 64,
    "AWS::Logs::LogGroup": 512,
    "AWS::RDS::DBInstance": 63,
    "AWS::SecretsManager::Secret": 512,
}

# Types that show up in the EC2, RDS, KMS and Secrets Manager consoles by their Name tag.
NAME_TAGGED_TYPES = {
    "AWS::EC2::EIP",
    "AWS::EC2::InternetGateway",
    "AWS::EC2::NatGateway",
    "AWS::EC2::RouteTable",
    "AWS::EC2::SecurityGroup",
    "AWS::EC2::Subnet",
    "AWS::EC2::VPC",
    "AWS::EC2::VPCEndpoint",
    "AWS::KMS::Key",
    "AWS::RDS::DBInstance",
    "AWS::RDS::DBParameterGroup",
    "AWS::RDS::DBSubnetGroup",
    "AWS::SecretsManager::Secret",
}

EXPECTED_OUTPUTS = {
    "WebhookUrl",
    "FunctionName",
    "FunctionArn",
    "FunctionLogGroupName",
    "VpcId",
    "PrivateSubnetIds",
    "FunctionSecurityGroupId",
    "DatabaseSecurityGroupId",
    "DbEndpointAddress",
    "DbEndpointPort",
    "DbName",
    "DbMasterSecretArn",
    "WebhookSigningSecretArn",
    "KmsKeyArn",
    "Environment",
    "EnvironmentSuffix",
}
PROD_ONLY_OUTPUTS = {"NatGatewayId"}


def physical_names(rendered: RenderedTemplate) -> dict[str, str]:
    """Return the resolved physical name of every resource that sets one, by logical ID."""
    names = {}
    for logical_id, resource in rendered.resources.items():
        path = PHYSICAL_NAME_PROPERTIES.get(resource["Type"])
        if path is None:
            continue
        value: Any = resource.get("Properties", {})
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None:
            names[logical_id] = rendered.resolve(value)
    return names


def export_names(rendered: RenderedTemplate) -> set[str]:
    """Return the resolved Export names of the Outputs."""
    return {rendered.resolve(output["Export"]["Name"]) for output in rendered.outputs.values()}


def name_tag(resource: dict[str, Any]) -> Any:
    """Return the raw value of a resource's Name tag, or None when it has none."""
    tags = resource.get("Properties", {}).get("Tags")
    if isinstance(tags, dict):
        return tags.get("Name")
    for tag in tags or []:
        if tag.get("Key") == "Name":
            return tag.get("Value")
    return None


def test_environment_parameter_has_no_default() -> None:
    """Environment must be chosen for every deployment."""
    parameter = load_template()["Parameters"]["Environment"]
    assert "Default" not in parameter
    assert parameter["AllowedValues"] == ["dev", "staging", "prod"]


def test_suffix_parameter_has_no_default() -> None:
    """EnvironmentSuffix must be chosen for every deployment."""
    assert "Default" not in load_template()["Parameters"]["EnvironmentSuffix"]


@pytest.mark.parametrize("suffix", ["abcd", "alice1", "pr42", "abcdefgh1234"])
def test_suffix_pattern_accepts_valid_value(suffix: str) -> None:
    """Lowercase letters and digits, 4 to 12 of them, pass the AllowedPattern."""
    pattern = load_template()["Parameters"]["EnvironmentSuffix"]["AllowedPattern"]
    assert re.fullmatch(pattern, suffix)


@pytest.mark.parametrize("suffix", ["abc", "abcdefghijklm", "Alice1", "dev_1", "dev-1", "dev 1", ""])
def test_suffix_pattern_rejects_invalid_value(suffix: str) -> None:
    """Too short, too long, capitals, punctuation and spaces fail the AllowedPattern."""
    pattern = load_template()["Parameters"]["EnvironmentSuffix"]["AllowedPattern"]
    assert re.fullmatch(pattern, suffix) is None


def test_suffix_constraint_description_names_fix() -> None:
    """The error CloudFormation shows for an invalid suffix describes a valid one."""
    description = load_template()["Parameters"]["EnvironmentSuffix"]["ConstraintDescription"]
    assert "4-12" in description
    assert "lowercase letters or digits" in description


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_physical_names_carry_environment_and_suffix(environment: str) -> None:
    """Every physical name the template sets contains '<environment>-<suffix>'."""
    rendered = render_template(environment, "alpha1")
    names = physical_names(rendered)
    assert len(names) >= 8
    for logical_id, name in names.items():
        assert f"{environment}-alpha1" in name, logical_id


def test_longest_suffix_fits_name_limits() -> None:
    """With the longest environment and a 12-character suffix, every name fits its service's limit."""
    rendered = render_template("staging", "abcdefghijkl")
    for logical_id, name in physical_names(rendered).items():
        limit = PHYSICAL_NAME_MAX_LENGTH[rendered.resources[logical_id]["Type"]]
        assert len(name) <= limit, f"{logical_id}: '{name}' is longer than {limit}"


def test_database_identifier_is_valid() -> None:
    """The database identifier starts with a letter and has no doubled or trailing hyphen."""
    rendered = render_template("staging", "abcdefghijkl")
    identifier = rendered.resolve(rendered.properties("Database")["DBInstanceIdentifier"])
    assert re.fullmatch(r"[a-z](?:[a-z0-9]|-(?!-))*[a-z0-9]", identifier)


@pytest.mark.parametrize("resource_type", sorted(PHYSICAL_NAME_PROPERTIES))
def test_named_types_always_set_name(resource_type: str) -> None:
    """Resources of a named type never fall back to a generated name."""
    rendered = render_template("prod", "alpha1")
    resources = rendered.resources_of_type(resource_type)
    assert resources, f"no {resource_type} in the template"
    assert set(physical_names(rendered)) >= set(resources)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_name_tags_carry_environment_and_suffix(environment: str) -> None:
    """Every Name tag contains '<environment>-<suffix>'."""
    rendered = render_template(environment, "alpha1")
    tagged = {logical_id: name_tag(resource) for logical_id, resource in rendered.resources.items()}
    tagged = {logical_id: value for logical_id, value in tagged.items() if value is not None}
    assert tagged
    for logical_id, value in tagged.items():
        assert f"{environment}-alpha1" in rendered.resolve(value), logical_id


def test_console_listed_resources_have_name_tag() -> None:
    """Network, database, key and secret resources carry a Name tag."""
    rendered = render_template("prod", "alpha1")
    missing = [
        logical_id
        for logical_id, resource in rendered.resources.items()
        if resource["Type"] in NAME_TAGGED_TYPES and name_tag(resource) is None
    ]
    assert missing == []


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_two_suffixes_have_disjoint_physical_names(environment: str) -> None:
    """Two copies of one environment in one account and region share no physical name."""
    first = set(physical_names(render_template(environment, "alpha1")).values())
    second = set(physical_names(render_template(environment, "beta2")).values())
    assert first
    assert first.isdisjoint(second)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_two_suffixes_have_disjoint_export_names(environment: str) -> None:
    """Two copies of one environment export no Output under the same name."""
    first = export_names(render_template(environment, "alpha1"))
    second = export_names(render_template(environment, "beta2"))
    assert first
    assert first.isdisjoint(second)


def test_environments_with_same_suffix_have_disjoint_names() -> None:
    """dev, staging and prod with one suffix share no physical name."""
    names = [set(physical_names(render_template(environment, "alpha1")).values()) for environment in ENVIRONMENTS]
    assert names[0].isdisjoint(names[1])
    assert names[0].isdisjoint(names[2])
    assert names[1].isdisjoint(names[2])


@pytest.mark.parametrize("environment", ["dev", "staging"])
def test_outputs_without_nat_outside_prod(environment: str) -> None:
    """dev and staging have every contract Output except NatGatewayId."""
    assert set(render_template(environment, "alpha1").outputs) == EXPECTED_OUTPUTS


def test_prod_outputs_include_nat_gateway() -> None:
    """prod has every contract Output, NatGatewayId included."""
    assert set(render_template("prod", "alpha1").outputs) == EXPECTED_OUTPUTS | PROD_ONLY_OUTPUTS


def test_every_output_exported_under_stack_name() -> None:
    """Each Output is exported as '${AWS::StackName}-<OutputKey>'."""
    rendered = render_template("prod", "alpha1")
    for output_key, output in rendered.outputs.items():
        assert output["Export"]["Name"] == {"Fn::Sub": f"${{AWS::StackName}}-{output_key}"}, output_key


def test_export_names_use_deployed_stack_name() -> None:
    """Export names start with the stack name, which carries environment and suffix."""
    rendered = render_template("staging", "alpha1")
    prefix = default_stack_name("staging", "alpha1") + "-"
    assert all(name.startswith(prefix) for name in export_names(rendered))


def test_webhook_url_output_is_route_url() -> None:
    """WebhookUrl is the HTTPS URL of the POST route, including its path."""
    value = render_template("dev", "alpha1").outputs["WebhookUrl"]["Value"]
    assert value == {
        "Fn::Sub": "https://${WebhookHttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/webhooks/payments"
    }


def test_private_subnet_ids_output_joins_both_subnets() -> None:
    """PrivateSubnetIds lists both private subnets, comma-separated."""
    value = render_template("dev", "alpha1").outputs["PrivateSubnetIds"]["Value"]
    assert value == {"Fn::Join": [",", [{"Ref": "PrivateSubnet1"}, {"Ref": "PrivateSubnet2"}]]}


def test_parameter_echo_outputs() -> None:
    """The Environment and EnvironmentSuffix Outputs echo the parameters."""
    rendered = render_template("staging", "alpha1")
    assert rendered.resolve(rendered.outputs["Environment"]["Value"]) == "staging"
    assert rendered.resolve(rendered.outputs["EnvironmentSuffix"]["Value"]) == "alpha1"


def test_logical_ids_name_no_environment() -> None:
    """No resource is a per-environment copy: no logical ID names dev, staging or prod."""
    template = load_template()
    sections = [*template["Resources"], *template.get("Outputs", {}), *template.get("Conditions", {})]
    per_environment = [name for name in sections if re.search(r"dev|staging|prod", name, re.IGNORECASE)]
    assert per_environment == ["IsProd"]


def test_template_uses_no_loop_transform() -> None:
    """The template uses only the SAM transform, so no Fn::ForEach copies resources."""
    template = load_template()
    assert template["Transform"] == "AWS::Serverless-2016-10-31"
    assert "Fn::ForEach" not in repr(template)


def test_dev_and_staging_render_same_resources() -> None:
    """dev and staging differ only in parameter values, not in resources."""
    assert set(render_template("dev", "alpha1").resources) == set(render_template("staging", "alpha1").resources)


def test_prod_adds_only_prod_resources() -> None:
    """prod has dev's resources plus exactly those under the IsProd condition."""
    dev = render_template("dev", "alpha1")
    prod = render_template("prod", "alpha1")
    assert set(prod.resources) - set(dev.resources) == dev.dropped_resources
    assert set(dev.resources) <= set(prod.resources)
