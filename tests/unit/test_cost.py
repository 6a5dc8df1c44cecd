"""The cost model in bench/cost.py: its arithmetic on the rendered template of each environment.

Rendering is offline (aws-sam-translator); nothing here opens a network connection or
looks at a timing.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from bench import cost

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(scope="module")
def renders() -> dict[str, object]:
    """Render template.yaml once per environment with its infra_params."""
    return {environment: cost.render(environment) for environment in cost.ENVIRONMENTS}


@pytest.fixture(scope="module")
def estimates(renders: dict[str, object]) -> dict[str, cost.EnvironmentEstimate]:
    """Price each rendered environment."""
    return {environment: cost.estimate(environment, rendered) for environment, rendered in renders.items()}


def _lines(estimate: cost.EnvironmentEstimate, price_key: str) -> list[cost.CostLine]:
    return [line for line in estimate.lines if line.price_key == price_key]


@pytest.mark.parametrize("environment", ["dev", "staging"])
def test_estimate_outside_prod_has_no_nat_line(
    estimates: dict[str, cost.EnvironmentEstimate], environment: str
) -> None:
    """dev and staging price no NAT gateway and no public IPv4 address."""
    keys = {line.price_key for line in estimates[environment].lines}
    assert "nat_gateway_hour" not in keys
    assert "nat_gateway_data" not in keys
    assert "public_ipv4_hour" not in keys


def test_estimate_prod_prices_nat_for_whole_month(estimates: dict[str, cost.EnvironmentEstimate]) -> None:
    """prod prices one NAT gateway for every hour of the month."""
    nat_hours = _lines(estimates["prod"], "nat_gateway_hour")
    assert len(nat_hours) == 1
    assert nat_hours[0].quantity == cost.HOURS_PER_MONTH


def test_estimate_prod_exceeds_dev_by_nat_hours(estimates: dict[str, cost.EnvironmentEstimate]) -> None:
    """prod's total is above dev's by at least a month of NAT gateway hours."""
    nat_month = cost.HOURS_PER_MONTH * cost.PRICES["nat_gateway_hour"].usd
    assert estimates["prod"].total_usd - estimates["dev"].total_usd >= nat_month


def test_estimate_lines_name_unit_and_source(estimates: dict[str, cost.EnvironmentEstimate]) -> None:
    """Every priced line has a unit, and its price names an AWS pricing page."""
    for estimate in estimates.values():
        for line in estimate.lines:
            assert line.unit, f"{estimate.environment} {line.item} has no unit"
            assert cost.PRICES[line.price_key].source.startswith("https://aws.amazon.com/"), line.price_key


def test_estimate_line_cost_is_quantity_times_price(estimates: dict[str, cost.EnvironmentEstimate]) -> None:
    """Each line's monthly cost is its quantity times its unit price, rounded to cents."""
    for estimate in estimates.values():
        for line in estimate.lines:
            assert line.monthly_usd == pytest.approx(line.quantity * line.unit_price_usd, abs=0.006), line.item


def test_estimate_total_is_sum_of_lines(estimates: dict[str, cost.EnvironmentEstimate]) -> None:
    """An environment's total is the sum of its lines."""
    for estimate in estimates.values():
        assert estimate.total_usd == pytest.approx(sum(line.monthly_usd for line in estimate.lines), abs=0.001)


def test_estimate_prod_database_costs_twice_single_az(
    renders: dict[str, object], estimates: dict[str, cost.EnvironmentEstimate]
) -> None:
    """prod's Multi-AZ instance-hour costs twice the single-AZ price of its class."""
    rendered = renders["prod"]
    properties = next(iter(rendered.resources_of_type("AWS::RDS::DBInstance").values()))["Properties"]  # type: ignore[attr-defined]
    instance_class = rendered.resolve(properties["DBInstanceClass"])  # type: ignore[attr-defined]
    instance_line = _lines(estimates["prod"], "rds_instance")[0]
    assert "Multi-AZ" in instance_line.item
    assert instance_line.unit_price_usd == pytest.approx(2 * cost.RDS_INSTANCE_HOURLY_USD[instance_class])


