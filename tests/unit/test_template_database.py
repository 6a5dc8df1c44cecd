"""Database of template.yaml: managed password, TLS, backups, connection budget, migrations."""

from __future__ import annotations

import pytest

from tests.unit.template_render import ENVIRONMENTS, iter_nodes, load_template, render_template

KEY_ARN = {"Fn::GetAtt": ["EncryptionKey", "Arn"]}
MANAGED_SECRET_ARN = {"Fn::GetAtt": ["Database", "MasterUserSecret.SecretArn"]}
FUNCTIONS = ("PaymentWebhookFunction", "MigrationFunction")

# Nominal memory of each allowed class in GiB (AWS instance class specifications).
CLASS_MEMORY_GIB = {
    "db.t4g.micro": 1,
    "db.t4g.small": 2,
    "db.t4g.medium": 4,
    "db.t4g.large": 8,
    "db.m7g.large": 8,
    "db.r7g.large": 16,
}
# RDS for PostgreSQL's default: max_connections = LEAST(DBInstanceClassMemory / 9531392, 5000).
BYTES_PER_CONNECTION = 9_531_392
# DBInstanceClassMemory is the class's memory minus what RDS keeps for the OS and its own
# processes. 70% of the nominal memory is an estimate below the reported values.
USABLE_MEMORY_FRACTION = 0.70
# Connections the webhook function must leave free: 5 slots PostgreSQL and RDS reserve
# for superusers (superuser_reserved_connections 3, rds.rds_superuser_reserved_connections 2),
# 1 for the migration function and 10 for operators' sessions.
CONNECTION_HEADROOM = 16
# Lambda's default account quota is 1,000, and 100 must stay unreserved.
MAX_RESERVABLE_CONCURRENCY = 900


