"""Network of template.yaml: zones, production-only NAT, security groups and VPC endpoints."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.unit.template_render import (
    ENVIRONMENTS,
    TEMPLATE_PATH,
    RenderedTemplate,
    iter_nodes,
    load_template,
    render_template,
)

NAT_RESOURCE_TYPES = {"AWS::EC2::NatGateway", "AWS::EC2::EIP", "AWS::EC2::InternetGateway"}
PROD_ONLY_RESOURCES = {
    "InternetGateway",
    "InternetGatewayAttachment",
    "PublicSubnet",
    "PublicRouteTable",
    "PublicDefaultRoute",
    "PublicSubnetRouteTableAssociation",
    "NatGatewayElasticIp",
    "NatGateway",
    "PrivateDefaultRoute",
}
FUNCTION_GROUPS = {"FunctionSecurityGroup", "MigrationFunctionSecurityGroup"}
PRIVATE_SUBNETS = [{"Ref": "PrivateSubnet1"}, {"Ref": "PrivateSubnet2"}]

# Region names such as eu-west-1 or us-gov-east-1, and zone names such as eu-west-1a.
REGION_NAME = re.compile(r"\b[a-z]{2}-(?:gov-|iso[a-z]?-)?[a-z]+-\d[a-z]?\b")


def group_id(logical_id: str) -> dict[str, Any]:
    """Return the template expression for a security group's ID."""
    return {"Fn::GetAtt": [logical_id, "GroupId"]}


def ingress_rules(rendered: RenderedTemplate, group: str) -> list[dict[str, Any]]:
    """Return the inline and standalone ingress rules of one security group."""
    rules = list(rendered.properties(group).get("SecurityGroupIngress", []))
    for ingress in rendered.resources_of_type("AWS::EC2::SecurityGroupIngress").values():
        if ingress["Properties"]["GroupId"] == group_id(group):
            rules.append(ingress["Properties"])
    return rules


def all_ingress_rules(rendered: RenderedTemplate) -> list[dict[str, Any]]:
    """Return every ingress rule in the template, inline or standalone."""
    rules = []
    for group in rendered.resources_of_type("AWS::EC2::SecurityGroup"):
        rules.extend(ingress_rules(rendered, group))
    return rules


def test_template_text_names_no_region_or_zone() -> None:
    """No region or zone name is written anywhere in the template."""
    text = TEMPLATE_PATH.read_text(encoding="utf-8")
    assert REGION_NAME.findall(text) == []


def test_region_pattern_finds_region_and_zone_names() -> None:
    """The region pattern used above finds the names it is meant to find."""
    text = "ServiceName: com.amazonaws.eu-west-1.s3 in us-east-1a and us-gov-west-1"
    assert REGION_NAME.findall(text) == ["eu-west-1", "us-east-1a", "us-gov-west-1"]


def test_endpoint_service_names_use_region_parameter() -> None:
    """VPC endpoint service names take the region from AWS::Region."""
    rendered = render_template("dev", "alpha1")
    service_names = {
        logical_id: endpoint["Properties"]["ServiceName"]
        for logical_id, endpoint in rendered.resources_of_type("AWS::EC2::VPCEndpoint").items()
    }
    assert service_names == {
        "S3GatewayEndpoint": {"Fn::Sub": "com.amazonaws.${AWS::Region}.s3"},
        "SecretsManagerEndpoint": {"Fn::Sub": "com.amazonaws.${AWS::Region}.secretsmanager"},
    }


@pytest.mark.parametrize("environment", ["dev", "staging"])
def test_no_nat_gateway_outside_prod(environment: str) -> None:
    """dev and staging have no NAT gateway, Elastic IP or internet gateway."""
    rendered = render_template(environment, "alpha1")
    found = [logical_id for logical_id, resource in rendered.resources.items() if resource["Type"] in NAT_RESOURCE_TYPES]
    assert found == []


