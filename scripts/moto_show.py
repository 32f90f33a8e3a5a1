#!/usr/bin/env python3
"""What a local moto server holds, for the demo and for runs by hand.

    moto_show.py ENDPOINT [USER ...]
        Everything moto holds for the given users (all managed users when none is
        given): path, tags, groups, policies, console, access keys, the secret's
        state, field names and tags, and the mails sent. Never a secret's values.

    moto_show.py step --dir DIR --endpoint URL --invoke-port PORT --why TEXT EVENT_FILE
        One demo step (scripts/demo.sh): stamps EVENT_FILE with the current time
        (stamp_event.py), sends it to the function with `cargo lambda invoke`,
        then prints the batch answer, the audit lines the function wrote (one
        compact JSON line per record, outcome highlighted on a terminal), any
        other WARN/ERROR line of the function, what changed in AWS since the
        previous step (users, secrets: field names and tags, never values), the
        mails sent by this step only, and TEXT, the one line that says what the
        step shows. DIR holds the function's log (function.log) and the state
        kept between steps.

    moto_show.py fire --dir DIR --endpoint URL --invoke-port PORT --why TEXT SCHEDULE
        Delivers the input of one pending schedule (moto never fires them), as
        EventBridge Scheduler would at its time: one FIFO record, message group
        as the schedule says, body exactly the stored input. Printed like a step.

    moto_show.py summary --dir DIR --endpoint URL
        One line per step, then what AWS holds at the end.

The output is the same on every run: what changes from run to run (access key
ids, the current time the events are stamped with, log timestamps) is replaced
by stable placeholders (<key-1>, <t1>, ...), and lists whose order is only
presentation (groups, tags, field names) are sorted. The order of the actions in
an audit line is the function's and is kept.
"""
import argparse
import datetime as dt
import html
import json
import os
import re
import subprocess
import sys
import time
import urllib.request

import boto3

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import stamp_event  # noqa: E402

USER_PATH = "/employees/"
SECRET_PREFIX = "hr-provisioner/"
KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")
# A scheduled leaver's id derives from its end time (src/schedule.rs).
END_ID = re.compile(r"\bend-[0-9a-f]{32}\b")
DUE_AT = re.compile(r'"due_at":"[^"]*"')
SCHEDULE_GROUP = "hr-provisioner"
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")

# Only on a terminal, and not when NO_COLOR is set (https://no-color.org).
COLOUR = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
OUTCOME_COLOUR = {"applied": "32", "unchanged": "36", "stale": "33", "planned": "36", "scheduled": "36",
                  "rejected": "31", "failed": "31"}


def paint(text, code):
    return f"\033[{code}m{text}\033[0m" if COLOUR else text


def clients(endpoint):
    kw = dict(endpoint_url=endpoint, region_name="us-east-1",
              aws_access_key_id="test", aws_secret_access_key="test")
    return boto3.client("iam", **kw), boto3.client("secretsmanager", **kw)


def moto_data(endpoint):
    with urllib.request.urlopen(f"{endpoint}/moto-api/data.json") as r:
        return json.load(r)


def parse_time(s):
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


# ---------------------------------------------------------------------------
# Stable placeholders, kept in DIR/placeholders.json across the steps of a run.
# ---------------------------------------------------------------------------
class Labels:
    def __init__(self, path=None):
        self.path = path
        self.keys, self.times = {}, {}
        if path and os.path.exists(path):
            with open(path) as f:
                saved = json.load(f)
            self.keys, self.times = saved["keys"], saved["times"]

    def key(self, key_id):
        return self.keys.setdefault(key_id, f"<key-{len(self.keys) + 1}>")

    def time(self, value):
        """Event stamps get <t1>, <t2>... in sending order; other times <time>."""
        try:
            instant = parse_time(value).astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            return value
        return self.times.get(instant, "<time>")

    def stamp(self, value):
        return self.times.setdefault(value, f"<t{len(self.times) + 1}>")

    def text(self, s):
        s = END_ID.sub("end-<hash of the record and its end>", s)
        return KEY_ID.sub(lambda m: self.key(m.group(0)), s)

    def save(self):
        with open(self.path, "w") as f:
            json.dump({"keys": self.keys, "times": self.times}, f)


class RawLabels(Labels):
    """For runs by hand: the real ids and times."""

    def key(self, key_id):
        return key_id

    def time(self, value):
        return value

    def text(self, s):
        return s