def estimated_max_connections(instance_class: str) -> int:
    """Estimate max_connections of an instance class under the RDS default formula."""
    usable_bytes = CLASS_MEMORY_GIB[instance_class] * 2**30 * USABLE_MEMORY_FRACTION
    return min(int(usable_bytes // BYTES_PER_CONNECTION), 5000)


def test_database_manages_master_password() -> None:
    """RDS generates the master password and keeps it in a secret encrypted with the key."""
    database = render_template("dev", "alpha1").properties("Database")
    assert database["ManageMasterUserPassword"] is True
    assert "MasterUserPassword" not in database
    assert database["MasterUserSecret"] == {"KmsKeyId": KEY_ARN}


def test_no_password_parameter() -> None:
    """No parameter carries a password."""
    parameters = load_template()["Parameters"]
    assert [name for name in parameters if "password" in name.lower()] == []


def test_no_password_property_anywhere() -> None:
    """No property in the template sets a password or a secret string."""
    rendered = render_template("prod", "alpha1")
    keys = {path[-1] for path, _ in iter_nodes(rendered.resources) if path}
    assert "MasterUserPassword" not in keys
    assert "SecretString" not in keys
    assert "Password" not in keys


@pytest.mark.parametrize("function", FUNCTIONS)
def test_functions_read_managed_secret(function: str) -> None:
    """Both functions get the RDS-managed secret's ARN, never its value."""
    variables = render_template("dev", "alpha1").properties(function)["Environment"]["Variables"]
    assert variables["DB_SECRET_ARN"] == MANAGED_SECRET_ARN


def test_database_secret_output_is_managed_secret() -> None:
    """DbMasterSecretArn exports the secret RDS manages."""
    assert render_template("dev", "alpha1").outputs["DbMasterSecretArn"]["Value"] == MANAGED_SECRET_ARN


def test_parameter_group_forces_tls() -> None:
    """The database's parameter group sets rds.force_ssl, so plain connections fail."""
    rendered = render_template("dev", "alpha1")
    assert rendered.properties("Database")["DBParameterGroupName"] == {"Ref": "DatabaseParameterGroup"}
    assert rendered.properties("DatabaseParameterGroup")["Parameters"]["rds.force_ssl"] == "1"


def test_parameter_group_family_matches_engine() -> None:
    """The parameter group family is the engine's major version."""
    rendered = render_template("dev", "alpha1")
    database = rendered.properties("Database")
    major = str(database["EngineVersion"]).split(".")[0]
    assert database["Engine"] == "postgres"
    assert rendered.properties("DatabaseParameterGroup")["Family"] == f"postgres{major}"


def test_engine_is_current_major() -> None:
    """The engine is a PostgreSQL major version in standard support."""
    major = int(str(render_template("dev", "alpha1").properties("Database")["EngineVersion"]).split(".")[0])
    assert major >= 16


def test_database_storage_encrypted_with_key() -> None:
    """Storage and Performance Insights data are encrypted with the project's key."""
    database = render_template("dev", "alpha1").properties("Database")
    assert database["StorageEncrypted"] is True
    assert database["KmsKeyId"] == KEY_ARN
    assert database["PerformanceInsightsKMSKeyId"] == KEY_ARN


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_database_not_publicly_accessible(environment: str) -> None:
    """The database has no public address in any environment."""
    assert render_template(environment, "alpha1").properties("Database")["PubliclyAccessible"] is False


@pytest.mark.parametrize(("environment", "days"), [("dev", 1), ("staging", 7), ("prod", 7)])
def test_database_backup_retention(environment: str, days: int) -> None:
    """Automated backups are on, kept 7 days in staging and prod and 1 day in dev."""
    rendered = render_template(environment, "alpha1")
    assert int(rendered.resolve(rendered.properties("Database")["BackupRetentionPeriod"])) == days


def test_database_snapshots_on_delete_and_replace() -> None:
    """Deleting or replacing the database leaves a final snapshot."""
    database = render_template("dev", "alpha1").resources["Database"]
    assert database["DeletionPolicy"] == "Snapshot"
    assert database["UpdateReplacePolicy"] == "Snapshot"


def test_key_outlives_snapshot() -> None:
    """The key that encrypts the final snapshot is retained with it."""
    key = render_template("dev", "alpha1").resources["EncryptionKey"]
    assert key["DeletionPolicy"] == "Retain"
    assert key["UpdateReplacePolicy"] == "Retain"


def test_prod_database_multi_az_and_protected() -> None:
    """prod runs the database Multi-AZ with deletion protection."""
    database = render_template("prod", "alpha1").properties("Database")
    assert database["MultiAZ"] is True
    assert database["DeletionProtection"] is True


@pytest.mark.parametrize("environment", ["dev", "staging"])
def test_non_prod_database_single_az_unprotected(environment: str) -> None:
    """dev and staging run single-AZ and can be deleted with their stack."""
    database = render_template(environment, "alpha1").properties("Database")
    assert database["MultiAZ"] is False
    assert database["DeletionProtection"] is False


def test_connection_budget_covers_allowed_classes() -> None:
    """Every DbInstanceClass value has a reserved concurrency, and nothing else does."""
    template = load_template()
    allowed = template["Parameters"]["DbInstanceClass"]["AllowedValues"]
    assert set(template["Mappings"]["DbConnectionBudget"]) == set(allowed)
    assert set(allowed) == set(CLASS_MEMORY_GIB)


@pytest.mark.parametrize("instance_class", sorted(CLASS_MEMORY_GIB))
def test_reserved_concurrency_below_connection_limit(instance_class: str) -> None:
    """Reserved concurrency plus headroom stays under the class's estimated max_connections."""
    budget = load_template()["Mappings"]["DbConnectionBudget"][instance_class]["WebhookReservedConcurrency"]
    assert budget + CONNECTION_HEADROOM <= estimated_max_connections(instance_class)
    assert budget <= MAX_RESERVABLE_CONCURRENCY


def test_connection_estimate_for_smallest_class() -> None:
    """The estimate gives db.t4g.micro 78 connections, below the 112 of its nominal memory."""
    assert estimated_max_connections("db.t4g.micro") == 78


@pytest.mark.parametrize("instance_class", sorted(CLASS_MEMORY_GIB))
def test_webhook_function_reserves_budget_for_class(instance_class: str) -> None:
    """The function's reserved concurrency follows the DbInstanceClass parameter."""
    rendered = render_template("prod", "alpha1", overrides=(("DbInstanceClass", instance_class),))
    reserved = rendered.resolve(rendered.properties("PaymentWebhookFunction")["ReservedConcurrentExecutions"])
    expected = rendered.mappings["DbConnectionBudget"][instance_class]["WebhookReservedConcurrency"]
    assert reserved == expected
    assert rendered.resolve(rendered.properties("Database")["DBInstanceClass"]) == instance_class


def test_reserved_concurrency_can_be_switched_off() -> None:
    """ReservedConcurrencyEnabled=false removes the reservation for low-quota accounts."""
    rendered = render_template("dev", "alpha1", overrides=(("ReservedConcurrencyEnabled", "false"),))
    assert "ReservedConcurrentExecutions" not in rendered.properties("PaymentWebhookFunction")


def test_default_class_is_smallest() -> None:
    """The default database class is db.t4g.micro."""
    assert load_template()["Parameters"]["DbInstanceClass"]["Default"] == "db.t4g.micro"


def test_migrations_run_through_migration_function() -> None:
    """DatabaseMigrations is a custom resource served by the migration function's ARN."""
    migrations = render_template("dev", "alpha1").resources["DatabaseMigrations"]
    assert migrations["Type"] == "Custom::DatabaseMigrations"
    assert migrations["Properties"]["ServiceToken"] == {"Fn::GetAtt": ["MigrationFunction", "Arn"]}


def test_migrations_wait_for_database() -> None:
    """The custom resource depends on the database, so it runs once RDS reports it available."""
    rendered = render_template("dev", "alpha1")
    assert "Database" in rendered.references("DatabaseMigrations")


def test_migrations_wait_for_network_paths() -> None:
    """The custom resource runs only after the function can reach the database, secrets and S3."""
    depends_on = set(render_template("dev", "alpha1").resources["DatabaseMigrations"]["DependsOn"])
    assert {
        "DatabaseIngressFromMigrationFunction",
        "SecretsManagerEndpoint",
        "SecretsManagerEndpointIngressFromMigrationFunction",
        "S3GatewayEndpoint",
    } <= depends_on


def test_migrations_refer_to_function_version() -> None:
    """The custom resource names the migration function's published version."""
    rendered = render_template("dev", "alpha1")
    version_id = rendered.properties("DatabaseMigrations")["MigrationFunctionVersion"]["Ref"]
    version = rendered.resources[version_id]
    assert version["Type"] == "AWS::Lambda::Version"
    assert version["Properties"]["FunctionName"] == {"Ref": "MigrationFunction"}


def test_migrations_rerun_when_code_changes() -> None:
    """New code gives a new version, so the custom resource's properties change and it updates."""
    first = render_template("dev", "alpha1", code_uri="s3://bucket/payment-webhook/aaaa")
    second = render_template("dev", "alpha1", code_uri="s3://bucket/payment-webhook/bbbb")
    first_version = first.properties("DatabaseMigrations")["MigrationFunctionVersion"]
    second_version = second.properties("DatabaseMigrations")["MigrationFunctionVersion"]
    assert first_version != second_version


def test_migrations_stable_when_code_unchanged() -> None:
    """Unchanged code keeps the custom resource's properties, so migrations do not rerun."""
    first = render_template("dev", "alpha1", code_uri="s3://bucket/payment-webhook/aaaa")
    again = render_template("dev", "beta2", code_uri="s3://bucket/payment-webhook/aaaa")
    assert first.properties("DatabaseMigrations") == again.properties("DatabaseMigrations")


def test_migrations_time_out_after_function() -> None:
    """CloudFormation waits longer than the function may run, and far less than an hour."""
    rendered = render_template("dev", "alpha1")
    service_timeout = int(rendered.properties("DatabaseMigrations")["ServiceTimeout"])
    function_timeout = int(rendered.properties("MigrationFunction")["Timeout"])
    assert function_timeout < service_timeout < 3600
