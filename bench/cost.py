"""Monthly cost estimate per environment, computed from the rendered template.

``python -m bench.cost`` (``make cost``) renders template.yaml for dev, staging and prod
with the parameters in infra_params/<env>.json, counts the billable resources of each
render, prices them from ``PRICES`` (us-east-1, on-demand) under the traffic assumptions in
``TRAFFIC``, and prints one table per environment with its total. It also prints what two
choices save: the NAT gateway only in prod, and a single-AZ database outside prod.

Each price names the AWS pricing page it belongs to. ``PRICE_DATE`` is the day the figures
were taken. A price marked ``confirmed`` was read in text published by AWS: the pricing
page, a worked example on it, or AWS documentation. The others are estimates taken from
secondary sources, and the table marks them. Free tiers are ignored, so every line is
what a long-standing account pays.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_RENDER_PATH = REPO_ROOT / "tests" / "unit" / "template_render.py"
INFRA_PARAMS_DIR = REPO_ROOT / "infra_params"

ENVIRONMENTS = ("dev", "staging", "prod")
PRICE_REGION = "us-east-1"
PRICE_DATE = "2026-12-04"
HOURS_PER_MONTH = 730
GB_PER_KB = 1.0 / (1024 * 1024)
DEV_TARGET_USD = 30.0


@dataclass(frozen=True)
class Price:
    """One on-demand unit price in us-east-1."""

    usd: float
    unit: str
    source: str
    confirmed: bool
    note: str = ""


RDS_PRICING = "https://aws.amazon.com/rds/postgresql/pricing/"
VPC_PRICING = "https://aws.amazon.com/vpc/pricing/"
PRIVATELINK_PRICING = "https://aws.amazon.com/privatelink/pricing/"
KMS_PRICING = "https://aws.amazon.com/kms/pricing/"
SECRETS_PRICING = "https://aws.amazon.com/secrets-manager/pricing/"
CLOUDWATCH_PRICING = "https://aws.amazon.com/cloudwatch/pricing/"
API_GATEWAY_PRICING = "https://aws.amazon.com/api-gateway/pricing/"
LAMBDA_PRICING = "https://aws.amazon.com/lambda/pricing/"
XRAY_PRICING = "https://aws.amazon.com/xray/pricing/"

# Single-AZ PostgreSQL instance-hours. A Multi-AZ instance deployment costs twice the
# single-AZ rate for these classes (one standby of the same class).
RDS_INSTANCE_HOURLY_USD = {
    "db.t4g.micro": 0.016,
    "db.t4g.small": 0.032,
    "db.t4g.medium": 0.065,
    "db.t4g.large": 0.129,
    "db.m7g.large": 0.168,
    "db.r7g.large": 0.239,
}
MULTI_AZ_FACTOR = 2.0

PRICES: dict[str, Price] = {
    "rds_instance": Price(
        0.0, "instance-hour", RDS_PRICING, False,
        "per class in RDS_INSTANCE_HOURLY_USD; Multi-AZ is twice the single-AZ rate",
    ),
    "rds_gp3_storage": Price(0.115, "GB-month", RDS_PRICING, False, "single-AZ gp3; Multi-AZ is twice this"),
    "nat_gateway_hour": Price(0.045, "NAT gateway-hour", VPC_PRICING, True, "worked example on the VPC pricing page"),
    "nat_gateway_data": Price(0.045, "GB processed", VPC_PRICING, True, "worked example on the VPC pricing page"),
    "public_ipv4_hour": Price(0.005, "public IPv4 address-hour", VPC_PRICING, False, "charged since February 2024"),
    "interface_endpoint_hour": Price(0.01, "endpoint ENI-hour (one per subnet)", PRIVATELINK_PRICING, False),
    "interface_endpoint_data": Price(0.01, "GB processed", PRIVATELINK_PRICING, True, "first PB per month"),
    "kms_key": Price(
        1.00, "key-month", KMS_PRICING, True,
        "first year; with rotation on, each new backing key adds $1 a month (capped at two rotations)",
    ),
    "kms_requests": Price(0.03, "10,000 requests", KMS_PRICING, False, "after 20,000 free requests a month"),
    "secret": Price(0.40, "secret-month", SECRETS_PRICING, True, "the RDS-managed secret is billed too"),
    "secret_api_calls": Price(0.05, "10,000 API calls", SECRETS_PRICING, True),
    "logs_ingestion": Price(0.50, "GB ingested", CLOUDWATCH_PRICING, False, "standard log class"),
    "logs_storage": Price(0.03, "GB-month stored", CLOUDWATCH_PRICING, False),
    "http_api_requests": Price(1.00, "million requests", API_GATEWAY_PRICING, True, "first 300 million a month"),
    "lambda_arm_duration": Price(0.0000133334, "GB-second (arm64)", LAMBDA_PRICING, False),
    "lambda_requests": Price(0.20, "million requests", LAMBDA_PRICING, False),
    "xray_traces": Price(5.00, "million traces recorded", XRAY_PRICING, False),
}


# Resources and charges of the template that the estimate leaves out, and why.
NOT_PRICED = (
    "S3 gateway endpoint, VPC, subnets, route tables, security groups (no charge)",
    "RDS automated backups (free up to the database's storage size; dev keeps 1 day, others 7)",
    "Performance Insights with 7-day retention (free tier of the feature)",
    "the migration function (one invocation per deployment)",
    "data transfer out (webhook responses are under 100 bytes)",
)


@dataclass(frozen=True)
class Traffic:
    """Usage assumptions of one environment; every usage-priced line derives from these."""

    requests_per_month: int
    # Average billed duration, warm and cold invocations together (an assumption, not a
    # measurement). The in-process handler takes 1-3 ms here. In AWS each database round
    # trip adds about 1 ms, and a cold start adds a few hundred ms.
    billed_ms_per_request: float
    cold_start_share: float
    function_log_kb_per_request: float
    api_access_log_kb_per_request: float
    database_log_gb_per_month: float
    nat_gb_per_month: float
    endpoint_gb_per_month: float
    # X-Ray samples the first request each second and 5% of the rest.
    traced_share: float


TRAFFIC = {
    "dev": Traffic(10_000, 40.0, 0.20, 1.2, 0.4, 0.05, 0.0, 0.01, 1.0),
    "staging": Traffic(100_000, 40.0, 0.05, 1.2, 0.4, 0.2, 0.0, 0.05, 1.0),
    "prod": Traffic(1_000_000, 40.0, 0.01, 1.2, 0.4, 1.0, 1.0, 0.2, 0.5),
}


@dataclass(frozen=True)
class CostLine:
    """One priced line of an environment's monthly estimate."""

    service: str
    item: str
    quantity: float
    unit: str
    unit_price_usd: float
    monthly_usd: float
    price_key: str
    confirmed: bool


