"""Render template.yaml offline into the CloudFormation template of one deployment.

Rendering follows the steps of ``sam build`` plus ``sam deploy``, without AWS:

1. Parse the YAML with the CloudFormation-aware loader of aws-sam-translator, so short-form
   tags such as ``!Sub`` become their ``Fn::`` mappings.
2. Point each function's local ``CodeUri`` at a placeholder S3 object, as ``sam package``
   does after ``sam build``; the SAM transform accepts only S3 locations.
3. Run the SAM transform (``samtranslator.translator.transform.transform``) with a managed
   policy loader that returns ARNs from a fixed map and never calls IAM.
4. Evaluate the Conditions for the given parameters: drop resources and Outputs whose
   condition is false, and replace every ``Fn::If`` by the branch it selects
   (``AWS::NoValue`` removes the property).

``RenderedTemplate`` then resolves names, follows references and lists dangling ones.
Nothing here opens a network connection.
"""

from __future__ import annotations

import copy
import functools
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from samtranslator.translator.managed_policy_translator import ManagedPolicyLoader
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
SAMCONFIG_PATH = REPO_ROOT / "samconfig.toml"
INFRA_PARAMS_DIR = REPO_ROOT / "infra_params"

ENVIRONMENTS = ("dev", "staging", "prod")
ACCOUNT_ID = "123456789012"
REGION = "eu-central-1"
PARTITION = "aws"
URL_SUFFIX = "amazonaws.com"
PLACEHOLDER_CODE_URI = "s3://payment-webhook-render-test/payment-webhook/0123456789abcdef"

PSEUDO_PARAMETERS = frozenset(
    {
        "AWS::AccountId",
        "AWS::NotificationARNs",
        "AWS::NoValue",
        "AWS::Partition",
        "AWS::Region",
        "AWS::StackId",
        "AWS::StackName",
        "AWS::URLSuffix",
    }
)

# ${Name} or ${Resource.Attribute} in an Fn::Sub string; ${!Literal} is not a reference.
SUB_VARIABLE = re.compile(r"\$\{([^!}][^}]*)\}")


class UnresolvableValue(ValueError):
    """A value depends on a resource attribute that only exists after deployment."""


class OfflineManagedPolicyLoader(ManagedPolicyLoader):
    """Managed policy loader that returns a fixed map instead of calling IAM.

    ``load_count`` records how often the transform requested the map, so a test can show
    that the template needs no managed-policy lookup at all.
    """

    def __init__(self, policy_arns: Mapping[str, str] | None = None) -> None:
        super().__init__(iam_client=None)  # type: ignore[arg-type]
        self._fixed_policy_arns = dict(policy_arns or {})
        self.load_count = 0

    def load(self) -> dict[str, str]:
        """Return the fixed policy map and count the call."""
        self.load_count += 1
        return dict(self._fixed_policy_arns)


