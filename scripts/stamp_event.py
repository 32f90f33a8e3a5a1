#!/usr/bin/env python3
"""Stamps a sample SQS event file with the current time, for the demo.

The function rejects an event whose `occurred_at` is older than MAX_EVENT_AGE_DAYS
or more than 5 minutes in the future, so the fixed timestamps of events/*.json
expire. This rewrites every `occurred_at` of the HR events in an SQS event file
(bare bodies, the JSON string of an SNS `Message`, an EventBridge `detail`, whose
`time` follows) and writes the copy elsewhere; events/ itself is never changed.

    stamp_event.py [--state FILE] IN OUT      (OUT "-" = stdout)

Order is kept across calls through the state file (JSON: event_id -> stamp):
- an event_id seen before gets the stamp it got then (a duplicate stays a
  duplicate: same id, same occurred_at);
- a new event_id gets the current time, whole seconds, and always at least one
  second after the previous new stamp, so events sent later are later (the
  leaver after the joiner, the rehire after the leaver).

Bodies are re-serialised key by key in their original order, repeated keys
included, so an invalid sample stays exactly as invalid; a body or Message that
is not JSON, and an occurred_at that is not an RFC 3339 timestamp, are left as
they are. A sample meant to be rejected for its time window must not be stamped.
An employee's start_date/end_date given as an RFC 3339 instant moves with its
occurred_at (same distance after it: "starts a week after HR entered it"); a
date-only value is left as it is.
Prints one line per stamped event to stderr.
"""

import argparse
import datetime as dt
import json
import os
import re
import sys
import tempfile

RFC3339 = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)


class Obj(list):
    """A JSON object as its list of (key, value) pairs: order and repeats kept."""

    def get(self, key):
        for k, v in self:
            if k == key:
                return v
        return None


class Num(str):
    """A JSON number kept as its source text."""


def parse(text):
    return json.loads(text, object_pairs_hook=Obj, parse_int=Num, parse_float=Num)


def dump(v):
    """Serialises like json.dumps' defaults (", " and ": "), keeping repeated keys."""
    if isinstance(v, Obj):
        return "{" + ", ".join(json.dumps(k) + ": " + dump(x) for k, x in v) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(dump(x) for x in v) + "]"
    if isinstance(v, Num):
        return str(v)
    return json.dumps(v)


class Clock:
    def __init__(self, state_path):
        self.path = state_path
        self.stamps = {}
        self.last = None
        if state_path and os.path.exists(state_path):
            with open(state_path) as f:
                saved = json.load(f)
            self.stamps = saved.get("events", {})
            self.last = saved.get("last")

    def stamp(self, key):
        if key in self.stamps:
            return self.stamps[key]
        now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        if self.last:
            previous = dt.datetime.strptime(self.last, "%Y-%m-%dT%H:%M:%SZ").replace(
                tzinfo=dt.timezone.utc
            )
            now = max(now, previous + dt.timedelta(seconds=1))
        s = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        self.stamps[key] = s
        self.last = s
        return s

    def save(self):
        if not self.path:
            return
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(self.path)))
        with os.fdopen(fd, "w") as f:
            json.dump({"last": self.last, "events": self.stamps}, f)
        os.replace(tmp, self.path)


def restamp(obj, clock, fallback_key, log):
    """Returns obj with the occurred_at of its event(s) replaced."""
    occurred = obj.get("occurred_at")
    new_time = None
    if isinstance(occurred, str) and RFC3339.match(occurred):
        event_id = obj.get("event_id")
        key = event_id if isinstance(event_id, str) and event_id else fallback_key
        new_time = clock.stamp(key)
        log.append(f"  occurred_at {new_time}  event {key}")
    out = Obj()
    detail_time = None
    for k, v in obj:
        if k == "occurred_at" and new_time:
            v = new_time
        elif k == "employee" and new_time and isinstance(v, Obj):
            v = shift_dates(v, occurred, new_time)
        elif k == "detail" and isinstance(v, Obj):
            v = restamp(v, clock, fallback_key + "/detail", log)
            t = v.get("occurred_at")
            detail_time = t if isinstance(t, str) else None
        elif k == "Message" and isinstance(v, str):
            try:
                inner = parse(v)
            except ValueError:
                inner = None
            if isinstance(inner, Obj):
                v = dump(restamp(inner, clock, fallback_key + "/Message", log))
        out.append((k, v))
    if detail_time:
        # An EventBridge event's own time follows its detail.
        out = Obj((k, detail_time if k == "time" and isinstance(v, str) else v) for k, v in out)
    return out


def shift_dates(employee, old, new):
    """The employee's RFC 3339 start_date/end_date, moved by new - old."""
    def when(s):
        return dt.datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00"))
    delta = when(new) - when(old)
    out = Obj()
    for k, v in employee:
        if k in ("start_date", "end_date") and isinstance(v, str) and RFC3339.match(v):
            v = (when(v) + delta).astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        out.append((k, v))
    return out


def stamp_file(data, clock, log):
    now_ms = str(int(dt.datetime.now(dt.timezone.utc).timestamp() * 1000))
    for i, record in enumerate(data.get("Records", [])):
        key = record.get("messageId") or f"record-{i}"
        body = record.get("body")
        if isinstance(body, str):
            try:
                value = parse(body)
            except ValueError:
                value = None
            if isinstance(value, Obj):
                record["body"] = dump(restamp(value, clock, key, log))
        attributes = record.get("attributes")
        if isinstance(attributes, dict):
            for name in ("SentTimestamp", "ApproximateFirstReceiveTimestamp"):
                if name in attributes:
                    attributes[name] = now_ms
    return data


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--state", help="JSON file keeping the stamps between calls")
    p.add_argument("input")
    p.add_argument("output", help='"-" for stdout')
    a = p.parse_args(argv)
    with open(a.input) as f:
        data = json.load(f)
    clock = Clock(a.state)
    log = []
    stamp_file(data, clock, log)
    text = json.dumps(data, indent=2) + "\n"
    if a.output == "-":
        sys.stdout.write(text)
    else:
        with open(a.output, "w") as f:
            f.write(text)
    clock.save()
    for line in log:
        print(line, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
