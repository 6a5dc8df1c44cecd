"""The sample events in events/: their shape, the manifest, the signer, and the function's response to each.

The last test replays every manifest entry, in order, through the function's handler on a
fresh database, so the responses documented in events/manifest.json (and the README table
built from it) are checked on every test run.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import stripe

from local_stack.signing import (
    DEFAULT_TOLERANCE_SECONDS,
    GENERATED_EVENTS,
    MAX_BODY_BYTES,
    NON_EVENT_FILES,
    SIGN_MODES,
    SIGNATURE_HEADER,
    EventFileError,
    ManifestEntry,
    body_bytes,
    build_oversized_event,
    load_event,
    load_manifest,
    read_event,
    sign_event,
    signature_header,
)

if TYPE_CHECKING:
    from local_stack.aws import LocalSecretsManager

    from tests.unit.conftest import WebhookEnvironment

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
EVENTS_DIR = REPOSITORY_ROOT / "events"
MANIFEST = load_manifest(EVENTS_DIR)
SECRET = "whsec_unitTestSigningSecret0000000000000001"
NOW = 1_800_000_000

# The payment that the sample events walk through, and its state after the replay.
SAMPLE_PAYMENT_INTENT = "pi_3SampleCheckout0000001"
SAMPLE_AMOUNT = 4999
SAMPLE_AMOUNT_REFUNDED = 1500
# The payment of the base64-encoded payment_intent.payment_failed event.
DECLINED_PAYMENT_INTENT = "pi_3SampleDeclined0000002"

# Every variable the webhook function reads, except those Lambda itself sets.
FUNCTION_VARIABLES = {
    "DB_HOST",
    "DB_PORT",
    "DB_NAME",
    "DB_SECRET_ARN",
    "DB_SSLMODE",
    "DB_CONNECT_TIMEOUT_SECONDS",
    "SIGNING_SECRET_ARN",
    "SIGNATURE_TOLERANCE_SECONDS",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
    "AWS_ENDPOINT_URL_SECRETS_MANAGER",
}
# The Outputs that the local stack writes to .local/stack-outputs.json.
LOCAL_OUTPUT_KEYS = {
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
    "AwsEndpointUrl",
}
PLACEHOLDER = re.compile(r"<(?P<key>[A-Za-z0-9]+) from \.local/stack-outputs\.json>")


def _entry_id(entry: ManifestEntry) -> str:
    return entry.file.removesuffix(".json")


def _load_sign_events_script() -> Any:
    spec = importlib.util.spec_from_file_location("sign_events", REPOSITORY_ROOT / "scripts" / "sign_events.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("sign_events", module)
    spec.loader.exec_module(module)
    return module


def _without_signing_fields(event: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of ``event`` without the fields that re-signing is allowed to change."""
    copy = json.loads(json.dumps(event))
    copy["headers"].pop(SIGNATURE_HEADER, None)
    copy["requestContext"].pop("time", None)
    copy["requestContext"].pop("timeEpoch", None)
    return copy


def _verify_with_stripe(event: dict[str, Any], secret: str, tolerance: int = DEFAULT_TOLERANCE_SECONDS) -> None:
    """Check an event's signature with the stripe library, the independent reference implementation."""
    stripe.WebhookSignature.verify_header(
        body_bytes(event).decode("utf-8"), event["headers"][SIGNATURE_HEADER], secret, tolerance
    )


# --- The files and the manifest ---------------------------------------------------------


def test_manifest_lists_every_event_file() -> None:
    """Every JSON file in events/ is in the manifest."""
    listed = {entry.file for entry in MANIFEST}
    on_disk = {path.name for path in EVENTS_DIR.glob("*.json")} - NON_EVENT_FILES
    assert sorted(on_disk - listed) == []


def test_manifest_entries_exist() -> None:
    """Every manifest entry is a committed file, or a generated one that the signer can build."""
    missing = [entry.file for entry in MANIFEST if not entry.generated and not (EVENTS_DIR / entry.file).is_file()]
    assert missing == []