@dataclass(frozen=True)
class RenderedTemplate:
    """The CloudFormation template of one deployment, with its Conditions already applied.

    Treat ``template`` as read-only: renders are cached and shared between tests.
    """

    environment: str
    suffix: str
    parameters: Mapping[str, str]
    pseudo_parameters: Mapping[str, str]
    conditions: Mapping[str, bool]
    template: Mapping[str, Any]
    dropped_resources: frozenset[str]
    dropped_outputs: frozenset[str]
    managed_policy_lookups: int
    mappings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def resources(self) -> Mapping[str, Any]:
        """Resources that exist in this deployment, by logical ID."""
        return self.template["Resources"]

    @property
    def outputs(self) -> Mapping[str, Any]:
        """Outputs that exist in this deployment, by OutputKey."""
        return self.template.get("Outputs", {})

    def resources_of_type(self, resource_type: str) -> dict[str, Mapping[str, Any]]:
        """Return the resources of one CloudFormation type, by logical ID."""
        return {
            logical_id: resource
            for logical_id, resource in self.resources.items()
            if resource["Type"] == resource_type
        }

    def properties(self, logical_id: str) -> Mapping[str, Any]:
        """Return the Properties of one resource (empty when it has none)."""
        return self.resources[logical_id].get("Properties", {})

    def resolve(self, value: Any) -> Any:
        """Resolve parameters, pseudo parameters, Mappings and string functions in ``value``.

        Raises
        ------
        UnresolvableValue
            ``value`` refers to a resource or uses a function this helper does not evaluate.
        """
        return _resolve(value, self._known_values(), self.mappings)

    def resolve_or_none(self, value: Any) -> Any:
        """Resolve ``value`` like ``resolve``, or return None when it depends on a resource."""
        try:
            return self.resolve(value)
        except UnresolvableValue:
            return None

    def references(self, logical_id: str) -> set[str]:
        """Return the logical IDs that one resource names through Ref, GetAtt, Sub or DependsOn."""
        resource = self.resources[logical_id]
        found = find_references(resource.get("Properties", {}))
        depends_on = resource.get("DependsOn", [])
        found.update([depends_on] if isinstance(depends_on, str) else depends_on)
        return found - set(self.parameters) - PSEUDO_PARAMETERS

    def dangling_references(self) -> dict[str, set[str]]:
        """Return, per resource or ``Outputs.<key>``, the names it refers to that do not exist."""
        known = set(self.resources) | set(self.parameters) | PSEUDO_PARAMETERS
        dangling: dict[str, set[str]] = {}
        for logical_id in self.resources:
            missing = self.references(logical_id) - known
            if missing:
                dangling[logical_id] = missing
        for output_key, output in self.outputs.items():
            missing = find_references(output) - known
            if missing:
                dangling[f"Outputs.{output_key}"] = missing
        return dangling

    def _known_values(self) -> dict[str, str]:
        return {**self.parameters, **self.pseudo_parameters}


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """Parse a SAM or CloudFormation template, turning short-form tags into ``Fn::`` mappings."""
    return yaml_parse(path.read_text(encoding="utf-8"))


def default_stack_name(environment: str, suffix: str) -> str:
    """Return the stack name samconfig.toml uses for an environment and suffix."""
    return f"payment-webhook-{environment}-{suffix}"


@functools.cache
def render_template(
    environment: str,
    suffix: str,
    overrides: tuple[tuple[str, str], ...] = (),
    stack_name: str | None = None,
    code_uri: str = PLACEHOLDER_CODE_URI,
) -> RenderedTemplate:
    """Render template.yaml for one deployment.

    Parameters
    ----------
    environment:
        Value of the Environment parameter (dev, staging or prod).
    suffix:
        Value of the EnvironmentSuffix parameter.
    overrides:
        Further parameter values as (name, value) pairs, hashable so renders can be cached.
    stack_name:
        Stack name for ``AWS::StackName``; defaults to the samconfig.toml naming scheme.
    code_uri:
        S3 location that stands in for the package ``sam build`` makes; a different value
        stands for changed code.

    Returns
    -------
    RenderedTemplate
        The transformed template with Conditions applied.

    Raises
    ------
    KeyError
        An override names a parameter the template does not declare.
    """
    source = load_template()
    declared = source.get("Parameters", {})
    values = {"Environment": environment, "EnvironmentSuffix": suffix, **dict(overrides)}
    unknown = sorted(set(values) - set(declared))
    if unknown:
        raise KeyError(f"parameters {unknown} are not declared in template.yaml: remove them or declare them")
    parameters = {
        name: str(values[name]) if name in values else str(declared[name]["Default"])
        for name in declared
        if name in values or "Default" in declared[name]
    }
    pseudo_parameters = {
        "AWS::AccountId": ACCOUNT_ID,
        "AWS::Region": REGION,
        "AWS::Partition": PARTITION,
        "AWS::URLSuffix": URL_SUFFIX,
        "AWS::StackName": stack_name or default_stack_name(environment, suffix),
    }

    packaged = _point_code_at_s3(copy.deepcopy(source), code_uri)
    loader = OfflineManagedPolicyLoader()
    with _translator_region(REGION):
        transformed = transform(packaged, {**parameters, **pseudo_parameters}, loader)

    known_values = {**parameters, **pseudo_parameters}
    mappings = transformed.get("Mappings", {})
    conditions = evaluate_conditions(transformed.get("Conditions", {}), known_values, mappings)
    resolved, dropped_resources, dropped_outputs = apply_conditions(transformed, conditions)
    return RenderedTemplate(
        environment=environment,
        suffix=suffix,
        parameters=parameters,
        pseudo_parameters=pseudo_parameters,
        conditions=conditions,
        template=resolved,
        dropped_resources=frozenset(dropped_resources),
        dropped_outputs=frozenset(dropped_outputs),
        managed_policy_lookups=loader.load_count,
        mappings=mappings,
    )


