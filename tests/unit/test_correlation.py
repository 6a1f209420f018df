import uuid

import pytest

from events_loader import load_event
from parel_monitoring import correlation


def is_uuid4(value: str) -> bool:
    return uuid.UUID(value).version == 4


@pytest.mark.parametrize("header", ["x-correlation-id", "X-Correlation-Id", "X-CORRELATION-ID"])
def test_api_header_in_any_letter_case(header):
    event = load_event("health-app", headers={"x-correlation-id": None, header: "req-42.a:b_c"})
    assert correlation.from_event(event) == "req-42.a:b_c"


def test_scheduler_event_uses_its_id():
    event = load_event("heal-schedule")
    assert correlation.from_event(event) == event["id"]


def test_sns_message_attribute():
    assert correlation.from_event(load_event("sns-alert")) == "heal-run-7f3a9c"


@pytest.mark.parametrize(
    "bad",
    ["", "abc\ndef", "x" * 129, "x" * 10_000, "id with space", "id\r\nFAKE LOG LINE", "ü-nicode", "a;b", "<script>"],
)
def test_malformed_ids_are_replaced_by_a_new_uuid4(bad):
    new = correlation.from_event(load_event("health-app", headers={"x-correlation-id": bad}))
    assert new != bad and is_uuid4(new)


def test_longest_accepted_id():
    assert correlation.from_event(load_event("health-app", headers={"x-correlation-id": "a" * 128})) == "a" * 128


@pytest.mark.parametrize("event", [None, [], "text", {}, {"headers": None}, {"Records": [{"Sns": {}}]}])
def test_events_without_an_id_get_a_new_uuid4(event):
    assert is_uuid4(correlation.from_event(event))


def test_non_string_header_value_is_rejected():
    assert is_uuid4(correlation.from_event({"headers": {"x-correlation-id": 12345}}))


def test_id_travels_onward_through_an_sns_message_attribute():
    correlation.set_current("onward-1")
    attributes = correlation.sns_message_attributes()
    # What SNS delivers to the subscriber carries the same ID back in.
    delivered = {"Records": [{"Sns": {"MessageAttributes": {
        name: {"Type": spec["DataType"], "Value": spec["StringValue"]} for name, spec in attributes.items()
    }}}]}  # fmt: skip
    assert correlation.from_event(delivered) == "onward-1"


def test_new_ids_are_canonical_random_uuid4s():
    """Minted without the uuid module (kept out of the cold start): the text uuid.UUID reads back unchanged, with
    version 4 and the RFC 9562 variant, never repeating."""
    minted = [correlation.new_id() for _ in range(2000)]
    for value in minted:
        parsed = uuid.UUID(value)
        assert str(parsed) == value and parsed.version == 4 and parsed.variant == uuid.RFC_4122
    assert len(set(minted)) == len(minted)