def test_manifest_files_are_unique() -> None:
    """No file appears twice in the manifest."""
    files = [entry.file for entry in MANIFEST]
    assert len(files) == len(set(files))


def test_manifest_covers_every_response() -> None:
    """The manifest has at least one event for each response of the webhook contract, storage outages aside."""
    outcomes = {entry.expect_body.get("status") or entry.expect_body.get("error") for entry in MANIFEST}
    expected = {
        "stored",
        "duplicate",
        "missing_signature",
        "malformed_signature",
        "invalid_signature",
        "timestamp_outside_tolerance",
        "invalid_event",
        "payload_too_large",
    }
    assert expected - outcomes == set()


def test_manifest_puts_duplicate_after_original() -> None:
    """Each duplicate follows an entry that stores the same event id."""
    stored_so_far: set[str] = set()
    for entry in MANIFEST:
        if entry.expect_body.get("status") == "duplicate":
            assert entry.expect_body["event_id"] in stored_so_far, entry.file
        if entry.expect_body.get("status") == "stored":
            stored_so_far.add(entry.expect_body["event_id"])


def test_manifest_puts_older_payment_event_after_newer() -> None:
    """The out-of-order event is replayed after a newer event for the same payment intent."""
    seen: dict[str, int] = {}
    late_entries = []
    for entry in MANIFEST:
        event = load_event(EVENTS_DIR, entry)
        if entry.expect_body.get("status") != "stored":
            continue
        provider_event = json.loads(body_bytes(event))
        data_object = provider_event["data"]["object"]
        if provider_event["type"].startswith("payment_intent."):
            newest = seen.get(data_object["id"])
            if newest is not None and provider_event["created"] < newest:
                late_entries.append(entry.file)
            seen[data_object["id"]] = max(newest or 0, provider_event["created"])
    assert late_entries == ["payment_intent_processing_out_of_order.json"]


@pytest.mark.parametrize("entry", MANIFEST, ids=_entry_id)
def test_event_file_is_http_api_v2_event(entry: ManifestEntry) -> None:
    """Each event has the API Gateway HTTP API payload 2.0 shape of POST /webhooks/payments."""
    event = load_event(EVENTS_DIR, entry)
    context = event["requestContext"]
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /webhooks/payments"
    assert event["rawPath"] == "/webhooks/payments"
    assert event["rawQueryString"] == ""
    assert all(name == name.lower() for name in event["headers"]), "header names must be lowercase"
    assert "content-type" in event["headers"]
    assert isinstance(event["body"], str)
    assert isinstance(event["isBase64Encoded"], bool)
    assert set(context) >= {"accountId", "apiId", "domainName", "http", "requestId", "routeKey", "stage", "time", "timeEpoch"}
    assert context["http"]["method"] == "POST"
    assert context["http"]["path"] == "/webhooks/payments"
    assert set(context["http"]) >= {"protocol", "sourceIp", "userAgent"}
    assert context["routeKey"] == "POST /webhooks/payments"
    assert context["stage"] == "$default"
    assert isinstance(context["timeEpoch"], int)


@pytest.mark.parametrize("entry", [entry for entry in MANIFEST if not entry.generated], ids=_entry_id)
def test_event_file_signature_header_matches_mode(entry: ManifestEntry) -> None:
    """The committed header is absent exactly for the unsigned event."""
    event = read_event(EVENTS_DIR / entry.file)
    has_header = SIGNATURE_HEADER in event["headers"]
    assert has_header is (entry.sign != "none")


@pytest.mark.parametrize("entry", MANIFEST, ids=_entry_id)
def test_event_file_content_length_matches_body(entry: ManifestEntry) -> None:
    """The content-length header is the size of the body the provider sent."""
    event = load_event(EVENTS_DIR, entry)
    assert int(event["headers"]["content-length"]) == len(body_bytes(event))