def evaluate_conditions(
    definitions: Mapping[str, Any], known_values: Mapping[str, str], mappings: Mapping[str, Any]
) -> dict[str, bool]:
    """Evaluate every entry of a template's Conditions section.

    Raises
    ------
    UnresolvableValue
        A condition uses a function that conditions may not use, or a value that is unknown.
    """
    results: dict[str, bool] = {}

    def evaluate(node: Any) -> bool:
        if not isinstance(node, dict) or len(node) != 1:
            raise UnresolvableValue(f"condition {node!r} is not a single condition function")
        (function, argument), = node.items()
        if function == "Condition":
            return evaluate_named(argument)
        if function == "Fn::Equals":
            left, right = argument
            return str(_resolve(left, known_values, mappings)) == str(_resolve(right, known_values, mappings))
        if function == "Fn::Not":
            return not evaluate(argument[0])
        if function == "Fn::And":
            return all(evaluate(item) for item in argument)
        if function == "Fn::Or":
            return any(evaluate(item) for item in argument)
        raise UnresolvableValue(f"{function} is not a condition function")

    def evaluate_named(name: str) -> bool:
        if name not in results:
            results[name] = evaluate(definitions[name])
        return results[name]

    for condition_name in definitions:
        evaluate_named(condition_name)
    return results


_NO_VALUE = object()


def apply_conditions(
    template: Mapping[str, Any], conditions: Mapping[str, bool]
) -> tuple[dict[str, Any], set[str], set[str]]:
    """Drop resources and Outputs whose condition is false and resolve every ``Fn::If``.

    Returns
    -------
    tuple
        The resolved template, the dropped resource IDs and the dropped OutputKeys.
    """
    resolved = copy.deepcopy(dict(template))
    dropped_resources = {
        logical_id
        for logical_id, resource in resolved["Resources"].items()
        if "Condition" in resource and not conditions[resource["Condition"]]
    }
    dropped_outputs = {
        key for key, output in resolved.get("Outputs", {}).items() if "Condition" in output and not conditions[output["Condition"]]
    }
    resolved["Resources"] = {
        logical_id: _select_branches(resource, conditions)
        for logical_id, resource in resolved["Resources"].items()
        if logical_id not in dropped_resources
    }
    resolved["Outputs"] = {
        key: _select_branches(output, conditions)
        for key, output in resolved.get("Outputs", {}).items()
        if key not in dropped_outputs
    }
    return resolved, dropped_resources, dropped_outputs


def find_references(node: Any) -> set[str]:
    """Return every name that ``node`` refers to through Ref, Fn::GetAtt or Fn::Sub."""
    found: set[str] = set()
    if isinstance(node, list):
        for item in node:
            found |= find_references(item)
        return found
    if not isinstance(node, dict):
        return found
    for key, value in node.items():
        if key == "Ref" and isinstance(value, str):
            found.add(value)
        elif key == "Fn::GetAtt":
            found.add(value.split(".", 1)[0] if isinstance(value, str) else value[0])
        elif key == "Fn::Sub":
            found |= _sub_references(value)
        else:
            found |= find_references(value)
    return found


