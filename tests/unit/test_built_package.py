"""The package that ``sam build`` produced, checked against what template.yaml declares.

The built package is what Lambda runs, so it must work on its own. Each function's
handler must import in a fresh interpreter whose ``sys.path`` contains only the build
folder and the standard library. Every compiled file in it must target the function's
architecture and Python version. ``make test`` builds first; without a build these tests are skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from samtranslator.yaml_helper import yaml_parse

from local_stack.runtime import (
    ELF_MACHINE_BY_ARCHITECTURE,
    extension_tag,
    find_compiled_files,
    first_stale_file,
    read_elf_machine,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = PROJECT_ROOT / "template.yaml"
SOURCE_DIR = PROJECT_ROOT / "src"
BUILD_DIR = PROJECT_ROOT / ".aws-sam" / "build"

pytestmark = pytest.mark.skipif(
    not BUILD_DIR.is_dir(), reason=f"{BUILD_DIR} is missing: run `make build` first (make test builds)"
)


def _template() -> dict[str, Any]:
    return yaml_parse(TEMPLATE_PATH.read_text())


def _functions_built_from_sources() -> dict[str, dict[str, Any]]:
    """Return the template's functions whose CodeUri is src/, with Globals.Function applied."""
    template = _template()
    globals_ = (template.get("Globals") or {}).get("Function") or {}
    functions = {}
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        properties = {**globals_, **(resource.get("Properties") or {})}
        if str(properties.get("CodeUri", "")).rstrip("/") == "src":
            functions[logical_id] = properties
    return functions


FUNCTIONS = _functions_built_from_sources()

# The import check runs in this script, in an interpreter started with -I -S: no
# site-packages, no PYTHON* variables, no current folder on sys.path.
IMPORT_CHECK = textwrap.dedent(
    """
    import importlib
    import json
    import sys

    package_dir, handler = sys.argv[1], sys.argv[2]
    sys.path.insert(0, package_dir)
    module_name, _, attribute = handler.rpartition(".")
    module = importlib.import_module(module_name)
    loaded_from = sorted(
        {getattr(loaded, "__file__", None) or "" for loaded in list(sys.modules.values())} - {""}
    )
    print(json.dumps({
        "module_file": module.__file__,
        "handler_callable": callable(getattr(module, attribute, None)),
        "sys_path": sys.path,
        "base_prefix": sys.base_prefix,
        "loaded_from": loaded_from,
        "version": list(sys.version_info[:2]),
    }))
    """
)


def _package_dir(logical_id: str) -> Path:
    return BUILD_DIR / logical_id


def _import_in_isolation(logical_id: str, handler: str) -> dict[str, Any]:
    # The function's variables are present (with unreachable values) because Lambda sets
    # them before the import; the import itself must not connect anywhere.
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "LANG": "en_US.UTF-8",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": logical_id,
        "DB_HOST": "127.0.0.1",
        "DB_PORT": "1",
        "DB_NAME": "payments",
        "DB_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db",
        "DB_SSLMODE": "disable",
        "SIGNING_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:signing",
    }
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", IMPORT_CHECK, str(_package_dir(logical_id)), handler],
        env=environment,
        cwd=_package_dir(logical_id),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"{handler} does not import from {_package_dir(logical_id)}:\n{result.stderr}"
    return json.loads(result.stdout)


def test_template_has_functions_built_from_sources() -> None:
    """The template builds at least the webhook function from src/."""
    assert "PaymentWebhookFunction" in FUNCTIONS


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_build_matches_sources(logical_id: str) -> None:
    """The built package contains the current src/, so these tests check the code in the repository."""
    stale = first_stale_file(_package_dir(logical_id), SOURCE_DIR)

    assert stale is None, f"{stale} in {_package_dir(logical_id)} differs from src/: run `make build`"


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_handler_imports_from_build_alone(logical_id: str) -> None:
    """The handler imports with only the build folder and the standard library on sys.path."""
    properties = FUNCTIONS[logical_id]
    package_dir = str(_package_dir(logical_id))

    report = _import_in_isolation(logical_id, properties["Handler"])

    assert report["handler_callable"] is True
    assert report["module_file"].startswith(package_dir + os.sep)
    assert [entry for entry in report["sys_path"] if "site-packages" in entry] == []
    outside = [
        path
        for path in report["loaded_from"]
        if not path.startswith(package_dir + os.sep) and not path.startswith(report["base_prefix"] + os.sep)
    ]
    assert outside == [], "modules loaded from outside the build folder and the standard library"


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_import_check_runs_declared_python(logical_id: str) -> None:
    """The isolated interpreter is the Python version the template's Runtime declares."""
    runtime = FUNCTIONS[logical_id]["Runtime"]

    assert f"python{sys.version_info.major}.{sys.version_info.minor}" == runtime


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_compiled_files_match_architecture(logical_id: str) -> None:
    """Every shared object in the package is an ELF file for the function's architecture."""
    architecture = FUNCTIONS[logical_id]["Architectures"][0]
    expected_machine = ELF_MACHINE_BY_ARCHITECTURE[architecture]
    package_dir = _package_dir(logical_id)

    wrong = {
        str(path.relative_to(package_dir)): read_elf_machine(path)
        for path in find_compiled_files(package_dir)
        if read_elf_machine(path) != expected_machine
    }

    assert wrong == {}, f"expected ELF machine {expected_machine} ({architecture}) for every compiled file"


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_extensions_match_python_version(logical_id: str) -> None:
    """Every extension module is tagged for the function's CPython version and architecture, or abi3."""
    properties = FUNCTIONS[logical_id]
    version = properties["Runtime"].removeprefix("python").replace(".", "")
    machine = {"arm64": "aarch64", "x86_64": "x86_64"}[properties["Architectures"][0]]
    accepted = {"abi3", f"cpython-{version}-{machine}-linux-gnu"}
    package_dir = _package_dir(logical_id)

    wrong = {}
    for path in find_compiled_files(package_dir):
        relative = path.relative_to(package_dir)
        in_bundled_libraries = any(part.endswith(".libs") for part in relative.parts)
        if not path.name.endswith(".so") or in_bundled_libraries:
            # Shared libraries that wheels bundle (libfoo.so.1, <package>.libs/) are not
            # extension modules; the architecture test covers them.
            continue
        tag = extension_tag(path)
        if tag not in accepted:
            wrong[str(relative)] = tag or "no tag"

    assert wrong == {}, f"expected one of {sorted(accepted)} in every extension module's file name"