@pytest.mark.parametrize(
    "entry", [entry for entry in MANIFEST if entry.expect_status == 200], ids=_entry_id
)
def test_accepted_event_body_is_stripe_event(entry: ManifestEntry) -> None:
    """Each accepted event is a test-mode Stripe event whose id the manifest names."""
    provider_event = json.loads(body_bytes(load_event(EVENTS_DIR, entry)))
    assert provider_event["id"] == entry.expect_body["event_id"]
    assert provider_event["id"].startswith("evt_")
    assert provider_event["object"] == "event"
    assert provider_event["livemode"] is False
    assert isinstance(provider_event["created"], int)
    assert isinstance(provider_event["data"]["object"], dict)


def test_base64_event_decodes_to_json() -> None:
    """The base64 event's body decodes to a Stripe event."""
    entries = [entry for entry in MANIFEST if load_event(EVENTS_DIR, entry)["isBase64Encoded"]]
    assert len(entries) == 1
    event = load_event(EVENTS_DIR, entries[0])
    assert json.loads(base64.b64decode(event["body"]))["object"] == "event"


def test_sample_bodies_carry_no_card_number() -> None:
    """No body contains a run of 13 or more digits, the shape of a card number."""
    offenders = [
        entry.file
        for entry in MANIFEST
        if re.search(rb"\d{13,}", body_bytes(load_event(EVENTS_DIR, entry)))
    ]
    assert offenders == []


def test_env_vars_file_lists_function_variables() -> None:
    """events/env.json sets every variable the webhook function reads, under its logical ID."""
    env_vars = json.loads((EVENTS_DIR / "env.json").read_text())
    assert set(env_vars) == {"PaymentWebhookFunction"}
    assert set(env_vars["PaymentWebhookFunction"]) == FUNCTION_VARIABLES


def test_env_vars_placeholders_name_local_outputs() -> None:
    """Every placeholder in events/env.json names an Output the local stack writes."""
    variables = json.loads((EVENTS_DIR / "env.json").read_text())["PaymentWebhookFunction"]
    keys = {match["key"] for value in variables.values() for match in PLACEHOLDER.finditer(value)}
    assert keys - LOCAL_OUTPUT_KEYS == set()


def test_env_vars_are_declared_in_template() -> None:
    """Every variable in events/env.json is declared on the function in template.yaml.

    sam local invoke --env-vars overrides only variables that the template declares and
    drops the others (SAM CLI 1.170, samcli/local/lambdafn/env_vars.py, EnvironmentVariables.resolve).
    """
    from samtranslator.yaml_helper import yaml_parse

    template = yaml_parse((REPOSITORY_ROOT / "template.yaml").read_text())
    global_variables = template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    function = template["Resources"]["PaymentWebhookFunction"]["Properties"]
    function_variables = function.get("Environment", {}).get("Variables", {})
    declared = set(global_variables) | set(function_variables)
    env_vars = json.loads((EVENTS_DIR / "env.json").read_text())["PaymentWebhookFunction"]
    assert sorted(set(env_vars) - declared) == []


# --- Signing ----------------------------------------------------------------------------


def test_signature_header_passes_stripe_verification() -> None:
    """A header from signature_header verifies with the stripe library."""
    payload = b'{"id": "evt_1", "object": "event"}'
    header = signature_header(payload, SECRET)
    stripe.WebhookSignature.verify_header(payload.decode(), header, SECRET, DEFAULT_TOLERANCE_SECONDS)


@pytest.mark.parametrize("entry", MANIFEST, ids=_entry_id)
@pytest.mark.parametrize("mode", SIGN_MODES)
def test_sign_event_changes_only_signature_and_time(entry: ManifestEntry, mode: str) -> None:
    """Signing in any mode leaves everything but the header and the request time as it was."""
    event = load_event(EVENTS_DIR, entry)
    signed = sign_event(event, mode, SECRET, now=NOW)
    assert _without_signing_fields(signed) == _without_signing_fields(event)
    assert signed["requestContext"]["timeEpoch"] == NOW * 1000