# ---------------------------------------------------------------------------
# What AWS holds
# ---------------------------------------------------------------------------
def user_state(iam, name, labels):
    try:
        user = iam.get_user(UserName=name)["User"]
    except iam.exceptions.NoSuchEntityException:
        return None
    keys = iam.list_access_keys(UserName=name)["AccessKeyMetadata"]
    created = {k["AccessKeyId"]: k["CreateDate"] for k in keys}
    try:
        profile = iam.get_login_profile(UserName=name)["LoginProfile"]
        # moto does not keep PasswordResetRequired (the function sets it).
        console = "yes" if profile else "no"
    except iam.exceptions.NoSuchEntityException:
        console = "no"
    tags = {t["Key"]: t["Value"] for t in user.get("Tags", [])}
    return {
        "path": user["Path"],
        "tags": {k: show_value(k, v, labels, created) for k, v in tags.items()},
        "groups": sorted(g["GroupName"] for g in iam.list_groups_for_user(UserName=name)["Groups"]),
        "inline policies": sorted(iam.list_user_policies(UserName=name)["PolicyNames"]),
        "managed policies": sorted(p["PolicyName"] for p in
                                   iam.list_attached_user_policies(UserName=name)["AttachedPolicies"]),
        "console": console,
        "access keys": sorted(f"{labels.key(k['AccessKeyId'])} ({k['Status'].lower()})" for k in keys),
        "_key_created": {k: v.isoformat() for k, v in created.items()},
    }


def show_value(tag, value, labels, key_created=None):
    """A tag value as shown: key ids and times replaced by placeholders."""
    if tag == "hr:user-id" and not isinstance(labels, RawLabels):
        # IAM's UserId (moto makes a random one per run).
        return "<user id>"
    if tag == "hr:access-key-created" and RFC3339.match(value):
        for key_id, created in (key_created or {}).items():
            if isinstance(created, str):
                created = parse_time(created)
            if abs((parse_time(value) - created).total_seconds()) < 1:
                if isinstance(labels, RawLabels):
                    return value
                return f"<creation time of {labels.key(key_id)[1:-1]}>"
    if RFC3339.match(value):
        return labels.time(value)
    return labels.text(value)


def secret_state(sm, endpoint, name, labels, key_created):
    try:
        desc = sm.describe_secret(SecretId=name)
    except sm.exceptions.ResourceNotFoundException:
        return None
    tags = {t["Key"]: t["Value"] for t in desc.get("Tags", [])}
    # The key the secret names first: keys created within a second of each other
    # (two users in one quick run) would otherwise be told apart by dict order.
    named = tags.get("hr:access-key-id")
    if named in (key_created or {}):
        key_created = {named: key_created[named], **key_created}
    state = {"tags": {k: show_value(k, v, labels, key_created) for k, v in tags.items()}}
    if desc.get("DeletedDate"):
        days = round((desc["DeletedDate"] - dt.datetime.now(dt.timezone.utc)).total_seconds() / 86400)
        state["state"] = f"scheduled for deletion in {days} days"
        # AWS (and moto) refuse GetSecretValue on a secret pending deletion; the
        # demo reads the current version's field names from moto's own state.
        value = None
        for s in moto_data(endpoint).get("secretsmanager", {}).get("FakeSecret", []):
            if s["name"] == name:
                for v in s.get("versions", {}).values():
                    if "AWSCURRENT" in (v.get("version_stages") or []):
                        value = v.get("secret_string")
        fields = sorted(json.loads(value)) if value else []
        state["fields"] = ", ".join(fields) + "  (read from moto's state: AWS refuses reads while deletion is pending)"
    else:
        state["state"] = "active"
        state["fields"] = ", ".join(sorted(json.loads(sm.get_secret_value(SecretId=name)["SecretString"])))
    return state


def snapshot(endpoint, labels):
    iam, sm = clients(endpoint)
    users = {}
    for page in iam.get_paginator("list_users").paginate():
        for u in page["Users"]:
            users[u["UserName"]] = user_state(iam, u["UserName"], labels)
    key_created = {}
    for u in users.values():
        key_created.update(u["_key_created"])
    secrets = {}
    names = [s["Name"] for s in sm.list_secrets(IncludePlannedDeletion=True)["SecretList"]]
    for name in sorted(names):
        if name.startswith(SECRET_PREFIX):
            secrets[name] = secret_state(sm, endpoint, name, labels, key_created)
    mails = moto_data(endpoint).get("ses", {}).get("Message", [])
    return {"users": users, "secrets": secrets, "schedules": schedules(endpoint, labels),
            "mails": len(mails)}, mails


