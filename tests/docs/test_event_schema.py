"""docs/event.schema.json against itself, against every sample in events/, and
against hand-made cases for each rule of docs/contract.md section 1.

Run by scripts/check-docs.sh (.venv: pytest, jsonschema).

The samples are SQS event files: {"Records": [{"body": "<JSON string>", ...}]}.
Each body is unwrapped the way the function does it (bare event, SNS notification
whose Message is the event as a JSON string, EventBridge event whose detail is the
event) and the event inside is validated. events/invalid.json holds records meant
to be rejected; every one of them must be listed in INVALID with how it fails.

Nothing here depends on the current date: the samples' timestamps are fixed, and
the time window (MAX_EVENT_AGE_DAYS, 5 minutes into the future) is not part of the
schema; scripts/demo.sh stamps copies with the current time (scripts/stamp_event.py,
checked at the end of this file).
"""

import copy
import json
import pathlib
import re
import subprocess
import sys

import pytest
from jsonschema import Draft202012Validator

ROOT = pathlib.Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
SCHEMA = json.loads((ROOT / "docs" / "event.schema.json").read_text())
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)

# The function refuses larger bodies before parsing them.
MAX_BODY_BYTES = 64 * 1024

# The keys by which a body is read as one envelope or another (contract section 1).
EVENT_KEYS = {"event_id", "event_type", "occurred_at", "employee"}
SNS_KEYS = {"Type", "Message"}
EVENTBRIDGE_KEYS = {"detail", "detail-type"}


class Rejected(Exception):
    """The body is rejected before the schema applies; `kind` says why."""

    def __init__(self, kind, detail):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


def _unique_keys(pairs):
    seen = {}
    for k, v in pairs:
        if k in seen:
            raise Rejected("duplicate-key", f"key {k!r} repeated")
        seen[k] = v
    return seen