def test_sign_event_does_not_modify_input() -> None:
    """sign_event returns a copy and leaves its argument unchanged."""
    event = load_event(EVENTS_DIR, MANIFEST[0])
    before = json.dumps(event)
    sign_event(event, "fresh", SECRET, now=NOW)
    assert json.dumps(event) == before


def test_sign_event_fresh_verifies() -> None:
    """A fresh signature verifies with the stripe library."""
    signed = sign_event(load_event(EVENTS_DIR, MANIFEST[0]), "fresh", SECRET)
    _verify_with_stripe(signed, SECRET)


def test_sign_event_base64_signs_decoded_bytes() -> None:
    """A base64 event is signed over its decoded body, not the base64 text."""
    entry = next(entry for entry in MANIFEST if load_event(EVENTS_DIR, entry)["isBase64Encoded"])
    signed = sign_event(load_event(EVENTS_DIR, entry), "fresh", SECRET)
    _verify_with_stripe(signed, SECRET)


def test_sign_event_stale_is_outside_tolerance() -> None:
    """A stale signature matches the secret but is older than the tolerance."""
    signed = sign_event(load_event(EVENTS_DIR, MANIFEST[0]), "stale", SECRET)
    with pytest.raises(stripe.SignatureVerificationError, match="tolerance"):
        _verify_with_stripe(signed, SECRET)


def test_sign_event_stale_matches_secret() -> None:
    """Without an age check, the stale signature matches, so only its age fails."""
    signed = sign_event(load_event(EVENTS_DIR, MANIFEST[0]), "stale", SECRET)
    _verify_with_stripe(signed, SECRET, tolerance=None)


def test_sign_event_wrong_secret_does_not_verify() -> None:
    """A wrong_secret signature does not match the signing secret."""
    signed = sign_event(load_event(EVENTS_DIR, MANIFEST[0]), "wrong_secret", SECRET)
    with pytest.raises(stripe.SignatureVerificationError, match="No signatures found matching"):
        _verify_with_stripe(signed, SECRET)


def test_sign_event_none_removes_header() -> None:
    """Mode none removes the stripe-signature header."""
    signed = sign_event(load_event(EVENTS_DIR, MANIFEST[0]), "none", SECRET)
    assert SIGNATURE_HEADER not in signed["headers"]


def test_sign_event_malformed_has_no_integer_timestamp() -> None:
    """A malformed header cannot be parsed by the stripe library."""
    signed = sign_event(load_event(EVENTS_DIR, MANIFEST[0]), "malformed", SECRET)
    with pytest.raises(stripe.SignatureVerificationError, match="Unable to extract timestamp"):
        _verify_with_stripe(signed, SECRET)


def test_sign_event_keep_leaves_header() -> None:
    """Mode keep leaves the committed header untouched."""
    event = load_event(EVENTS_DIR, MANIFEST[0])
    signed = sign_event(event, "keep", SECRET, now=NOW)
    assert signed["headers"][SIGNATURE_HEADER] == event["headers"][SIGNATURE_HEADER]


def test_sign_event_unknown_mode_raises() -> None:
    """An unknown mode raises EventFileError naming the valid modes."""
    with pytest.raises(EventFileError, match="fresh, stale"):
        sign_event(load_event(EVENTS_DIR, MANIFEST[0]), "later", SECRET)


def test_oversized_event_is_one_byte_over_limit() -> None:
    """The generated payload_too_large body is 1 MiB plus one byte."""
    assert len(body_bytes(build_oversized_event())) == MAX_BODY_BYTES + 1


def test_oversized_event_is_identical_each_time() -> None:
    """The generator builds the same body on every call, so re-signing never changes it."""
    assert build_oversized_event()["body"] == build_oversized_event()["body"]


def test_oversized_event_file_matches_generator() -> None:
    """A payload_too_large.json written earlier has the generator's body."""
    for name, generator in GENERATED_EVENTS.items():
        path = EVENTS_DIR / name
        if path.exists():
            assert read_event(path)["body"] == generator()["body"], name