def iter_nodes(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Yield (path, value) for every value nested in ``node``, the node itself first."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from iter_nodes(value, (*path, str(key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from iter_nodes(value, (*path, str(index)))


def _sub_references(argument: Any) -> set[str]:
    if isinstance(argument, str):
        text, variables = argument, {}
    else:
        text, variables = argument[0], argument[1]
    found = {match.split(".", 1)[0] for match in SUB_VARIABLE.findall(text)} - set(variables)
    for value in variables.values():
        found |= find_references(value)
    return found


def _select_branches(node: Any, conditions: Mapping[str, bool]) -> Any:
    if isinstance(node, list):
        items = [_select_branches(item, conditions) for item in node]
        return [item for item in items if item is not _NO_VALUE]
    if not isinstance(node, dict):
        return node
    if set(node) == {"Fn::If"}:
        condition_name, when_true, when_false = node["Fn::If"]
        return _select_branches(when_true if conditions[condition_name] else when_false, conditions)
    if node == {"Ref": "AWS::NoValue"}:
        return _NO_VALUE
    selected = {key: _select_branches(value, conditions) for key, value in node.items()}
    return {key: value for key, value in selected.items() if value is not _NO_VALUE}


def _resolve(value: Any, known_values: Mapping[str, str], mappings: Mapping[str, Any]) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, list):
        return [_resolve(item, known_values, mappings) for item in value]
    if not isinstance(value, dict):
        raise UnresolvableValue(f"unexpected value {value!r}")
    if len(value) != 1:
        return {key: _resolve(item, known_values, mappings) for key, item in value.items()}
    (function, argument), = value.items()
    if function == "Ref":
        if argument in known_values:
            return known_values[argument]
        raise UnresolvableValue(f"Ref {argument} names a resource")
    if function == "Fn::Sub":
        return _resolve_sub(argument, known_values, mappings)
    if function == "Fn::Join":
        separator, items = argument
        return separator.join(str(item) for item in _resolve(items, known_values, mappings))
    if function == "Fn::Select":
        index, items = argument
        return _resolve(items, known_values, mappings)[int(_resolve(index, known_values, mappings))]
    if function == "Fn::FindInMap":
        map_name, top_key, second_key = (_resolve(item, known_values, mappings) for item in argument)
        return mappings[map_name][top_key][second_key]
    if function.startswith("Fn::") or function == "Condition":
        raise UnresolvableValue(f"{function} is not evaluated offline")
    return {function: _resolve(argument, known_values, mappings)}


def _resolve_sub(argument: Any, known_values: Mapping[str, str], mappings: Mapping[str, Any]) -> str:
    if isinstance(argument, str):
        text, variables = argument, {}
    else:
        text = argument[0]
        variables = {name: _resolve(item, known_values, mappings) for name, item in argument[1].items()}
    lookup = {**known_values, **variables}

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in lookup:
            raise UnresolvableValue(f"${{{name}}} names a resource attribute")
        return str(lookup[name])

    return SUB_VARIABLE.sub(substitute, text).replace("${!", "${")


@contextmanager
def _translator_region(region: str) -> Iterator[None]:
    """Give the SAM translator's boto3 session a region; it reads no credentials and calls nothing."""
    previous = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = region
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("AWS_DEFAULT_REGION", None)
        else:
            os.environ["AWS_DEFAULT_REGION"] = previous


def _point_code_at_s3(template: dict[str, Any], code_uri: str) -> dict[str, Any]:
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") == "AWS::Serverless::Function":
            properties = resource.setdefault("Properties", {})
            if isinstance(properties.get("CodeUri"), str) and not properties["CodeUri"].startswith("s3://"):
                properties["CodeUri"] = code_uri
    return template