@dataclass(frozen=True)
class EnvironmentEstimate:
    """Every line of one environment's monthly estimate and its total."""

    environment: str
    lines: tuple[CostLine, ...]

    @property
    def total_usd(self) -> float:
        return round(sum(line.monthly_usd for line in self.lines), 2)


def load_template_render() -> ModuleType:
    """Import tests/unit/template_render.py, the offline renderer the template tests use.

    Raises
    ------
    FileNotFoundError
        The renderer is missing.
    """
    loaded = sys.modules.get("template_render")
    if loaded is not None and Path(getattr(loaded, "__file__", "")).resolve() == TEMPLATE_RENDER_PATH:
        return loaded
    if not TEMPLATE_RENDER_PATH.exists():
        raise FileNotFoundError(f"{TEMPLATE_RENDER_PATH} is missing: the cost model renders the template with it")
    spec = importlib.util.spec_from_file_location("template_render", TEMPLATE_RENDER_PATH)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {TEMPLATE_RENDER_PATH}")
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the module executes.
    sys.modules["template_render"] = module
    spec.loader.exec_module(module)
    return module


def environment_parameters(environment: str) -> dict[str, str]:
    """Return the deploy parameters of ``environment`` from infra_params/<env>.json, if it exists."""
    path = INFRA_PARAMS_DIR / f"{environment}.json"
    if not path.exists():
        return {"Environment": environment, "EnvironmentSuffix": "cost"}
    parameters = json.loads(path.read_text())["Parameters"]
    return {name: str(value) for name, value in parameters.items()}


