"""Encryption, logging, IAM, HTTP API and function configuration of template.yaml."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.unit.template_render import ENVIRONMENTS, find_references, iter_nodes, render_template

KEY_ARN = {"Fn::GetAtt": ["EncryptionKey", "Arn"]}
KEY_PROPERTIES = {"KmsKeyId", "KmsKeyArn", "KMSKeyId", "PerformanceInsightsKMSKeyId", "KmsMasterKeyId"}
FUNCTIONS = ("PaymentWebhookFunction", "MigrationFunction")
FUNCTION_LOG_GROUPS = {"PaymentWebhookFunction": "FunctionLogGroup", "MigrationFunction": "MigrationFunctionLogGroup"}
FUNCTION_ROLES = {"PaymentWebhookFunction": "PaymentWebhookFunctionRole", "MigrationFunction": "MigrationFunctionRole"}

# Actions that accept no resource ARN, so their statements must name Resource "*":
# the network-interface actions of a VPC function and the X-Ray writes of active tracing.
WILDCARD_RESOURCE_ACTIONS = {
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
}

SHARED_VARIABLES = {
    "DB_HOST",
    "DB_PORT",
    "DB_NAME",
    "DB_SECRET_ARN",
    "DB_SSLMODE",
    "DB_CONNECT_TIMEOUT_SECONDS",
    "SIGNATURE_TOLERANCE_SECONDS",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
    "AWS_ENDPOINT_URL_SECRETS_MANAGER",
}

# CloudWatch Logs accepts only these RetentionInDays values.
LOG_RETENTION_VALUES = {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653}


def as_list(value: Any) -> list[Any]:
    """Return ``value`` as a list (IAM allows a single item where a list is expected)."""
    return value if isinstance(value, list) else [value]


def role_statements(properties: dict[str, Any]) -> list[dict[str, Any]]:
    """Return every statement of a role's inline policies."""
    statements = []
    for policy in properties.get("Policies", []):
        statements.extend(as_list(policy["PolicyDocument"]["Statement"]))
    return statements


def statements_with_action(properties: dict[str, Any], action: str) -> list[dict[str, Any]]:
    """Return the statements of a role that allow ``action``."""
    return [statement for statement in role_statements(properties) if action in as_list(statement["Action"])]


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_every_key_reference_is_key_arn(environment: str) -> None:
    """Every KmsKeyId, KmsKeyArn and similar property is the project key's ARN."""
    rendered = render_template(environment, "alpha1")
    key_values = [(path, node) for path, node in iter_nodes(rendered.resources) if path and path[-1] in KEY_PROPERTIES]
    assert len(key_values) >= 10
    for path, value in key_values:
        assert value == KEY_ARN, "/".join(path)


def test_key_rotation_enabled() -> None:
    """The customer-managed key rotates yearly."""
    assert render_template("dev", "alpha1").properties("EncryptionKey")["EnableKeyRotation"] is True


def test_key_alias_carries_environment_and_suffix() -> None:
    """The key's alias names environment and suffix."""
    rendered = render_template("dev", "alpha1")
    alias = rendered.properties("EncryptionKeyAlias")
    assert rendered.resolve(alias["AliasName"]) == "alias/payment-webhook-dev-alpha1"
    assert alias["TargetKeyId"] == {"Ref": "EncryptionKey"}


def test_key_policy_lets_regional_logs_service_use_key() -> None:
    """The key policy admits CloudWatch Logs of the stack's region for the account's log groups."""
    statements = render_template("dev", "alpha1").properties("EncryptionKey")["KeyPolicy"]["Statement"]
    logs = [statement for statement in statements if statement["Principal"].get("Service")]
    assert len(logs) == 1
    assert logs[0]["Principal"]["Service"] == {"Fn::Sub": "logs.${AWS::Region}.amazonaws.com"}
    assert logs[0]["Condition"] == {
        "ArnLike": {
            "kms:EncryptionContext:aws:logs:arn": {
                "Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:*"
            }
        }
    }


