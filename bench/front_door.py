"""Issue 20: requests per second one front-door instance sustains, and its latency
(p50/p99), with every AWS call 40 ms away (bench/tools/awsproxy.py in front of moto).

One instance = one function process under the Runtime API emulator, which hands it
one request at a time, as Lambda does. Each request is a function-URL event, sent
back to back for the whole run: the rate is requests / wall time. Three kinds:
a signed webhook (one SendMessage), a SCIM create (GetUser, SendMessage) and a SCIM
GET by id (GetUser). The token secrets are read once (cached 60 s), before the runs.

    .venv/bin/python bench/front_door.py --binary target/release/front-door [--n 200]

Prints a markdown table and writes it to bench/results.md (section front-door).
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import statistics
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import machine  # noqa: E402
from harness import ROOT, Function, RuntimeEmulator, Stack, write_section  # noqa: E402

KEY = "bench-webhook-key-0123456789abcdef0123456789"
TOKEN = "bench-scim-token-0123456789abcdef0123456789"


def url_event(method, path, body=b"", headers=None, query=""):
    now = time.time()
    return {
        "version": "2.0", "rawPath": path, "rawQueryString": query,
        "headers": {"content-type": "application/json", **(headers or {})},
        "requestContext": {"domainName": "bench.lambda-url.us-east-1.on.aws", "requestId": str(uuid.uuid4()),
                           "timeEpoch": int(now * 1000),
                           "http": {"method": method, "path": path, "sourceIp": "127.0.0.1"}},
        "body": base64.b64encode(body).decode(), "isBase64Encoded": True,
    }


def webhook(i):
    body = json.dumps({"event_id": f"bench-{uuid.uuid4()}", "event_type": "employee.joined",
                       "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "employee": {"employee_id": f"B{i}", "email": f"bench.{i}@example.com"}}).encode()
    t = str(int(time.time()))
    sig = hmac.new(KEY.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
    return url_event("POST", "/events", body, {"x-hr-signature": f"t={t},v1={sig}"}), 202


def scim_create(i):
    body = json.dumps({"userName": f"bench.scim.{uuid.uuid4().hex[:12]}", "externalId": f"S{i}",
                       "emails": [{"value": f"s{i}@example.com", "primary": True}]}).encode()
    return url_event("POST", "/scim/v2/Users", body, {"authorization": f"Bearer {TOKEN}"}), 201


def scim_get(_i):
    return url_event("GET", "/scim/v2/Users/bench.user", headers={"authorization": f"Bearer {TOKEN}"}), 200


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(p / 100 * len(s) + 0.5)) - 1))]


def baseline(calls, n):
    """The request's own AWS calls made straight through the same proxy, one after
    the other, by a plain boto3 client: what any front door must spend. Returns
    (requests/s, p50, p99) for the ratio columns."""
    lat = []
    start = time.monotonic()
    for i in range(n):
        t = time.monotonic()
        for c in calls:
            c(i)
        lat.append((time.monotonic() - t) * 1000)
    wall = time.monotonic() - start
    return n / wall, statistics.median(lat), pct(lat, 99)


def run(emu, make, n, log, name):
    lat, bad = [], 0
    start = time.monotonic()
    for i in range(n):
        event, want = make(i)
        r = emu.invoke(event, 30)
        resp = r.get("response")
        resp = json.loads(resp) if isinstance(resp, (str, bytes)) else resp
        if not resp or resp.get("statusCode") != want:
            bad += 1
        lat.append(r["latency_ms"] or 0.0)
    wall = time.monotonic() - start
    row = {"name": name, "n": n, "rps": n / wall, "p50": statistics.median(lat), "p99": pct(lat, 99),
           "max": max(lat), "bad": bad}
    log(f"  {name}: {row['rps']:.1f} req/s, p50 {row['p50']:.1f} ms, p99 {row['p99']:.1f} ms, {bad} not as expected")
    return row


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "front-door"))
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--latency-ms", type=float, default=40.0)
    p.add_argument("--results", default=os.path.join(ROOT, "bench", "results.md"))
    args = p.parse_args(argv)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    outdir = tempfile.mkdtemp(prefix="bench-front-door-")
    stack = Stack(latency_ms=args.latency_ms, logdir=outdir)
    emu = RuntimeEmulator(0, 60000, "arn:aws:lambda:us-east-1:123456789012:function:hr-front-door").start()
    fn = None
    try:
        stack.reset_seed()
        import boto3
        kw = dict(endpoint_url=stack.moto, region_name="us-east-1", aws_access_key_id="test",
                  aws_secret_access_key="test")
        q = boto3.client("sqs", **kw).create_queue(QueueName="hr-events.fifo",
                                                  Attributes={"FifoQueue": "true"})["QueueUrl"]
        for name, value in (("fd/webhook", KEY), ("fd/scim", TOKEN)):
            stack.sm.create_secret(Name=name, SecretString=json.dumps({"current": value}))
        stack.iam.create_user(UserName="bench.user", Path="/employees/", Tags=[
            {"Key": "hr:managed-by", "Value": "hr-provisioner"}, {"Key": "hr:employee-id", "Value": "E0"},
            {"Key": "hr:status", "Value": "active"}, {"Key": "hr:email", "Value": "bench.user@example.com"}])
        env = {"AWS_ENDPOINT_URL": stack.proxy, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
               "AWS_REGION": "us-east-1", "QUEUE_URL": q.replace(stack.moto, stack.proxy),
               "WEBHOOK_SECRET_ID": "fd/webhook", "SCIM_TOKEN_SECRET_ID": "fd/scim", "RUST_LOG": "warn"}
        fn = Function(emu, args.binary, env, outdir, "front-door")
        # Warm-up: the process, its connections, both secrets (cached afterwards).
        for make in (webhook, scim_get):
            emu.invoke(make(0)[0], 30)
        log(f"front door, one instance, {args.latency_ms:.0f} ms per AWS call, {args.n} requests each:")
        rows = [run(emu, webhook, args.n, log, "signed webhook (SendMessage)"),
                run(emu, scim_create, args.n, log, "SCIM POST /Users (GetUser, SendMessage)"),
                run(emu, scim_get, args.n, log, "SCIM GET /Users/{id} (GetUser)")]
        # Baselines, same run: the same AWS calls through the same proxy, from boto3.
        pkw = dict(kw, endpoint_url=stack.proxy)
        sqs, iam = boto3.client("sqs", **pkw), boto3.client("iam", **pkw)
        pq = q.replace(stack.moto, stack.proxy)
        send = lambda i: sqs.send_message(QueueUrl=pq, MessageBody=f"baseline {i} {uuid.uuid4()}",  # noqa: E731
                                          MessageGroupId=f"b{i}", MessageDeduplicationId=str(uuid.uuid4()))
        get = lambda i: iam.get_user(UserName="bench.user")  # noqa: E731
        n_base = max(20, args.n // 4)
        for row, calls in zip(rows, ([send], [get, send], [get])):
            row["base"] = baseline(calls, n_base)
            log(f"  baseline for {row['name']}: {row['base'][0]:.1f} req/s, p50 {row['base'][1]:.1f} ms, "
                f"p99 {row['base'][2]:.1f} ms")
    finally:
        if fn:
            fn.kill()
        emu.stop()
        stack.stop()
    lines = ["## Front door: one instance (issue 20)", "",
             f"Written by `scripts/bench.sh` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", "",
             "| request | requests/s (x baseline) | p50 (x baseline) | p99 (x baseline) | max | not as expected |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        brps, b50, b99 = r["base"]
        lines.append(f"| {r['name']} | {r['rps']:.1f} ({r['rps'] / brps:.2f}x) | {r['p50']:.1f} ms "
                     f"({r['p50'] / b50:.2f}x) | {r['p99']:.1f} ms ({r['p99'] / b99:.2f}x) | "
                     f"{r['max']:.1f} ms | {r['bad']} of {r['n']} |")
    lines += ["", f"- Machine: {machine()}.",
              f"- Binary: `{os.path.relpath(args.binary, ROOT)}`; every AWS call {args.latency_ms:.0f} ms away "
              "(awsproxy.py in front of moto); requests back to back through the Runtime API emulator, "
              "latency = enqueue -> answer.",
              "- Baseline (same run): the request's own AWS calls (SendMessage; GetUser then SendMessage; GetUser) "
              "made one after the other by a plain boto3 client through the same proxy, "
              f"{max(20, args.n // 4)} times: what any front door must spend per request.",
              "- The requests-per-second ceiling of the stack is `FrontDoorConcurrency` x the rate above "
              "(infra/README.md); in AWS a call to SQS or IAM takes less than 40 ms, so this is conservative."]
    text = "\n".join(lines)
    print(text)
    write_section(args.results, "front-door", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