@pytest.mark.parametrize("environment", ["dev", "staging"])
def test_no_route_to_nat_outside_prod(environment: str) -> None:
    """dev and staging have no route through a NAT gateway or to the internet."""
    rendered = render_template(environment, "alpha1")
    routes = rendered.resources_of_type("AWS::EC2::Route")
    assert routes == {}


@pytest.mark.parametrize("environment", ["dev", "staging"])
def test_nothing_points_at_nat_outside_prod(environment: str) -> None:
    """No remaining resource or Output mentions a production-only resource."""
    rendered = render_template(environment, "alpha1")
    assert rendered.dropped_resources == PROD_ONLY_RESOURCES
    mentions = {logical_id for logical_id in rendered.resources if rendered.references(logical_id) & PROD_ONLY_RESOURCES}
    assert mentions == set()
    assert "NatGatewayId" not in rendered.outputs


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_no_dangling_references(environment: str) -> None:
    """Every Ref, GetAtt, Sub and DependsOn names a resource or parameter that exists."""
    assert render_template(environment, "alpha1").dangling_references() == {}


def test_prod_routes_private_subnets_through_nat() -> None:
    """prod sends the private route table's default route to the NAT gateway."""
    route = render_template("prod", "alpha1").properties("PrivateDefaultRoute")
    assert route["RouteTableId"] == {"Ref": "PrivateRouteTable"}
    assert route["DestinationCidrBlock"] == "0.0.0.0/0"
    assert route["NatGatewayId"] == {"Ref": "NatGateway"}


def test_prod_nat_gateway_uses_elastic_ip() -> None:
    """prod's NAT gateway sits in the public subnet with its Elastic IP."""
    nat = render_template("prod", "alpha1").properties("NatGateway")
    assert nat["AllocationId"] == {"Fn::GetAtt": ["NatGatewayElasticIp", "AllocationId"]}
    assert nat["SubnetId"] == {"Ref": "PublicSubnet"}


def test_prod_exports_nat_gateway_id() -> None:
    """prod exports the NAT gateway's ID."""
    output = render_template("prod", "alpha1").outputs["NatGatewayId"]
    assert output["Value"] == {"Ref": "NatGateway"}


def test_nat_resources_are_conditional_on_prod() -> None:
    """In the source template every NAT-related resource and Output is under IsProd."""
    template = load_template()
    for logical_id in PROD_ONLY_RESOURCES:
        assert template["Resources"][logical_id].get("Condition") == "IsProd", logical_id
    assert template["Outputs"]["NatGatewayId"].get("Condition") == "IsProd"


def test_private_subnets_use_first_two_zones() -> None:
    """The private subnets sit in zones 0 and 1 of the region's zone list."""
    rendered = render_template("dev", "alpha1")
    assert rendered.properties("PrivateSubnet1")["AvailabilityZone"] == {"Fn::Select": [0, {"Fn::GetAZs": ""}]}
    assert rendered.properties("PrivateSubnet2")["AvailabilityZone"] == {"Fn::Select": [1, {"Fn::GetAZs": ""}]}


def test_zone_lookups_use_index_zero_or_one() -> None:
    """Every zone comes from Fn::GetAZs '' at index 0 or 1, which every region has."""
    rendered = render_template("prod", "alpha1")
    zone_selects = [
        node["Fn::Select"]
        for _, node in iter_nodes(rendered.resources)
        if isinstance(node, dict) and "Fn::Select" in node and isinstance(node["Fn::Select"][1], dict)
        and "Fn::GetAZs" in node["Fn::Select"][1]
    ]
    assert len(zone_selects) == 3
    for index, zones in zone_selects:
        assert index in (0, 1)
        assert zones == {"Fn::GetAZs": ""}


def test_zones_only_from_get_azs() -> None:
    """Every AvailabilityZone property is a GetAZs lookup, never a literal."""
    rendered = render_template("prod", "alpha1")
    zone_values = [node for path, node in iter_nodes(rendered.resources) if path and path[-1] == "AvailabilityZone"]
    assert zone_values
    assert all(isinstance(value, dict) and "Fn::Select" in value for value in zone_values)