def strict_loads(text):
    """JSON with unique keys at every level; anything else is a Rejected."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as e:
        raise Rejected("not-json", str(e)) from e


def unwrap(body):
    """The HR event in an SQS body, and which envelope carried it."""
    value = strict_loads(body)
    if not isinstance(value, dict):
        return "bare", value
    readings = [
        name
        for name, keys in (("bare", EVENT_KEYS), ("sns", SNS_KEYS), ("eventbridge", EVENTBRIDGE_KEYS))
        if keys & value.keys()
    ]
    if len(readings) > 1:
        raise Rejected("ambiguous-envelope", f"reads as {readings}")
    if readings == ["sns"]:
        if value.get("Type") != "Notification" or not isinstance(value.get("Message"), str):
            raise Rejected("envelope", "SNS: Type must be Notification and Message a string")
        return "sns", strict_loads(value["Message"])
    if readings == ["eventbridge"]:
        if not isinstance(value.get("detail-type"), str) or not isinstance(value.get("detail"), dict):
            raise Rejected("envelope", "EventBridge: detail-type a string, detail an object")
        return "eventbridge", value["detail"]
    return "bare", value


def records(path):
    data = json.loads(path.read_text(), object_pairs_hook=_unique_keys)
    assert isinstance(data.get("Records"), list) and data["Records"], f"{path.name}: no Records"
    return data["Records"]


def errors(event):
    return sorted(VALIDATOR.iter_errors(event), key=lambda e: list(e.absolute_path))


def where(errs):
    """Every failing location, as "employee/username" (the event itself is "")."""
    return {"/".join(str(p) for p in e.absolute_path) for e in errs}


SAMPLE_FILES = sorted(p for p in EVENTS.glob("*.json") if p.name != "invalid.json")
VALID_RECORDS = [(p.name, r) for p in SAMPLE_FILES for r in records(p)]
INVALID_RECORDS = records(EVENTS / "invalid.json")

# Every record of events/invalid.json and how it must fail. A new invalid sample
# must be added here: ("schema", "<location>") fails the schema there;
# (<kind>, None) is rejected before the schema applies (a Rejected of that kind).
INVALID = {
    # A path in the user name: outside IAM's charset, so the username pattern fails.
    "msg-bad-1": ("schema", "employee/username"),
    # Not JSON at all: nothing to validate; the parse itself is the rejection.
    "msg-bad-2": ("not-json", None),
}


def test_the_schema_is_a_valid_draft_2020_12_schema():
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_date_time_format_is_really_checked():
    # jsonschema checks "date-time" only when rfc3339-validator is installed
    # (moto[server] brings it into .venv). Without it, format would silently pass.
    checker = Draft202012Validator.FORMAT_CHECKER
    assert "date-time" in checker.checkers, "pip install rfc3339-validator into .venv"
    assert not checker.conforms("2026-02-30T09:00:00Z", "date-time")


def test_there_are_samples_of_each_envelope_and_event_type():
    kinds = {unwrap(r["body"])[0] for _, r in VALID_RECORDS}
    types = {unwrap(r["body"])[1]["event_type"] for _, r in VALID_RECORDS}
    assert kinds == {"bare", "sns", "eventbridge"}
    assert types == {"employee.joined", "employee.changed", "employee.left"}


@pytest.mark.parametrize(
    "name,record", VALID_RECORDS, ids=[f"{n}:{r['messageId']}" for n, r in VALID_RECORDS]
)
def test_sample_is_a_valid_event(name, record):
    body = record["body"]
    assert len(body.encode()) <= MAX_BODY_BYTES
    # Also proves: no repeated key at any level, exactly one envelope reading.
    _, event = unwrap(body)
    errs = errors(event)
    assert not errs, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errs)


ALL_RECORDS = [(p.name, r) for p in sorted(EVENTS.glob("*.json")) for r in records(p)]


@pytest.mark.parametrize(
    "name,record", ALL_RECORDS, ids=[f"{n}:{r['messageId']}" for n, r in ALL_RECORDS]
)
def test_fifo_record_group_is_the_employee_id(name, record):
    # The function rejects a FIFO record whose message group is not the event's
    # employee_id; the samples come from the stack's FIFO queue and must agree.
    if not record.get("eventSourceARN", "").endswith(".fifo"):
        pytest.skip("standard queue")
    attributes = record["attributes"]
    assert attributes.get("MessageGroupId"), "a FIFO record always has a message group"
    assert attributes.get("MessageDeduplicationId")
    try:
        _, event = unwrap(record["body"])
    except Rejected:
        return  # unreadable body (an invalid sample): no employee_id to compare
    employee_id = (event.get("employee") or {}).get("employee_id")
    event_id = event.get("event_id")
    if employee_id is not None:
        assert attributes["MessageGroupId"] == employee_id
    if event_id is not None:
        # The sender's convention (infra/README.md): deduplication id = HR event id.
        assert attributes["MessageDeduplicationId"] == event_id


def test_every_invalid_sample_is_listed():
    assert {r["messageId"] for r in INVALID_RECORDS} == set(INVALID)


@pytest.mark.parametrize("record", INVALID_RECORDS, ids=[r["messageId"] for r in INVALID_RECORDS])
def test_invalid_sample_is_rejected(record):
    kind, location = INVALID[record["messageId"]]
    if kind == "schema":
        _, event = unwrap(record["body"])
        errs = errors(event)
        assert errs, "meant to be rejected, but the schema accepts it"
        assert location in where(errs)
    else:
        with pytest.raises(Rejected) as e:
            unwrap(record["body"])
        assert e.value.kind == kind


# Hand-made cases, one rule each, from a valid joiner.
JOINER = {
    "event_id": "ev-1",
    "event_type": "employee.joined",
    "occurred_at": "2026-11-22T09:00:00Z",
    "employee": {
        "employee_id": "E1001",
        "email": "jane.doe@example.com",
        "username": "jane.doe",
        "first_name": "Jane",
        "last_name": "Doe",
        "department": "engineering",
        "manager_email": "lead@example.com",
    },
}


def changed(**edits):
    """JOINER with edits: "employee.x"=value sets, =DROP removes."""
    event = copy.deepcopy(JOINER)
    for dotted, value in edits.items():
        *parents, key = dotted.split("__")
        target = event
        for p in parents:
            target = target[p]
        if value is DROP:
            target.pop(key, None)
        else:
            target[key] = value
    return event


DROP = object()

ACCEPTED = {
    "the joiner itself": changed(),
    "leaver with only id and username": {
        "event_id": "ev-2",
        "event_type": "employee.left",
        "occurred_at": "2026-11-23T17:00:00Z",
        "employee": {"employee_id": "E1001", "username": "jane.doe"},
    },
    "mover without username (email's local part)": changed(
        event_type="employee.changed", employee__username=DROP
    ),
    "offset and fractional seconds": changed(occurred_at="2026-11-22T10:00:00.123+01:00"),
    "lower-case t and z (RFC 3339 allows them)": changed(occurred_at="2026-11-22t09:00:00z"),
    "unknown fields are ignored": changed(
        source_system="workday", employee__cost_center=4711, employee__extra={"tags": ["a", 1]}
    ),
    "accents and combining marks are text": changed(
        employee__first_name="Zoe\u0308", employee__last_name="Sánchez O'Brien-Smith"
    ),
    "username with IAM's other characters": changed(employee__username="j+d=x.y@z_w-1"),
    "64-character username": changed(employee__username="a" * 64),
    "a name that is not plainly a name is still accepted (neutral greeting)": changed(
        employee__first_name="Jane (see https://example.com)"
    ),
    # effective dates (docs/contract.md, section 9)
    "start_date as a date": changed(employee__start_date="2026-12-01"),
    "end_date as a date-time with offset": changed(employee__end_date="2027-03-31T18:00:00+02:00"),
    "a scheduled delivery": changed(schedule={
        "due_at": "2026-11-30T00:00:00Z", "by_event_id": "ev-1",
        "by_event_type": "employee.joined", "by_occurred_at": "2026-11-22T09:00:00Z"}),
}

REJECTED = {
    # field rules
    "no event_id": (changed(event_id=DROP), ""),
    "empty event_id": (changed(event_id=""), "event_id"),
    "event_id of 129 characters": (changed(event_id="e" * 129), "event_id"),
    "event_id with a space": (changed(event_id="ev 1"), "event_id"),
    "unknown event_type": (changed(event_type="employee.promoted"), "event_type"),
    "no occurred_at": (changed(occurred_at=DROP), ""),
    "occurred_at not a timestamp": (changed(occurred_at="yesterday"), "occurred_at"),
    "occurred_at without offset": (changed(occurred_at="2026-11-22T09:00:00"), "occurred_at"),
    "occurred_at on a day that does not exist": (changed(occurred_at="2026-02-30T09:00:00Z"), "occurred_at"),
    "no employee": (changed(employee=DROP), ""),
    "no employee_id": (changed(employee__employee_id=DROP), "employee"),
    "empty employee_id": (changed(employee__employee_id=""), "employee/employee_id"),
    "joiner without email": (changed(employee__email=DROP), "employee"),
    "email without a dotted domain": (changed(employee__email="jane@localhost"), "employee/email"),
    "manager_email with two @": (changed(employee__manager_email="a@b@example.com"), "employee/manager_email"),
    "neither username nor email": (
        changed(event_type="employee.left", employee__email=DROP, employee__username=DROP),
        "employee",
    ),
    # effective dates
    "start_date on a day that does not exist": (changed(employee__start_date="2026-02-30"), "employee/start_date"),
    "end_date in words": (changed(employee__end_date="end of March"), "employee/end_date"),
    "end_date without offset": (changed(employee__end_date="2027-03-31T18:00:00"), "employee/end_date"),
    "schedule without due_at": (changed(schedule={
        "by_event_id": "ev-1", "by_event_type": "employee.joined",
        "by_occurred_at": "2026-11-22T09:00:00Z"}), "schedule"),
    # the user-name rule
    "username with a comma": (changed(employee__username="doe,jane"), "employee/username"),
    "username with a slash": (changed(employee__username="eve/../admin"), "employee/username"),
    "username of 65 characters": (changed(employee__username="a" * 65), "employee/username"),
    "empty username": (changed(employee__username=""), "employee/username"),
    "email local part not a user name, no username": (
        changed(employee__username=DROP, employee__email="jane!doe@example.com"),
        "employee/email",
    ),
    # hidden characters, in known fields, unknown fields and field names
    "bidi override in first_name": (changed(employee__first_name="Jane\u202e"), "employee/first_name"),
    "zero-width space in last_name": (changed(employee__last_name="Do\u200be"), "employee/last_name"),
    "control character in department": (changed(employee__department="eng\u0007"), "employee/department"),
    "newline at the end of username": (changed(employee__username="jane.doe\n"), "employee/username"),
    "line separator in first_name": (changed(employee__first_name="Jane\u2028Bcc"), "employee/first_name"),
    "isolate in an unknown field": (changed(note="\u2066x\u2069"), "note"),
    "zero-width joiner in a field name": (changed(employee__title_x="y", **{"employee__a\u200db": "c"}), "employee"),
    "first_name of 129 characters": (changed(employee__first_name="J" * 129), "employee/first_name"),
    # envelope ambiguity: a bare event must not also look like an envelope
    "bare event with detail": (changed(detail={}), "detail"),
    "bare event with Type": (changed(Type="Notification"), "Type"),
    "bare event with Message": (changed(Message="{}"), "Message"),
}


@pytest.mark.parametrize("event", ACCEPTED.values(), ids=list(ACCEPTED))
def test_schema_accepts(event):
    errs = errors(event)
    assert not errs, [e.message for e in errs]


@pytest.mark.parametrize("event,location", REJECTED.values(), ids=list(REJECTED))
def test_schema_rejects(event, location):
    errs = errors(event)
    assert errs, "the schema accepts it"
    assert location in where(errs), where(errs)


# Rules the schema cannot express; the function checks them (docs/contract.md).
# What can be checked without the function is checked here on the unwrapping.

def test_repeated_keys_are_rejected_before_the_schema():
    # JSON Schema sees the parsed object, where the last of two equal keys wins.
    body = '{"event_id": "a", "event_id": "b", "event_type": "employee.left"}'
    with pytest.raises(Rejected) as e:
        unwrap(body)
    assert e.value.kind == "duplicate-key"
    detail = json.dumps({"detail-type": "x", "detail": {"event_id": "a"}})[:-2] + ', "event_id": "b"}}'
    with pytest.raises(Rejected):
        unwrap(detail)


def test_ambiguous_envelopes_are_rejected():
    event = json.dumps(JOINER)
    for body in (
        {**JOINER, "Type": "Notification", "Message": event},
        {**JOINER, "detail-type": "x", "detail": JOINER},
        {"Type": "Notification", "Message": event, "detail-type": "x", "detail": JOINER},
    ):
        with pytest.raises(Rejected) as e:
            unwrap(json.dumps(body))
        assert e.value.kind == "ambiguous-envelope"
    # An envelope inside an envelope: the inner "event" fails the schema.
    wrapped = {"Type": "Notification", "Message": json.dumps({"detail-type": "x", "detail": JOINER})}
    _, inner = unwrap(json.dumps(wrapped))
    assert {"detail", "detail-type"} & where(errors(inner))


def test_envelopes_carry_the_same_event():
    sns = {"Type": "Notification", "MessageId": "m", "Message": json.dumps(JOINER)}
    eb = {"version": "0", "detail-type": "employee.joined", "source": "hr", "detail": JOINER}
    assert unwrap(json.dumps(sns)) == ("sns", JOINER)
    assert unwrap(json.dumps(eb)) == ("eventbridge", JOINER)
    assert unwrap(json.dumps(JOINER)) == ("bare", JOINER)


# The demo's stamping (scripts/stamp_event.py): stamped copies stay valid, keep
# sending order, keep duplicates duplicates, and leave invalid samples invalid.

def stamp(tmp_path, name, state):
    out = tmp_path / f"stamped-{name}"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "stamp_event.py"), "--state", str(state),
         str(EVENTS / name), str(out)],
        check=True, capture_output=True,
    )
    return records(out)


def occurred(record):
    return unwrap(record["body"])[1]["occurred_at"]


def test_stamped_samples_stay_valid_and_ordered(tmp_path):
    state = tmp_path / "stamps.json"
    order = ["joiner-engineering.json", "joiner-sales.json", "joiner-duplicate.json",
             "mover.json", "leaver.json", "rehire.json", "sns-envelope.json",
             "eventbridge-envelope.json"]
    stamped = {name: stamp(tmp_path, name, state) for name in order}
    for name, recs in stamped.items():
        for original, r in zip(records(EVENTS / name), recs):
            kind, event = unwrap(r["body"])
            assert not errors(event), name
            # Only the time changed.
            _, before = unwrap(original["body"])
            assert {**event, "occurred_at": None} == {**before, "occurred_at": None}
            assert kind == unwrap(original["body"])[0]
    t = {name: occurred(recs[0]) for name, recs in stamped.items()}
    assert t["joiner-engineering.json"] < t["mover.json"] < t["leaver.json"] < t["rehire.json"]
    assert t["joiner-duplicate.json"] == t["joiner-engineering.json"]
    assert t["sns-envelope.json"] == t["eventbridge-envelope.json"] == t["joiner-sales.json"]
    eb = json.loads(stamped["eventbridge-envelope.json"][0]["body"])
    assert eb["time"] == eb["detail"]["occurred_at"]


def test_stamped_invalid_samples_stay_invalid(tmp_path):
    recs = stamp(tmp_path, "invalid.json", tmp_path / "stamps.json")
    for r in recs:
        test_invalid_sample_is_rejected(r)
    assert recs[1]["body"] == INVALID_RECORDS[1]["body"]


# docs/contract.md is the project's own contract: it must stand on its own inside
# the repository, and its examples must agree with the schema.

CONTRACT = ROOT / "docs" / "contract.md"
POINTERS = [CONTRACT, ROOT / "README.md", ROOT / "infra" / "README.md"]


@pytest.mark.parametrize("doc", POINTERS, ids=[str(p.relative_to(ROOT)) for p in POINTERS])
def test_docs_point_only_inside_the_repository(doc):
    text = doc.read_text()
    assert "shared/spec" not in text, "the contract is docs/contract.md"
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://", "#", "mailto:")):
            continue
        path = (doc.parent / target.split("#")[0]).resolve()
        assert path.is_relative_to(ROOT), f"{target} is outside the repository"
        assert path.exists(), f"{target} does not exist"


def test_contract_example_event_is_valid():
    blocks = re.findall(r"```json\n(.*?)```", CONTRACT.read_text(), flags=re.S)
    first = json.loads(blocks[0])
    assert first["event_type"] == "employee.joined"
    assert not errors(first)
    assert first == unwrap(records(EVENTS / "joiner-engineering.json")[0]["body"])[1]


def test_contract_names_every_event_type_variable_and_finding_code():
    text = CONTRACT.read_text()
    for event_type in SCHEMA["properties"]["event_type"]["enum"]:
        assert f"`{event_type}`" in text
    for name in (
        "USER_PATH PROVISIONING_RULES TEMPLATE_PATH PERMISSIONS_BOUNDARY_ARN SECRET_PREFIX "
        "SECRET_KMS_KEY_ID SENDER_EMAIL SIGNIN_URL LEAVER_ACTION SECRET_RECOVERY_DAYS DRY_RUN "
        "MAX_EVENT_AGE_DAYS DENY_POLICY_ARN KEY_MAX_AGE_DAYS MFA_GRACE_DAYS MAX_CONCURRENT_RECORDS "
        "SCHEDULE_GROUP SCHEDULE_TARGET_ARN SCHEDULER_ROLE_ARN PROVISION_LEAD HR_TIME_ZONE"
    ).split():
        assert f"| `{name}`" in text, f"{name} missing from the configuration table"
    for code in (
        "missing-grant extra-grant unstored-key stale-secret missing-secret orphan-secret "
        "key-age no-mfa retired-with-access unmanaged-in-path name-mismatch past-end-date"
    ).split():
        assert f"| `{code}` |" in text, f"finding {code} missing"