def scheduler(endpoint):
    return boto3.client("scheduler", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test")


def schedules(endpoint, labels):
    """The pending schedules of the group: what each delivers, never when exactly."""
    out = {}
    sch = scheduler(endpoint)
    for s in sch.list_schedules(GroupName=SCHEDULE_GROUP).get("Schedules", []):
        got = sch.get_schedule(GroupName=SCHEDULE_GROUP, Name=s["Name"])
        target = got["Target"]
        ev = json.loads(target.get("Input") or "{}")
        joiner = ev.get("event_type") == "employee.joined"
        out[s["Name"]] = {
            "expression": "at(<due_at>)" if got["ScheduleExpression"].startswith("at(") else got["ScheduleExpression"],
            "delivers": labels.text(f"{ev.get('event_type')} {ev.get('event_id')} to {target['Arn'].rsplit(':', 1)[-1]}"),
            "due_at": "start_date - PROVISION_LEAD" if joiner else "end_date",
            "message group": (target.get("SqsParameters") or {}).get("MessageGroupId", "(none)"),
            "after completion": got.get("ActionAfterCompletion") or "(none)",
        }
    return out


# ---------------------------------------------------------------------------
# Printing
# ---------------------------------------------------------------------------
def as_text(v):
    if isinstance(v, list):
        return ", ".join(v) if v else "(none)"
    return str(v) if v != "" else "(none)"


def describe_whole(kind, name, obj, out):
    title = f"{kind} {name}" + (f" ({obj['state']})" if "state" in obj else "")
    out.append(f"  + {title}: new")
    for field, value in obj.items():
        if field in ("tags", "state") or field.startswith("_"):
            continue
        out.append(f"      {field}: {as_text(value)}")
    for k in sorted(obj.get("tags", {})):
        out.append(f"      tag {k} = {obj['tags'][k]}")


def describe_change(kind, name, old, new, out):
    lines = []
    for field in new:
        if field == "tags" or field.startswith("_"):
            continue
        if old.get(field) != new[field]:
            lines.append(f"      {field}: {as_text(old.get(field, ''))} -> {as_text(new[field])}")
    ot, nt = old.get("tags", {}), new.get("tags", {})
    for k in sorted(set(ot) | set(nt)):
        if k not in nt:
            lines.append(f"      tag {k} removed (was {ot[k]})")
        elif k not in ot:
            lines.append(f"      tag {k} = {nt[k]} (new)")
        elif ot[k] != nt[k]:
            lines.append(f"      tag {k}: {ot[k]} -> {nt[k]}")
    if lines:
        out.append(f"  ~ {kind} {name}")
        out.extend(lines)


def diff(old, new):
    out = []
    for kind, plural in (("user", "users"), ("secret", "secrets"), ("schedule", "schedules")):
        o, n = old.get(plural, {}), new.get(plural, {})
        for name in sorted(set(o) | set(n)):
            if name not in n or n[name] is None:
                if o.get(name) is not None:
                    out.append(f"  - {kind} {name}: gone")
            elif name not in o or o[name] is None:
                describe_whole(kind, name, n[name], out)
            else:
                describe_change(kind, name, o[name], n[name], out)
    return out


def mail_text(m):
    body = re.sub(r"<br\s*/?>|</p>", " ", m.get("body", ""))
    body = html.unescape(re.sub(r"<[^>]+>", "", body))
    return re.sub(r"\s+", " ", body).strip()


def show_audit_line(raw, labels):
    """The audit line as the function wrote it; only its timestamp and key ids replaced."""
    line = re.sub(r'"timestamp":"[^"]*"', '"timestamp":"<now>"', raw.strip())
    line = DUE_AT.sub('"due_at":"<due_at>"', line)
    line = labels.text(line)
    outcome = json.loads(raw[raw.index("{"):]).get("outcome")
    needle = f'"outcome":"{outcome}"'
    if COLOUR and outcome in OUTCOME_COLOUR:
        line = line.replace(needle, paint(needle, "1;" + OUTCOME_COLOUR[outcome]))
    return line


# WARN lines the function writes only because moto is not AWS.
EMULATOR_NOTES = {
    "ListServiceSpecificCredentials":
        "moto does not implement this read; against an emulator endpoint only, the "
        "function takes it as empty (against AWS it is a real read)",
}


def read_new_log(path, offset, records, timeout=15.0):
    """The function's log lines after offset, once every record has its audit line."""
    end = time.monotonic() + timeout
    while True:
        with open(path, errors="replace") as f:
            f.seek(offset)
            lines = f.read().splitlines()
        parsed = []
        for line in lines:
            start = line.find("{")
            try:
                parsed.append((line, json.loads(line[start:]) if start >= 0 else None))
            except ValueError:
                parsed.append((line, None))
        if sum(1 for _, p in parsed if p and p.get("audit") is True) >= records or time.monotonic() > end:
            return parsed
        time.sleep(0.05)


def fire(a):
    """One pending schedule's input, delivered as Scheduler would (not stamped)."""
    got = scheduler(a.endpoint).get_schedule(GroupName=SCHEDULE_GROUP, Name=a.schedule)
    target = got["Target"]
    group = (target.get("SqsParameters") or {}).get("MessageGroupId", "")
    record = {
        "messageId": f"msg-{a.schedule}", "receiptHandle": f"AQEBmsg-{a.schedule}", "body": target["Input"],
        "attributes": {"ApproximateReceiveCount": "1", "SenderId": "AROASCHEDULER",
                       "MessageGroupId": group, "SequenceNumber": "1"},
        "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
        "eventSourceARN": target["Arn"], "awsRegion": "us-east-1"}
    a.event_file = os.path.join(a.dir, f"{a.schedule}.json")
    with open(a.event_file, "w") as f:
        json.dump({"Records": [record]}, f, indent=2)
    return step(a, stamp=False, title=f"{a.schedule} fires (its input delivered)")


def step(a, stamp=True, title=None):
    state_path = os.path.join(a.dir, "snapshot.json")
    labels = Labels(os.path.join(a.dir, "placeholders.json"))
    with open(a.event_file) as f:
        data = json.load(f)
    records = data.get("Records", [])
    n = len([1 for _ in open(os.path.join(a.dir, "steps.jsonl"))]) + 1 if os.path.exists(
        os.path.join(a.dir, "steps.jsonl")) else 1

    # The event(s), stamped with the current time (a schedule's input is delivered
    # as stored).
    clock = stamp_event.Clock(os.path.join(a.dir, "stamps.json"))
    if stamp:
        stamp_log = []
        stamp_event.stamp_file(data, clock, stamp_log)
        clock.save()
    stamped = os.path.join(a.dir, f"step{n}-{os.path.basename(a.event_file)}")
    with open(stamped, "w") as f:
        json.dump(data, f, indent=2)
    name = title or os.path.basename(a.event_file)
    print(paint(f"\n== {n}. {name}", "1"))
    print(f"   {a.why}")
    for i, r in enumerate(records):
        try:
            ev = json.loads(r["body"])
            ev = ev.get("detail") or (json.loads(ev["Message"]) if "Message" in ev else ev)
            emp = ev.get("employee", {})
            what = f"{ev.get('event_type')} {emp.get('employee_id')} ({emp.get('department') or 'no department'})"
            if ev.get("event_id") in clock.stamps:
                stamp = labels.stamp(clock.stamps[ev["event_id"]])
            else:
                stamp = labels.time(ev["occurred_at"]) if "occurred_at" in ev else "-"
            what += f", event_id {labels.text(str(ev.get('event_id')))}, occurred_at {stamp}"
            dates = [f"{k} {labels.time(emp[k])}" for k in ("start_date", "end_date") if emp.get(k)]
            if dates:
                what += ", " + ", ".join(dates)
        except (ValueError, KeyError, TypeError, AttributeError):
            what = "a body that is not a valid event"
        print(f"   record {r.get('messageId')}: {what}")

    before = {}
    if os.path.exists(state_path):
        with open(state_path) as f:
            before = json.load(f)
    log = os.path.join(a.dir, "function.log")
    offset = os.path.getsize(log)
    run = subprocess.run(
        ["cargo", "lambda", "invoke", "--invoke-address", "127.0.0.1", "--invoke-port", str(a.invoke_port),
         "--data-file", stamped, "-o", "json"],
        capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"cargo lambda invoke failed:\n{run.stderr}")
    answer = json.loads(run.stdout)
    print(f"answer to SQS: {json.dumps(answer, separators=(',', ':'))}")

    outcomes, actions = [], 0
    for raw, parsed in read_new_log(log, offset, len(records)):
        if not parsed:
            continue
        if parsed.get("audit") is True:
            outcomes.append(parsed.get("outcome"))
            actions += len(parsed.get("actions") or [])
            print("audit: " + show_audit_line(raw[raw.index("{"):], labels))
        elif parsed.get("level") in ("WARN", "ERROR"):
            note = EMULATOR_NOTES.get(parsed.get("op", ""))
            msg = f"log:   {parsed['level']} {labels.text(parsed.get('message', ''))}"
            extra = {k: v for k, v in parsed.items() if k not in ("timestamp", "level", "message", "target")}
            if extra:
                msg += " " + labels.text(json.dumps(extra, separators=(",", ":"), sort_keys=True))
            print(msg + (f"  [{note}]" if note else ""))

    after, mails = snapshot(a.endpoint, labels)
    changes = diff(before, after)
    print("AWS:" + ("" if changes else " nothing changed"))
    for line in changes:
        print(line)
    new_mails = mails[before.get("mails", 0):]
    for m in new_mails:
        to = ", ".join(m["destinations"].get("ToAddresses", []))
        print(f"mail:  to {to} from {m['source']}, \"{m['subject']}\"")
        print(f"       {mail_text(m)}")
    if not new_mails:
        print("mail:  none")

    with open(state_path, "w") as f:
        json.dump(after, f)
    with open(os.path.join(a.dir, "steps.jsonl"), "a") as f:
        f.write(json.dumps({"file": (title.split(" ")[0] + " fired") if title else name, "outcomes": outcomes, "actions": actions,
                            "failures": [x["itemIdentifier"] for x in answer.get("batchItemFailures", [])],
                            "mails": len(new_mails)}) + "\n")
    labels.save()


def summary(a):
    labels = Labels(os.path.join(a.dir, "placeholders.json"))
    print(paint("\n== summary", "1"))
    print(f"   {'step':<28} {'outcome':<20} {'AWS changes':>11}  {'mails':>5}  batchItemFailures")
    with open(os.path.join(a.dir, "steps.jsonl")) as f:
        for i, line in enumerate(f, 1):
            s = json.loads(line)
            print(f"   {f'{i}. ' + s['file']:<28} {', '.join(s['outcomes']):<20} {s['actions']:>11}  "
                  f"{s['mails']:>5}  {', '.join(s['failures']) or '-'}")
    state, mails = snapshot(a.endpoint, labels)
    print("   now in AWS:")
    for name, u in sorted(state["users"].items()):
        if u is None:
            continue
        console = "console" if u["console"].startswith("yes") else "no console"
        keys = f"{len(u['access keys'])} access key" + ("s" if len(u["access keys"]) != 1 else "")
        print(f"     user {name}: {u['tags'].get('hr:status')}, groups {as_text(u['groups'])}, {console}, {keys}")
    for name, s in sorted(state["secrets"].items()):
        print(f"     secret {name}: {s['state']}")
    print(f"     mails sent: {len(mails)}")


def show_users(endpoint, users):
    """The full state of some users (runs by hand)."""
    labels = RawLabels()
    iam, sm = clients(endpoint)
    if not users:
        users = [u["UserName"] for p in iam.get_paginator("list_users").paginate(PathPrefix=USER_PATH)
                 for u in p["Users"]]
    for name in users:
        u = user_state(iam, name, labels)
        if u is None:
            print(f"--- user {name}: none")
            continue
        out = []
        describe_whole("user", name, u, out)
        s = secret_state(sm, endpoint, SECRET_PREFIX + name, labels, u["_key_created"])
        if s is None:
            out.append(f"  secret {SECRET_PREFIX}{name}: none")
        else:
            describe_whole("secret", SECRET_PREFIX + name, s, out)
        print("\n".join(line.replace("  + ", "--- ", 1).replace(": new", "") for line in out))
    mails = moto_data(endpoint).get("ses", {}).get("Message", [])
    print(f"--- mails sent: {len(mails)}")
    for m in mails:
        print(f"    to {', '.join(m['destinations'].get('ToAddresses', []))}: \"{m['subject']}\": {mail_text(m)}")


def main(argv):
    if argv and argv[0] in ("step", "fire", "summary"):
        p = argparse.ArgumentParser(prog="moto_show.py " + argv[0])
        p.add_argument("--dir", required=True)
        p.add_argument("--endpoint", required=True)
        if argv[0] in ("step", "fire"):
            p.add_argument("--invoke-port", required=True)
            p.add_argument("--why", required=True)
            p.add_argument("schedule" if argv[0] == "fire" else "event_file")
        a = p.parse_args(argv[1:])
        return {"step": step, "fire": fire, "summary": summary}[argv[0]](a)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    show_users(argv[0], argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]) or 0)