def test_database_subnet_group_spans_both_private_subnets() -> None:
    """The DB subnet group lists both private subnets, so RDS can use either zone."""
    rendered = render_template("dev", "alpha1")
    assert rendered.properties("DatabaseSubnetGroup")["SubnetIds"] == PRIVATE_SUBNETS
    assert rendered.properties("Database")["DBSubnetGroupName"] == {"Ref": "DatabaseSubnetGroup"}


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_database_has_no_availability_zone(environment: str) -> None:
    """RDS picks the database's zone from the subnet group."""
    assert "AvailabilityZone" not in render_template(environment, "alpha1").properties("Database")


def test_webhook_function_has_own_security_group() -> None:
    """The webhook function runs in both private subnets with a group of its own."""
    vpc_config = render_template("dev", "alpha1").properties("PaymentWebhookFunction")["VpcConfig"]
    assert vpc_config["SubnetIds"] == PRIVATE_SUBNETS
    assert vpc_config["SecurityGroupIds"] == [group_id("FunctionSecurityGroup")]


def test_migration_function_in_private_subnets() -> None:
    """The migration function runs in both private subnets with its own group."""
    vpc_config = render_template("dev", "alpha1").properties("MigrationFunction")["VpcConfig"]
    assert vpc_config["SubnetIds"] == PRIVATE_SUBNETS
    assert vpc_config["SecurityGroupIds"] == [group_id("MigrationFunctionSecurityGroup")]


def test_security_groups_are_distinct() -> None:
    """Function, migration function, database and endpoint each have their own group."""
    groups = render_template("dev", "alpha1").resources_of_type("AWS::EC2::SecurityGroup")
    assert set(groups) == FUNCTION_GROUPS | {"DatabaseSecurityGroup", "SecretsManagerEndpointSecurityGroup"}


def test_database_admits_postgres_from_functions_only() -> None:
    """The database's group admits TCP 5432 from the function groups and nothing else."""
    rules = ingress_rules(render_template("dev", "alpha1"), "DatabaseSecurityGroup")
    sources = []
    for rule in rules:
        assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 5432, 5432)
        assert set(rule) & {"CidrIp", "CidrIpv6", "SourcePrefixListId"} == set()
        sources.append(rule["SourceSecurityGroupId"])
    assert sorted(map(str, sources)) == sorted(str(group_id(group)) for group in FUNCTION_GROUPS)


def test_endpoint_admits_https_from_functions_only() -> None:
    """The Secrets Manager endpoint's group admits TCP 443 from the function groups only."""
    rules = ingress_rules(render_template("dev", "alpha1"), "SecretsManagerEndpointSecurityGroup")
    sources = []
    for rule in rules:
        assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 443, 443)
        assert set(rule) & {"CidrIp", "CidrIpv6", "SourcePrefixListId"} == set()
        sources.append(rule["SourceSecurityGroupId"])
    assert sorted(map(str, sources)) == sorted(str(group_id(group)) for group in FUNCTION_GROUPS)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_no_ingress_from_anywhere(environment: str) -> None:
    """No ingress rule admits 0.0.0.0/0 or ::/0."""
    rules = all_ingress_rules(render_template(environment, "alpha1"))
    assert rules
    assert [rule for rule in rules if rule.get("CidrIp") == "0.0.0.0/0" or rule.get("CidrIpv6") == "::/0"] == []


def test_function_groups_admit_nothing() -> None:
    """Nothing connects to the functions, so their groups have no ingress rules."""
    rendered = render_template("dev", "alpha1")
    for group in FUNCTION_GROUPS:
        assert ingress_rules(rendered, group) == [], group