def render(environment: str) -> Any:
    """Render the template for ``environment`` with its deploy parameters (a ``RenderedTemplate``)."""
    # The SAM translator warns at exit about usage metrics it never publishes offline.
    logging.getLogger("samtranslator").setLevel(logging.ERROR)
    renderer = load_template_render()
    parameters = environment_parameters(environment)
    suffix = parameters.pop("EnvironmentSuffix", "cost")
    parameters.pop("Environment", None)
    return renderer.render_template(environment, suffix, tuple(sorted(parameters.items())))


def _line(service: str, item: str, quantity: float, price_key: str, unit_price: float | None = None) -> CostLine:
    price = PRICES[price_key]
    usd = price.usd if unit_price is None else unit_price
    return CostLine(
        service=service,
        item=item,
        quantity=round(quantity, 4),
        unit=price.unit,
        unit_price_usd=usd,
        monthly_usd=round(quantity * usd, 2),
        price_key=price_key,
        confirmed=price.confirmed,
    )


def estimate(environment: str, rendered: Any, traffic: Traffic | None = None) -> EnvironmentEstimate:
    """Price every billable resource of one rendered environment for a month.

    Parameters
    ----------
    environment:
        dev, staging or prod; selects the traffic assumptions unless ``traffic`` is given.
    rendered:
        A ``RenderedTemplate`` (or anything with ``resources_of_type`` and ``resolve``).
    traffic:
        Usage assumptions; ``TRAFFIC[environment]`` when None.

    Returns
    -------
    EnvironmentEstimate
        One line per priced quantity.

    Raises
    ------
    KeyError
        The database's instance class has no price in ``RDS_INSTANCE_HOURLY_USD``.
    """
    traffic = traffic or TRAFFIC[environment]
    lines: list[CostLine] = []
    lines += _database_lines(rendered)
    lines += _network_lines(rendered, traffic)
    lines += _security_lines(rendered, traffic)
    lines += _compute_lines(rendered, traffic)
    lines += _log_lines(rendered, traffic)
    return EnvironmentEstimate(environment, tuple(lines))


def _database_lines(rendered: Any) -> list[CostLine]:
    lines = []
    for logical_id, resource in rendered.resources_of_type("AWS::RDS::DBInstance").items():
        properties = resource.get("Properties", {})
        instance_class = str(rendered.resolve(properties["DBInstanceClass"]))
        multi_az = str(rendered.resolve(properties.get("MultiAZ", False))).lower() == "true"
        storage_gb = float(rendered.resolve(properties.get("AllocatedStorage", 20)))
        factor = MULTI_AZ_FACTOR if multi_az else 1.0
        deployment = "Multi-AZ" if multi_az else "single-AZ"
        hourly = RDS_INSTANCE_HOURLY_USD[instance_class] * factor
        lines.append(
            _line("RDS", f"{logical_id} {instance_class} {deployment}", HOURS_PER_MONTH, "rds_instance", hourly)
        )
        storage_price = PRICES["rds_gp3_storage"].usd * factor
        lines.append(
            _line("RDS", f"{logical_id} gp3 storage {deployment}", storage_gb, "rds_gp3_storage", storage_price)
        )
    return lines