@pytest.mark.parametrize("environment", ["dev", "staging"])
def test_estimate_database_single_az_outside_prod(
    estimates: dict[str, cost.EnvironmentEstimate], environment: str
) -> None:
    """dev and staging price a single-AZ instance."""
    instance_line = _lines(estimates[environment], "rds_instance")[0]
    assert "single-AZ" in instance_line.item


def test_estimate_interface_endpoint_priced_per_subnet(
    renders: dict[str, object], estimates: dict[str, cost.EnvironmentEstimate]
) -> None:
    """An interface endpoint costs one ENI-hour per subnet it is placed in."""
    endpoints = renders["dev"].resources_of_type("AWS::EC2::VPCEndpoint")  # type: ignore[attr-defined]
    subnets = sum(
        len(resource["Properties"]["SubnetIds"])
        for resource in endpoints.values()
        if resource["Properties"]["VpcEndpointType"] == "Interface"
    )
    endpoint_hours = sum(line.quantity for line in _lines(estimates["dev"], "interface_endpoint_hour"))
    assert endpoint_hours == cost.HOURS_PER_MONTH * subnets


def test_estimate_prices_every_allowed_instance_class() -> None:
    """Every DbInstanceClass the template allows has an instance-hour price."""
    renderer = cost.load_template_render()
    allowed = renderer.load_template()["Parameters"]["DbInstanceClass"]["AllowedValues"]
    missing = sorted(set(allowed) - set(cost.RDS_INSTANCE_HOURLY_USD))
    assert missing == []


def test_savings_nat_equals_prod_nat_charges(renders: dict[str, object]) -> None:
    """Leaving out the NAT saves its hours, its public IPv4 address and its assumed data."""
    saved = {(saving.environment, saving.choice): saving.monthly_usd for saving in cost.savings(renders)}
    expected = (
        cost.HOURS_PER_MONTH * cost.PRICES["nat_gateway_hour"].usd
        + cost.HOURS_PER_MONTH * cost.PRICES["public_ipv4_hour"].usd
        + cost.TRAFFIC["prod"].nat_gb_per_month * cost.PRICES["nat_gateway_data"].usd
    )
    assert saved[("dev", "NAT gateway only in prod")] == pytest.approx(expected, abs=0.02)


def test_savings_single_az_equals_standby_charges(renders: dict[str, object]) -> None:
    """A single-AZ database saves the standby's instance-hours and its copy of the storage."""
    saved = {(saving.environment, saving.choice): saving.monthly_usd for saving in cost.savings(renders)}
    rendered = renders["dev"]
    properties = next(iter(rendered.resources_of_type("AWS::RDS::DBInstance").values()))["Properties"]  # type: ignore[attr-defined]
    instance_class = rendered.resolve(properties["DBInstanceClass"])  # type: ignore[attr-defined]
    storage_gb = float(rendered.resolve(properties["AllocatedStorage"]))  # type: ignore[attr-defined]
    expected = (
        cost.HOURS_PER_MONTH * cost.RDS_INSTANCE_HOURLY_USD[instance_class]
        + storage_gb * cost.PRICES["rds_gp3_storage"].usd
    )
    assert saved[("dev", "single-AZ database outside prod")] == pytest.approx(expected, abs=0.02)


def test_environment_parameters_read_infra_params(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The deploy parameters come from infra_params/<env>.json, as text."""
    (tmp_path / "staging.json").write_text(
        json.dumps({"Parameters": {"Environment": "staging", "EnvironmentSuffix": "qa01", "DbAllocatedStorage": 50}})
    )
    monkeypatch.setattr(cost, "INFRA_PARAMS_DIR", tmp_path)
    assert cost.environment_parameters("staging") == {
        "Environment": "staging",
        "EnvironmentSuffix": "qa01",
        "DbAllocatedStorage": "50",
    }