def test_webhook_function_egress_only_to_database_and_endpoint() -> None:
    """The webhook function may connect to the database and the endpoint, nowhere else."""
    egress = render_template("dev", "alpha1").properties("FunctionSecurityGroup")["SecurityGroupEgress"]
    targets = {(rule["FromPort"], str(rule.get("DestinationSecurityGroupId"))) for rule in egress}
    assert targets == {
        (5432, str(group_id("DatabaseSecurityGroup"))),
        (443, str(group_id("SecretsManagerEndpointSecurityGroup"))),
    }


def test_migration_function_egress_adds_https_for_s3() -> None:
    """The migration function may also make HTTPS requests, for the S3 response URL."""
    egress = render_template("dev", "alpha1").properties("MigrationFunctionSecurityGroup")["SecurityGroupEgress"]
    open_rules = [rule for rule in egress if "CidrIp" in rule]
    assert [(rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) for rule in open_rules] == [("tcp", 443, 443)]


@pytest.mark.parametrize("group", ["DatabaseSecurityGroup", "SecretsManagerEndpointSecurityGroup"])
def test_server_groups_replace_default_egress(group: str) -> None:
    """Database and endpoint groups replace the default allow-all egress rule."""
    egress = render_template("dev", "alpha1").properties(group)["SecurityGroupEgress"]
    assert [rule["CidrIp"] for rule in egress] == ["127.0.0.1/32"]


def test_secrets_manager_endpoint_has_private_dns() -> None:
    """The Secrets Manager interface endpoint resolves the standard hostname with private DNS."""
    endpoint = render_template("dev", "alpha1").properties("SecretsManagerEndpoint")
    assert endpoint["VpcEndpointType"] == "Interface"
    assert endpoint["PrivateDnsEnabled"] is True
    assert endpoint["SecurityGroupIds"] == [group_id("SecretsManagerEndpointSecurityGroup")]


@pytest.mark.parametrize(
    ("environment", "subnet_count"),
    [("dev", 1), ("staging", 1), ("prod", 2)],
)
def test_secrets_manager_endpoint_subnets(environment: str, subnet_count: int) -> None:
    """The endpoint spans both private subnets in prod and the first one elsewhere, to save its hourly cost."""
    endpoint = render_template(environment, "alpha1").properties("SecretsManagerEndpoint")
    assert endpoint["SubnetIds"] == PRIVATE_SUBNETS[:subnet_count]


def test_vpc_enables_dns_for_private_endpoint() -> None:
    """Private DNS of an interface endpoint needs DNS support and hostnames on the VPC."""
    vpc = render_template("dev", "alpha1").properties("Vpc")
    assert vpc["EnableDnsSupport"] is True
    assert vpc["EnableDnsHostnames"] is True


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_s3_gateway_endpoint_on_private_route_table(environment: str) -> None:
    """Every environment has the S3 gateway endpoint the custom resource's response needs."""
    endpoint = render_template(environment, "alpha1").properties("S3GatewayEndpoint")
    assert endpoint["VpcEndpointType"] == "Gateway"
    assert endpoint["RouteTableIds"] == [{"Ref": "PrivateRouteTable"}]


def test_private_subnets_use_private_route_table() -> None:
    """Both private subnets are associated with the private route table."""
    associations = render_template("dev", "alpha1").resources_of_type("AWS::EC2::SubnetRouteTableAssociation")
    pairs = {
        (str(association["Properties"]["SubnetId"]), str(association["Properties"]["RouteTableId"]))
        for association in associations.values()
    }
    assert pairs == {(str(subnet), str({"Ref": "PrivateRouteTable"})) for subnet in PRIVATE_SUBNETS}


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_subnets_assign_no_public_ip(environment: str) -> None:
    """No subnet gives instances a public address."""
    subnets = render_template(environment, "alpha1").resources_of_type("AWS::EC2::Subnet")
    assert all(subnet["Properties"]["MapPublicIpOnLaunch"] is False for subnet in subnets.values())