def _network_lines(rendered: Any, traffic: Traffic) -> list[CostLine]:
    lines = []
    for logical_id in rendered.resources_of_type("AWS::EC2::NatGateway"):
        lines.append(_line("VPC", f"{logical_id} hours", HOURS_PER_MONTH, "nat_gateway_hour"))
        lines.append(_line("VPC", f"{logical_id} data processed (assumed)", traffic.nat_gb_per_month, "nat_gateway_data"))
    for logical_id in rendered.resources_of_type("AWS::EC2::EIP"):
        lines.append(_line("VPC", f"{logical_id} public IPv4", HOURS_PER_MONTH, "public_ipv4_hour"))
    interface_endpoints = {
        logical_id: resource
        for logical_id, resource in rendered.resources_of_type("AWS::EC2::VPCEndpoint").items()
        if resource.get("Properties", {}).get("VpcEndpointType") == "Interface"
    }
    for logical_id, resource in interface_endpoints.items():
        subnets = len(resource["Properties"].get("SubnetIds", []))
        lines.append(
            _line("VPC", f"{logical_id} x {subnets} subnets", HOURS_PER_MONTH * subnets, "interface_endpoint_hour")
        )
    if interface_endpoints:
        lines.append(
            _line("VPC", "interface endpoint data (assumed)", traffic.endpoint_gb_per_month, "interface_endpoint_data")
        )
    return lines


def _secret_api_calls(rendered: Any, traffic: Traffic) -> float:
    """Return GetSecretValue calls a month: one per secret the webhook function reads, per cold start."""
    cold_starts = traffic.requests_per_month * traffic.cold_start_share
    return cold_starts * 2


def _security_lines(rendered: Any, traffic: Traffic) -> list[CostLine]:
    lines = []
    keys = rendered.resources_of_type("AWS::KMS::Key")
    for logical_id in keys:
        lines.append(_line("KMS", f"{logical_id}", 1, "kms_key"))
    secrets = list(rendered.resources_of_type("AWS::SecretsManager::Secret"))
    for logical_id, resource in rendered.resources_of_type("AWS::RDS::DBInstance").items():
        if str(rendered.resolve(resource.get("Properties", {}).get("ManageMasterUserPassword", False))).lower() == "true":
            secrets.append(f"{logical_id} managed master secret")
    for name in secrets:
        lines.append(_line("Secrets Manager", name, 1, "secret"))
    calls = _secret_api_calls(rendered, traffic)
    lines.append(_line("Secrets Manager", "GetSecretValue calls (2 per cold start)", calls / 10_000, "secret_api_calls"))
    if keys:
        # Each GetSecretValue and each cold start (environment variables) decrypts once;
        # the first 20,000 requests a month are free.
        requests = calls + traffic.requests_per_month * traffic.cold_start_share
        billable = max(0.0, requests - 20_000)
        lines.append(_line("KMS", "requests above the free 20,000", billable / 10_000, "kms_requests"))
    return lines


def _compute_lines(rendered: Any, traffic: Traffic) -> list[CostLine]:
    lines = []
    requests = traffic.requests_per_month
    if rendered.resources_of_type("AWS::ApiGatewayV2::Api"):
        lines.append(_line("API Gateway", "HTTP API requests", requests / 1_000_000, "http_api_requests"))
    for logical_id, resource in rendered.resources_of_type("AWS::Lambda::Function").items():
        properties = resource.get("Properties", {})
        if properties.get("Handler") != "payment_webhook.handlers.webhook.lambda_handler":
            # The migration function runs once per deployment: a few cents a year.
            continue
        architectures = properties.get("Architectures", ["x86_64"])
        if architectures != ["arm64"]:
            raise ValueError(f"{logical_id} runs on {architectures}: PRICES contains the arm64 duration price only: add the x86_64 price")
        memory_gb = float(properties.get("MemorySize", 128)) / 1024.0
        gb_seconds = requests * traffic.billed_ms_per_request / 1000.0 * memory_gb
        lines.append(
            _line("Lambda", f"{logical_id} duration ({memory_gb * 1024:.0f} MB)", gb_seconds, "lambda_arm_duration")
        )
        lines.append(_line("Lambda", f"{logical_id} requests", requests / 1_000_000, "lambda_requests"))
        if properties.get("TracingConfig", {}).get("Mode") == "Active":
            traces = requests * traffic.traced_share
            lines.append(_line("X-Ray", f"{logical_id} traces", traces / 1_000_000, "xray_traces"))
    return lines


