"""Packaging and static-gate settings of template.yaml: code location, buckets, linter config."""

from __future__ import annotations

import ast
import os
from importlib.metadata import version

import pytest
import yaml

from tests.unit.template_render import ENVIRONMENTS, REPO_ROOT, TEMPLATE_PATH, load_template, render_template

SAM_FUNCTIONS = ("PaymentWebhookFunction", "MigrationFunction")
LINT_SCRIPT = REPO_ROOT / "scripts" / "lint-template.sh"


def sam_function_properties(logical_id: str) -> dict:
    """Return the Properties of a SAM function in the source template."""
    return load_template()["Resources"][logical_id]["Properties"]


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_template_defines_no_bucket(environment: str) -> None:
    """The stack defines no S3 bucket; sam deploy uses SAM's managed artifact bucket."""
    rendered = render_template(environment, "alpha1")
    assert rendered.resources_of_type("AWS::S3::Bucket") == {}


@pytest.mark.parametrize("function", SAM_FUNCTIONS)
def test_code_uri_is_source_folder(function: str) -> None:
    """Both functions deploy the package sam build makes from src/, not a loose file."""
    properties = sam_function_properties(function)
    assert properties["CodeUri"] == "src/"
    assert "InlineCode" not in properties


def test_source_folder_has_requirements() -> None:
    """sam build installs the runtime dependencies listed in src/requirements.txt."""
    assert (REPO_ROOT / "src" / "requirements.txt").is_file()


@pytest.mark.parametrize("function", SAM_FUNCTIONS)
def test_handler_resolves_in_package(function: str) -> None:
    """The Handler names a module under src/ that defines the handler function."""
    module_path, _, function_name = sam_function_properties(function)["Handler"].rpartition(".")
    source_file = REPO_ROOT / "src" / (module_path.replace(".", os.sep) + ".py")
    assert source_file.is_file(), f"{source_file} is missing"
    tree = ast.parse(source_file.read_text(encoding="utf-8"))
    defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert function_name in defined


@pytest.mark.parametrize("function", SAM_FUNCTIONS)
def test_rendered_function_code_comes_from_s3(function: str) -> None:
    """After packaging, each function's code is an S3 object, never inline code."""
    code = render_template("dev", "alpha1").properties(function)["Code"]
    assert set(code) == {"S3Bucket", "S3Key"}


@pytest.mark.parametrize("function", SAM_FUNCTIONS)
def test_function_runtime_architecture_tracing(function: str) -> None:
    """Both functions run Python 3.13 on arm64 with active tracing."""
    properties = render_template("dev", "alpha1").properties(function)
    assert properties["Runtime"] == "python3.13"
    assert properties["Architectures"] == ["arm64"]
    assert properties["TracingConfig"] == {"Mode": "Active"}


def test_webhook_function_size_and_timeout() -> None:
    """The webhook function has 512 MB and a 10-second timeout."""
    properties = render_template("dev", "alpha1").properties("PaymentWebhookFunction")
    assert properties["MemorySize"] == 512
    assert properties["Timeout"] == 10


def test_migration_function_timeout() -> None:
    """The migration function may run for 5 minutes."""
    assert render_template("dev", "alpha1").properties("MigrationFunction")["Timeout"] == 300


def test_checkov_skips_carry_reasons() -> None:
    """Every checkov skip in resource Metadata names a check and explains why it does not apply."""
    skips = []
    for logical_id, resource in load_template()["Resources"].items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            skips.append((logical_id, skip))
    assert skips
    for logical_id, skip in skips:
        assert skip["id"].startswith(("CKV_AWS_", "CKV2_AWS_")), logical_id
        assert len(skip.get("comment", "").split()) >= 6, f"{logical_id} skips {skip['id']} without a reason"


def test_cfn_lint_ignores_are_explained() -> None:
    """Each resource-level cfn-lint ignore has a comment right above it in the template."""
    lines = TEMPLATE_PATH.read_text(encoding="utf-8").splitlines()
    ignore_lines = [index for index, line in enumerate(lines) if line.strip() == "cfn-lint:"]
    assert ignore_lines
    for index in ignore_lines:
        assert lines[index - 1].strip().startswith("#"), f"line {index + 1}: cfn-lint ignore without a comment"


def test_cfnlintrc_appends_serverless_rules() -> None:
    """cfn-lint runs the serverless rules of cfn-lint-serverless on template.yaml."""
    config = yaml.safe_load((REPO_ROOT / ".cfnlintrc").read_text(encoding="utf-8"))
    assert config["templates"] == ["template.yaml"]
    assert config["append_rules"] == ["cfn_lint_serverless.rules"]


def test_serverless_rules_version_pinned() -> None:
    """The installed cfn-lint-serverless is the pinned 0.3.6."""
    assert version("cfn-lint-serverless") == "0.3.6"


def test_checkov_config_scans_template_offline() -> None:
    """checkov scans template.yaml as CloudFormation without downloading anything."""
    config = yaml.safe_load((REPO_ROOT / ".checkov.yaml").read_text(encoding="utf-8"))
    assert config["framework"] == ["cloudformation"]
    assert config["file"] == ["template.yaml"]
    assert config["skip-download"] is True
    assert "skip-check" not in config


def test_lint_script_is_executable() -> None:
    """scripts/lint-template.sh exists and can be run directly."""
    assert LINT_SCRIPT.is_file()
    assert os.access(LINT_SCRIPT, os.X_OK)


def test_lint_script_runs_every_gate() -> None:
    """The lint script runs cfn-lint, sam validate --lint and checkov with telemetry off."""
    script = LINT_SCRIPT.read_text(encoding="utf-8")
    assert 'run_gate "cfn-lint" cfn-lint --config-file .cfnlintrc' in script
    assert 'run_gate "sam validate --lint" sam validate --lint' in script
    assert 'run_gate "checkov" checkov --config-file .checkov.yaml' in script
    assert "SAM_CLI_TELEMETRY=0" in script