# --- scripts/sign_events.py -------------------------------------------------------------


@pytest.fixture
def events_copy(tmp_path: Path) -> Path:
    """Copy events/ (without generated files) to a temporary folder."""
    target = tmp_path / "events"
    target.mkdir()
    for path in EVENTS_DIR.glob("*.json"):
        if path.name not in GENERATED_EVENTS:
            shutil.copy(path, target / path.name)
    return target


def test_sign_events_script_rewrites_only_signatures(events_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The script re-signs each file and leaves bodies and other fields as they were."""
    script = _load_sign_events_script()
    exit_status = script.main(["--events-dir", str(events_copy), "--secret", SECRET])
    printed = capsys.readouterr().out
    assert exit_status == 0
    for entry in MANIFEST:
        assert f"{entry.file}: {entry.sign}" in printed
        if entry.generated:
            continue
        original = read_event(EVENTS_DIR / entry.file)
        rewritten = read_event(events_copy / entry.file)
        assert _without_signing_fields(rewritten) == _without_signing_fields(original), entry.file


def test_sign_events_script_writes_generated_file(events_copy: Path) -> None:
    """The script writes payload_too_large.json, signed, with the generator's body."""
    script = _load_sign_events_script()
    script.main(["--events-dir", str(events_copy), "--secret", SECRET])
    event = read_event(events_copy / "payload_too_large.json")
    assert len(body_bytes(event)) == MAX_BODY_BYTES + 1
    _verify_with_stripe(event, SECRET)


def test_sign_events_script_fresh_files_verify(events_copy: Path) -> None:
    """Every fresh file the script writes verifies under the given secret."""
    script = _load_sign_events_script()
    script.main(["--events-dir", str(events_copy), "--secret", SECRET])
    for entry in MANIFEST:
        if entry.sign == "fresh":
            _verify_with_stripe(read_event(events_copy / entry.file), SECRET)


def test_sign_events_script_without_local_stack_fails(
    events_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --secret and without a local stack, the script exits 2 and names both fixes."""
    script = _load_sign_events_script()
    exit_status = script.main(
        ["--events-dir", str(events_copy), "--outputs-file", str(tmp_path / "missing" / "stack-outputs.json")]
    )
    message = capsys.readouterr().err
    assert exit_status == 2
    assert "make local" in message
    assert "--secret" in message


def test_sign_events_script_rejects_secret_without_prefix(events_copy: Path) -> None:
    """A --secret that does not start with whsec_ is a usage error."""
    script = _load_sign_events_script()
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--events-dir", str(events_copy), "--secret", "not-a-secret"])
    assert exit_info.value.code == 2


@dataclass(frozen=True)
class LocalOutputs:
    """A hand-written .local/stack-outputs.json backed by moto, and the secret it names."""

    outputs_file: Path
    secret: str
    outputs: dict[str, str]


@pytest.fixture
def local_outputs(tmp_path: Path, secrets_manager: LocalSecretsManager) -> LocalOutputs:
    """Write an Outputs file whose signing secret lives in moto, as the local stack does."""
    secret = "whsec_localStackSecret000000000000000001"
    older_secret = "whsec_olderSecretStillAccepted0000000001"
    suffix = tmp_path.name
    signing_arn = secrets_manager.create_secret(f"sign-events/{suffix}/signing", [secret, older_secret])
    outputs = {
        "WebhookUrl": "http://127.0.0.1:3999/webhooks/payments",
        "DbEndpointAddress": "127.0.0.1",
        "DbEndpointPort": "55432",
        "DbName": "payments",
        "DbMasterSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:local/db-AbCdEf",
        "WebhookSigningSecretArn": signing_arn,
        "AwsEndpointUrl": secrets_manager.endpoint_url,
    }
    outputs_file = tmp_path / "local" / "stack-outputs.json"
    outputs_file.parent.mkdir()
    outputs_file.write_text(json.dumps([{"OutputKey": key, "OutputValue": value} for key, value in outputs.items()]))
    return LocalOutputs(outputs_file, secret, outputs)


def test_sign_events_script_reads_local_stack_secret(events_copy: Path, local_outputs: LocalOutputs) -> None:
    """Without --secret, the script signs with the newest secret of the local stack."""
    script = _load_sign_events_script()
    exit_status = script.main(["--events-dir", str(events_copy), "--outputs-file", str(local_outputs.outputs_file)])
    assert exit_status == 0
    _verify_with_stripe(read_event(events_copy / MANIFEST[0].file), local_outputs.secret)


def test_sign_events_script_writes_local_env_vars(events_copy: Path, local_outputs: LocalOutputs) -> None:
    """With a local stack, the script writes env.json beside the Outputs with every placeholder filled."""
    script = _load_sign_events_script()
    script.main(["--events-dir", str(events_copy), "--outputs-file", str(local_outputs.outputs_file)])
    variables = json.loads((local_outputs.outputs_file.parent / "env.json").read_text())["PaymentWebhookFunction"]
    assert variables["DB_PORT"] == local_outputs.outputs["DbEndpointPort"]
    assert variables["AWS_ENDPOINT_URL_SECRETS_MANAGER"] == local_outputs.outputs["AwsEndpointUrl"]
    assert [value for value in variables.values() if PLACEHOLDER.search(value)] == []


# --- The function's response to each event ----------------------------------------------


def _replay_manifest(webhook_env: WebhookEnvironment) -> list[tuple[ManifestEntry, dict[str, Any]]]:
    """Sign every manifest entry with the configured secret and pass it to the handler, in order."""
    from payment_webhook.handlers.webhook import lambda_handler

    responses = []
    for entry in MANIFEST:
        event = sign_event(load_event(EVENTS_DIR, entry), entry.sign, webhook_env.signing_secret)
        responses.append((entry, lambda_handler(event, webhook_env.context)))
    return responses


def test_handler_returns_documented_responses(
    webhook_env: WebhookEnvironment, subtests: pytest.Subtests
) -> None:
    """Replaying the manifest in order through the handler gives each documented status and body."""
    for entry, response in _replay_manifest(webhook_env):
        body = json.loads(response["body"])
        with subtests.test(msg=entry.file):
            assert response["statusCode"] == entry.expect_status, body
            assert {key: body.get(key) for key in entry.expect_body} == entry.expect_body
            if entry.expect_body.get("error") == "invalid_event":
                assert body.get("message"), "an invalid_event response names the field"


def test_handler_replay_leaves_documented_payment_state(webhook_env: WebhookEnvironment) -> None:
    """After the replay, the sample payment is succeeded with 15.00 of 49.99 EUR refunded."""
    _replay_manifest(webhook_env)
    payment = webhook_env.payment(SAMPLE_PAYMENT_INTENT)
    assert payment is not None
    assert payment["status"] == "succeeded"
    assert payment["amount"] == SAMPLE_AMOUNT
    assert payment["currency"] == "eur"
    assert payment["amount_refunded"] == SAMPLE_AMOUNT_REFUNDED


def test_handler_replay_stores_one_row_per_accepted_event(webhook_env: WebhookEnvironment) -> None:
    """After the replay, webhook_events has exactly the ids of the accepted events, once each."""
    _replay_manifest(webhook_env)
    stored_ids = sorted(row[0] for row in webhook_env.query("SELECT event_id FROM webhook_events"))
    expected_ids = sorted({entry.expect_body["event_id"] for entry in MANIFEST if entry.expect_status == 200})
    assert stored_ids == expected_ids


def test_handler_replay_keeps_declined_payment_status(webhook_env: WebhookEnvironment) -> None:
    """The base64 payment_failed event leaves its payment waiting for a new payment method."""
    _replay_manifest(webhook_env)
    payment = webhook_env.payment(DECLINED_PAYMENT_INTENT)
    assert payment is not None
    assert payment["status"] == "requires_payment_method"