def test_key_policy_refers_to_no_resource() -> None:
    """The key policy names no log group or other resource, so it creates no dependency cycle."""
    rendered = render_template("dev", "alpha1")
    references = find_references(rendered.properties("EncryptionKey")["KeyPolicy"])
    assert references & set(rendered.resources) == set()


def test_key_policy_administrator_is_account() -> None:
    """The account root administers the key, so IAM policies decide who else may use it."""
    statements = render_template("dev", "alpha1").properties("EncryptionKey")["KeyPolicy"]["Statement"]
    principals = [statement["Principal"].get("AWS") for statement in statements if "AWS" in statement["Principal"]]
    assert principals == [{"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}]


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_every_log_group_encrypted_with_key(environment: str) -> None:
    """Each log group is encrypted with the project key."""
    log_groups = render_template(environment, "alpha1").resources_of_type("AWS::Logs::LogGroup")
    assert len(log_groups) == 4
    for logical_id, log_group in log_groups.items():
        assert log_group["Properties"]["KmsKeyId"] == KEY_ARN, logical_id


@pytest.mark.parametrize(("environment", "days"), [("dev", 14), ("staging", 30), ("prod", 365)])
def test_every_log_group_has_retention(environment: str, days: int) -> None:
    """Each log group keeps its events for the environment's retention."""
    rendered = render_template(environment, "alpha1")
    for logical_id, log_group in rendered.resources_of_type("AWS::Logs::LogGroup").items():
        retention = int(rendered.resolve(log_group["Properties"]["RetentionInDays"]))
        assert retention == days, logical_id
        assert retention in LOG_RETENTION_VALUES


@pytest.mark.parametrize("function", FUNCTIONS)
def test_function_logs_to_declared_group(function: str) -> None:
    """Each function writes to its declared log group through LoggingConfig."""
    rendered = render_template("dev", "alpha1")
    log_group = rendered.properties(function)["LoggingConfig"]["LogGroup"]
    assert log_group == {"Ref": FUNCTION_LOG_GROUPS[function]}
    assert rendered.resources[FUNCTION_LOG_GROUPS[function]]["Type"] == "AWS::Logs::LogGroup"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_function_log_group_named_after_function(function: str) -> None:
    """A function's log group is /aws/lambda/<function name>, so nothing else creates it."""
    rendered = render_template("dev", "alpha1")
    function_name = rendered.resolve(rendered.properties(function)["FunctionName"])
    log_group_name = rendered.resolve(rendered.properties(FUNCTION_LOG_GROUPS[function])["LogGroupName"])
    assert log_group_name == f"/aws/lambda/{function_name}"


def test_api_access_logs_go_to_declared_group() -> None:
    """The HTTP API stage writes access logs to the declared API log group."""
    rendered = render_template("dev", "alpha1")
    stages = rendered.resources_of_type("AWS::ApiGatewayV2::Stage")
    assert len(stages) == 1
    (stage,) = stages.values()
    assert stage["Properties"]["AccessLogSettings"]["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}


def test_api_access_log_format_is_json_without_headers() -> None:
    """Access log lines are JSON and carry no request headers, where the signature travels."""
    (stage,) = render_template("dev", "alpha1").resources_of_type("AWS::ApiGatewayV2::Stage").values()
    log_format = stage["Properties"]["AccessLogSettings"]["Format"]
    fields = json.loads(log_format)
    assert {"requestId", "status", "routeKey"} <= set(fields)
    assert "header" not in log_format.lower()


def test_database_log_group_matches_rds_export_name() -> None:
    """RDS exports the PostgreSQL log into the declared group, created before the database."""
    rendered = render_template("dev", "alpha1")
    database = rendered.resources["Database"]
    identifier = rendered.resolve(database["Properties"]["DBInstanceIdentifier"])
    log_group_name = rendered.resolve(rendered.properties("DatabaseLogGroup")["LogGroupName"])
    assert log_group_name == f"/aws/rds/instance/{identifier}/postgresql"
    assert database["Properties"]["EnableCloudwatchLogsExports"] == ["postgresql"]
    assert "DatabaseLogGroup" in as_list(database["DependsOn"])


@pytest.mark.parametrize("role", sorted(FUNCTION_ROLES.values()))
def test_wildcard_resources_only_for_arnless_actions(role: str) -> None:
    """Resource '*' appears only with actions that accept no resource ARN."""
    properties = render_template("prod", "alpha1").properties(role)
    wildcard = [statement for statement in role_statements(properties) if "*" in as_list(statement["Resource"])]
    assert wildcard
    for statement in wildcard:
        assert set(as_list(statement["Action"])) <= WILDCARD_RESOURCE_ACTIONS


@pytest.mark.parametrize("role", sorted(FUNCTION_ROLES.values()))
def test_role_actions_have_no_wildcards(role: str) -> None:
    """No action in the function roles uses a wildcard."""
    actions = [action for statement in role_statements(render_template("dev", "alpha1").properties(role))
               for action in as_list(statement["Action"])]
    assert [action for action in actions if "*" in action] == []


@pytest.mark.parametrize("role", sorted(FUNCTION_ROLES.values()))
def test_roles_use_no_managed_policies(role: str) -> None:
    """The roles carry only inline policies, all visible in the template."""
    assert "ManagedPolicyArns" not in render_template("dev", "alpha1").properties(role)


def test_render_needs_no_managed_policy_lookup() -> None:
    """The SAM transform never asked for a managed policy ARN, so sam validate calls no IAM API."""
    assert render_template("prod", "alpha1").managed_policy_lookups == 0


@pytest.mark.parametrize("function", FUNCTIONS)
def test_function_uses_its_own_role(function: str) -> None:
    """Each function runs with its own explicit role."""
    role = render_template("dev", "alpha1").properties(function)["Role"]
    assert role == {"Fn::GetAtt": [FUNCTION_ROLES[function], "Arn"]}


def test_webhook_role_reads_two_secrets() -> None:
    """The webhook function may read the database secret and the signing secret, nothing else."""
    properties = render_template("dev", "alpha1").properties("PaymentWebhookFunctionRole")
    (statement,) = statements_with_action(properties, "secretsmanager:GetSecretValue")
    assert statement["Resource"] == [
        {"Fn::GetAtt": ["Database", "MasterUserSecret.SecretArn"]},
        {"Ref": "WebhookSigningSecret"},
    ]


def test_migration_role_reads_database_secret_only() -> None:
    """The migration function may read only the database secret."""
    properties = render_template("dev", "alpha1").properties("MigrationFunctionRole")
    (statement,) = statements_with_action(properties, "secretsmanager:GetSecretValue")
    assert statement["Resource"] == {"Fn::GetAtt": ["Database", "MasterUserSecret.SecretArn"]}


@pytest.mark.parametrize("role", sorted(FUNCTION_ROLES.values()))
def test_kms_permissions_scoped_to_key_and_use(role: str) -> None:
    """Every KMS permission names the project key and a condition on how it is used."""
    properties = render_template("dev", "alpha1").properties(role)
    kms_statements = [
        statement for statement in role_statements(properties)
        if any(action.startswith("kms:") for action in as_list(statement["Action"]))
    ]
    assert len(kms_statements) == 2
    for statement in kms_statements:
        assert as_list(statement["Action"]) == ["kms:Decrypt"]
        assert statement["Resource"] == KEY_ARN
        assert statement["Condition"]


@pytest.mark.parametrize("role", sorted(FUNCTION_ROLES.values()))
def test_role_logs_permission_names_own_group(role: str) -> None:
    """A function may write only to its own log group."""
    function = {value: key for key, value in FUNCTION_ROLES.items()}[role]
    properties = render_template("dev", "alpha1").properties(role)
    (statement,) = statements_with_action(properties, "logs:PutLogEvents")
    assert statement["Resource"] == {"Fn::GetAtt": [FUNCTION_LOG_GROUPS[function], "Arn"]}


def test_signing_secret_value_generated() -> None:
    """The signing secret starts with a generated value and is encrypted with the key."""
    rendered = render_template("dev", "alpha1")
    secret = rendered.properties("WebhookSigningSecret")
    assert "GenerateSecretString" in secret
    assert "SecretString" not in secret
    assert secret["KmsKeyId"] == KEY_ARN
    assert rendered.resolve(secret["Name"]) == "payment-webhook-dev-alpha1/webhook-signing"


def test_http_api_route_invokes_function() -> None:
    """POST /webhooks/payments reaches the webhook function with payload format 2.0."""
    api = render_template("dev", "alpha1").properties("WebhookHttpApi")
    integration = api["Body"]["paths"]["/webhooks/payments"]["post"]["x-amazon-apigateway-integration"]
    assert integration["payloadFormatVersion"] == "2.0"
    assert "${PaymentWebhookFunction.Arn}" in integration["uri"]["Fn::Sub"]


def test_http_api_has_single_route() -> None:
    """The API exposes only the webhook route."""
    api = render_template("dev", "alpha1").properties("WebhookHttpApi")
    assert list(api["Body"]["paths"]) == ["/webhooks/payments"]
    assert list(api["Body"]["paths"]["/webhooks/payments"]) == ["post"]


def test_http_api_default_stage_throttles() -> None:
    """The $default stage throttles every route with the rate and burst parameters."""
    (stage,) = render_template("dev", "alpha1").resources_of_type("AWS::ApiGatewayV2::Stage").values()
    assert stage["Properties"]["StageName"] == "$default"
    assert stage["Properties"]["DefaultRouteSettings"] == {
        "ThrottlingRateLimit": {"Ref": "ApiThrottlingRateLimit"},
        "ThrottlingBurstLimit": {"Ref": "ApiThrottlingBurstLimit"},
    }


def test_webhook_environment_matches_contract() -> None:
    """The webhook function gets the shared variables plus the signing secret's ARN."""
    variables = render_template("dev", "alpha1").properties("PaymentWebhookFunction")["Environment"]["Variables"]
    assert set(variables) == SHARED_VARIABLES | {"SIGNING_SECRET_ARN"}
    assert variables["SIGNING_SECRET_ARN"] == {"Ref": "WebhookSigningSecret"}


def test_migration_environment_matches_contract() -> None:
    """The migration function gets the shared variables and not the signing secret."""
    variables = render_template("dev", "alpha1").properties("MigrationFunction")["Environment"]["Variables"]
    assert set(variables) == SHARED_VARIABLES


@pytest.mark.parametrize("function", FUNCTIONS)
def test_function_environment_values(function: str) -> None:
    """Database and Powertools variables have the values the function code expects."""
    rendered = render_template("dev", "alpha1")
    variables = rendered.properties(function)["Environment"]["Variables"]
    assert variables["DB_HOST"] == {"Fn::GetAtt": ["Database", "Endpoint.Address"]}
    assert variables["DB_PORT"] == {"Fn::GetAtt": ["Database", "Endpoint.Port"]}
    assert rendered.resolve(variables["DB_NAME"]) == "payments"
    assert variables["DB_SSLMODE"] == "require"
    assert variables["DB_CONNECT_TIMEOUT_SECONDS"] == "5"
    assert rendered.resolve(variables["SIGNATURE_TOLERANCE_SECONDS"]) == "300"
    assert variables["POWERTOOLS_SERVICE_NAME"] == "payment-webhook"
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "PaymentWebhook"
    assert variables["POWERTOOLS_LOG_LEVEL"] == "INFO"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_function_environment_sets_no_endpoint_override(function: str) -> None:
    """In AWS the functions reach Secrets Manager through private DNS, not an endpoint URL."""
    variables = render_template("dev", "alpha1").properties(function)["Environment"]["Variables"]
    assert variables["AWS_ENDPOINT_URL_SECRETS_MANAGER"] == ""
    assert "AWS_ENDPOINT_URL" not in variables
    assert "AWS_REGION" not in variables