def _log_lines(rendered: Any, traffic: Traffic) -> list[CostLine]:
    requests = traffic.requests_per_month
    ingested_gb = requests * (traffic.function_log_kb_per_request + traffic.api_access_log_kb_per_request) * GB_PER_KB
    ingested_gb += traffic.database_log_gb_per_month
    groups = rendered.resources_of_type("AWS::Logs::LogGroup")
    if not groups:
        return []
    retention_days = max(
        int(rendered.resolve(group.get("Properties", {}).get("RetentionInDays", 0)) or 0) for group in groups.values()
    )
    # Stored volume at steady state: a month's ingestion kept for the retention period.
    stored_gb = ingested_gb * retention_days / 30.0
    return [
        _line("CloudWatch Logs", f"ingestion, {len(groups)} log groups (assumed volume)", ingested_gb, "logs_ingestion"),
        _line("CloudWatch Logs", f"storage, {retention_days}-day retention", stored_gb, "logs_storage"),
    ]


@dataclass(frozen=True)
class Saving:
    """The monthly saving of one cost choice in one environment."""

    environment: str
    choice: str
    monthly_usd: float


class _VariantTemplate:
    """A rendered template with extra resources or changed properties, priced like the original."""

    def __init__(self, base: Any, resources: dict[str, Any]) -> None:
        self._base = base
        self.resources = resources

    def resources_of_type(self, resource_type: str) -> dict[str, Any]:
        return {key: value for key, value in self.resources.items() if value["Type"] == resource_type}

    def resolve(self, value: Any) -> Any:
        return self._base.resolve(value)


# Not a choice the template makes: what dev and staging would save with it.
ONE_SUBNET_OPTION = "option (not in the template): interface endpoint in one subnet"


def savings(renders: dict[str, Any]) -> list[Saving]:
    """Return what the NAT-only-in-prod and single-AZ-outside-prod choices save dev and staging.

    Each saving prices the environment again with prod's choice applied (prod's NAT gateway
    and its Elastic IP added, or the database made Multi-AZ) and subtracts the real estimate.
    A third line prices an option the template does not take: the interface endpoint in
    one subnet instead of two (the function in the other zone reaches it across zones).
    """
    prod_network = {
        logical_id: resource
        for logical_id, resource in renders["prod"].resources.items()
        if resource["Type"] in ("AWS::EC2::NatGateway", "AWS::EC2::EIP")
    }
    results = []
    for environment in ENVIRONMENTS:
        if environment == "prod":
            continue
        rendered = renders[environment]
        actual = estimate(environment, rendered).total_usd
        # NAT data processing follows prod's assumption too, as the NAT would carry it.
        with_nat = _VariantTemplate(rendered, {**rendered.resources, **prod_network})
        nat_traffic = TRAFFIC[environment].__class__(
            **{**asdict(TRAFFIC[environment]), "nat_gb_per_month": TRAFFIC["prod"].nat_gb_per_month}
        )
        results.append(
            Saving(environment, "NAT gateway only in prod", round(estimate(environment, with_nat, nat_traffic).total_usd - actual, 2))
        )
        multi_az_resources = copy.deepcopy(dict(rendered.resources))
        for resource in multi_az_resources.values():
            if resource["Type"] == "AWS::RDS::DBInstance":
                resource["Properties"]["MultiAZ"] = True
        with_multi_az = _VariantTemplate(rendered, multi_az_resources)
        results.append(
            Saving(environment, "single-AZ database outside prod", round(estimate(environment, with_multi_az).total_usd - actual, 2))
        )
        one_subnet_resources = copy.deepcopy(dict(rendered.resources))
        for resource in one_subnet_resources.values():
            properties = resource.get("Properties", {})
            if resource["Type"] == "AWS::EC2::VPCEndpoint" and properties.get("VpcEndpointType") == "Interface":
                properties["SubnetIds"] = properties["SubnetIds"][:1]
        with_one_subnet = _VariantTemplate(rendered, one_subnet_resources)
        results.append(
            Saving(environment, ONE_SUBNET_OPTION, round(actual - estimate(environment, with_one_subnet).total_usd, 2))
        )
    return results


def estimate_all() -> tuple[dict[str, EnvironmentEstimate], list[Saving]]:
    """Render and price every environment; return the estimates and the savings."""
    renders = {environment: render(environment) for environment in ENVIRONMENTS}
    estimates = {environment: estimate(environment, renders[environment]) for environment in ENVIRONMENTS}
    return estimates, savings(renders)


def format_markdown(estimates: dict[str, EnvironmentEstimate], saved: list[Saving]) -> str:
    """Return the estimates, the savings and the assumptions as Markdown tables."""
    out: list[str] = []
    out.append("| environment | monthly total (USD) |")
    out.append("| --- | ---: |")
    for environment, result in estimates.items():
        out.append(f"| {environment} | {result.total_usd:,.2f} |")
    out.append("")

    for environment, result in estimates.items():
        out.append(f"**{environment}** (total ${result.total_usd:,.2f} a month)")
        out.append("")
        out.append("| service | item | quantity | unit | unit price (USD) | monthly (USD) | price |")
        out.append("| --- | --- | ---: | --- | ---: | ---: | --- |")
        for line in result.lines:
            status = "confirmed" if line.confirmed else "estimate"
            out.append(
                f"| {line.service} | {line.item} | {line.quantity:,.4g} | {line.unit} | "
                f"{line.unit_price_usd:.10g} | {line.monthly_usd:,.2f} | {status} |"
            )
        out.append("")

    out.append("| environment | choice | saves (USD a month) |")
    out.append("| --- | --- | ---: |")
    for saving in saved:
        out.append(f"| {saving.environment} | {saving.choice} | {saving.monthly_usd:,.2f} |")
    out.append("")

    out.append(
        f"Prices: {PRICE_REGION} on-demand, taken {PRICE_DATE}; 'estimate' marks a price that was not read "
        "in AWS's own published text. Free tiers are not applied."
    )
    out.append("")
    out.append("Not priced: " + "; ".join(NOT_PRICED) + ".")
    out.append("")
    out.append("| environment | requests a month | billed ms per request | cold-start share | log KB per request | NAT GB | endpoint GB |")
    out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for environment, traffic in TRAFFIC.items():
        out.append(
            f"| {environment} | {traffic.requests_per_month:,} | {traffic.billed_ms_per_request:g} | "
            f"{traffic.cold_start_share:.0%} | "
            f"{traffic.function_log_kb_per_request + traffic.api_access_log_kb_per_request:g} | "
            f"{traffic.nat_gb_per_month:g} | {traffic.endpoint_gb_per_month:g} |"
        )
    return "\n".join(out)


def as_results(estimates: dict[str, EnvironmentEstimate], saved: list[Saving]) -> dict[str, Any]:
    """Return the estimates and savings as plain data for results.json."""
    return {
        "price_region": PRICE_REGION,
        "price_date": PRICE_DATE,
        "monthly_total_usd": {environment: result.total_usd for environment, result in estimates.items()},
        "lines": {
            environment: [asdict(line) for line in result.lines] for environment, result in estimates.items()
        },
        "savings_usd": [asdict(saving) for saving in saved],
        "traffic": {environment: asdict(traffic) for environment, traffic in TRAFFIC.items()},
    }


def main(argv: list[str] | None = None) -> int:
    """Print the estimate tables (``make cost``); ``--json`` prints results.json's cost section."""
    parser = argparse.ArgumentParser(prog="python -m bench.cost", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of Markdown tables")
    args = parser.parse_args(argv)
    estimates, saved = estimate_all()
    if args.json:
        print(json.dumps(as_results(estimates, saved), indent=2))
    else:
        print(format_markdown(estimates, saved))
        dev_total = estimates["dev"].total_usd
        verdict = "meets" if dev_total <= DEV_TARGET_USD else "misses"
        print(f"\ndev: ${dev_total:,.2f} a month {verdict} the target of at most ${DEV_TARGET_USD:,.0f}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
