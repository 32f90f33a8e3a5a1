"""The load bench of issue 12: an acquisition day through the real path.

    N joiners -> moto's SQS (FIFO queue, MessageGroupId = employee_id, explicit
    MessageDeduplicationId = event_id, DLQ through RedrivePolicy as in the stack)
      -> an event-source loop of concurrency K (ReceiveMessage in batches of up to 10,
         invoke, delete what succeeded, leave the listed batchItemFailures)
      -> K function processes under the Lambda Runtime API emulator
      -> bench/tools/awsproxy.py: an account-wide token bucket of R IAM calls per
         second (IAM's own Throttling error above it), 40 ms per call
      -> moto (IAM, Secrets Manager, SES).

For each cell (K, N, R) it reports wall time against the bound (accepted IAM calls /
R), records in the DLQ, receives per record, throttling errors, GB-seconds, and
checks moto's end state: every joiner exactly once (one user, its key if any, one
secret, one mail, the welcome recorded: hr:welcome=sent:<event>).

    .venv/bin/python bench/load.py --binary target/release/bootstrap [--bare BINARY]
        [--cells 1:200:50,5:200:50] [--ci] [--out bench/results.md]

Exit status 1 if any cell has a record in the DLQ, a missing or duplicated joiner,
or (with --ci) fails its checks.
"""
import argparse
import json
import os
import random
import re
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ROOT, RuntimeEmulator, Stack, function_env, hr_event, write_section  # noqa: E402
from runtime_emulator import start_function  # noqa: E402

DEPTS = ("engineering", "sales", None)    # a third each: 2 groups + key, 1 group, default rule
FULL_CELLS = [(k, n, r) for (n, r) in ((200, 50), (1000, 50), (200, 10)) for k in (1, 5, 20)]
CI_CELLS = [(3, 30, 10)]


def log(s):
    print(s, file=sys.stderr, flush=True)


def stack_values(path=os.path.join(ROOT, "infra", "template.yaml")):
    """The stack's values the bench mirrors, read from the template."""
    text = open(path).read()

    def grab(pattern, default):
        m = re.search(pattern, text, re.M)
        return int(m.group(1)) if m else default
    return {
        "memory_mb": grab(r"^\s+MemorySize:\s*(\d+)", 128),
        "timeout_s": grab(r"^\s+Timeout:\s*(\d+)", 120),
        "visibility_s": grab(r"^\s+VisibilityTimeout:\s*(\d+)", 720),
        "max_receive": grab(r"^\s+maxReceiveCount:\s*(\d+)", 5),
        "batch_size": grab(r"^\s+BatchSize:\s*(\d+)", 10),
    }


def lambda_record(m, queue_arn):
    """An SQS message as Lambda's event source mapping hands it to the function."""
    return {
        "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
        "attributes": m.get("Attributes", {}), "messageAttributes": {},
        "md5OfBody": m.get("MD5OfBody", ""), "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn, "awsRegion": "us-east-1",
    }


class EventSource:
    """Lambda's SQS poller for one event source mapping, concurrency K. Each of the
    K workers owns one function process (one concurrent instance): receive up to
    `batch` messages, invoke, delete the records not listed in batchItemFailures; a
    failed invocation leaves the whole batch. SQS calls are serialised (moto's
    receive is not safe against a concurrent receive)."""

    def __init__(self, sqs, queue_url, queue_arn, emu, k, batch, invoke_timeout_s):
        self.sqs, self.url, self.arn, self.emu = sqs, queue_url, queue_arn, emu
        self.k, self.batch, self.invoke_timeout_s = k, batch, invoke_timeout_s
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.received = 0          # messages handed to the function, counting repeats
        self.receives = 0          # ReceiveMessage calls that returned messages
        self.deleted = 0
        self.handed_back = 0       # records listed in batchItemFailures (or whole batch failed)
        self.invocations = []      # {"n", "handler_ms", "failed", "error"}
        self.last_delete = None
        self.threads = []

    def start(self):
        for i in range(self.k):
            t = threading.Thread(target=self.worker, args=(i,), name=f"esm-{i}", daemon=True)
            t.start()
            self.threads.append(t)

    def join(self):
        self.stop.set()
        for t in self.threads:
            t.join(self.invoke_timeout_s + 10)

    def worker(self, i):
        idle = 0.05
        rng = random.Random(i)
        while not self.stop.is_set():
            with self.lock:
                r = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=self.batch,
                                             AttributeNames=["All"], MessageSystemAttributeNames=["All"],
                                             WaitTimeSeconds=0)
            msgs = r.get("Messages", [])
            if not msgs:
                self.stop.wait(idle * (0.5 + rng.random()))
                idle = min(idle * 2, 1.0)
                continue
            idle = 0.05
            with self.lock:
                self.receives += 1
                self.received += len(msgs)
            res = self.emu.invoke({"Records": [lambda_record(m, self.arn) for m in msgs]},
                                  self.invoke_timeout_s)
            resp = res.get("response")
            if isinstance(resp, dict) and res.get("error") is None:
                failed = {f["itemIdentifier"] for f in resp.get("batchItemFailures", [])}
            else:
                failed = {m["MessageId"] for m in msgs}
            done = [m for m in msgs if m["MessageId"] not in failed]
            if done:
                with self.lock:
                    self.sqs.delete_message_batch(QueueUrl=self.url, Entries=[
                        {"Id": str(j), "ReceiptHandle": m["ReceiptHandle"]} for j, m in enumerate(done)])
                    self.deleted += len(done)
                    self.last_delete = time.monotonic()
            with self.lock:
                self.handed_back += len(msgs) - len(done)
                self.invocations.append({"n": len(msgs), "handler_ms": res.get("handler_ms"),
                                         "failed": len(msgs) - len(done), "error": res.get("error")})

    def dlq_depth(self, dlq_url):
        with self.lock:
            a = self.sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["ApproximateNumberOfMessages"])
        return int(a["Attributes"]["ApproximateNumberOfMessages"])


def joiners(n):
    out = []
    for i in range(n):
        b = hr_event("joined", 1 + i, dept=DEPTS[i % len(DEPTS)])
        if b["employee"]["department"] is None:
            del b["employee"]["department"]
        out.append(b)
    return out


def enqueue(sqs, url, bodies):
    for i in range(0, len(bodies), 10):
        chunk = bodies[i:i + 10]
        r = sqs.send_message_batch(QueueUrl=url, Entries=[
            {"Id": str(j), "MessageBody": json.dumps(b), "MessageGroupId": b["employee"]["employee_id"],
             "MessageDeduplicationId": b["event_id"]} for j, b in enumerate(chunk)])
        if r.get("Failed"):
            raise RuntimeError(f"SendMessageBatch failed: {r['Failed'][:1]}")


def check_end_state(data, bodies, counts):
    """Every joiner exactly once: one user (welcome recorded), its key if the rule
    gives one, a login profile, one secret, one mail. Returns (missing, duplicated, notes)."""
    users = {u["name"]: u for u in data.get("iam", {}).get("User", [])}
    keys = {}
    for k in data.get("iam", {}).get("AccessKey", []):
        keys[k["user_name"]] = keys.get(k["user_name"], 0) + 1
    secrets = {}
    for s in data.get("secretsmanager", {}).get("FakeSecret", []):
        secrets[s["name"]] = secrets.get(s["name"], 0) + 1
    mails = {}
    for m in data.get("ses", {}).get("Message", []):
        for to in m.get("destinations", {}).get("ToAddresses", []):
            mails[to] = mails.get(to, 0) + 1
    missing, dup, notes = [], [], []
    for b in bodies:
        e = b["employee"]
        name = e["username"]
        u = users.get(name)
        tags = {t["Key"]: t["Value"] for t in (u or {}).get("tags", [])}
        want_keys = 1 if e.get("department") == "engineering" else 0
        ok = (u is not None and tags.get("hr:welcome") == "sent:" + b["event_id"]
              and tags.get("hr:employee-id") == e["employee_id"] and bool(u.get("password"))
              and keys.get(name, 0) >= want_keys and secrets.get(f"hr-provisioner/{name}", 0) >= 1
              and mails.get(e["email"], 0) >= 1)
        if not ok:
            missing.append(name)
        if keys.get(name, 0) > want_keys or secrets.get(f"hr-provisioner/{name}", 0) > 1 \
                or mails.get(e["email"], 0) > 1:
            dup.append(name)
    iam = counts.get("iam", {})
    n, n_eng = len(bodies), sum(1 for b in bodies if b["employee"].get("department") == "engineering")
    for svc, op, want in (("iam", "CreateUser", n), ("iam", "CreateAccessKey", n_eng),
                          ("secretsmanager", "CreateSecret", n), ("sesv2", "SendEmail", n)):
        got = counts.get(svc, {}).get(op, 0)
        if got != want:
            notes.append(f"{op} succeeded {got} times, want {want}")
    if len(users) != n:
        notes.append(f"{len(users)} IAM users, want {n}")
    del iam
    return missing, dup, notes


def ok_counts(stats):
    """Calls per service/op that were answered 2xx (not throttled, not failed)."""
    out = {}
    for c in stats["calls"]:
        if not c.get("throttled") and c.get("status") and 200 <= c["status"] < 300:
            svc = out.setdefault(c["service"], {})
            svc[c["op"]] = svc.get(c["op"], 0) + 1
    return out


def run_cell(stack, binary, k, n, r, sv, args, outdir):
    import boto3
    kw = dict(endpoint_url=stack.moto, region_name="us-east-1", aws_access_key_id="test",
              aws_secret_access_key="test")
    sqs = boto3.client("sqs", **kw)
    stack.reset_seed()
    dlq_url = sqs.create_queue(QueueName="hr-events-dlq.fifo", Attributes={
        "FifoQueue": "true", "ContentBasedDeduplication": "false"})["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = sqs.create_queue(QueueName="hr-events.fifo", Attributes={
        "FifoQueue": "true", "ContentBasedDeduplication": "false",
        "VisibilityTimeout": str(args.visibility),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(sv["max_receive"])}),
    })["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bodies = joiners(n)
    enqueue(sqs, url, bodies)

    emu = RuntimeEmulator(0, args.deadline_ms).start()
    # The AWS path of the case-clash check (CreateUser's refusal, no ListUsers per
    # joiner): moto does not refuse a name that differs only in case, but no joiner
    # of the bench clashes, and the calls are those made against AWS.
    # MAX_INSTANCES = K: the stack passes the event source's MaximumConcurrency, so
    # each instance's pace floor is its share of RATE_FLOOR_PER_SECOND (default 10).
    env = function_env(stack.proxy, HR_IAM_CASE_CHECK=args.case_check, MAX_INSTANCES=str(k),
                       **dict(kv.split("=", 1) for kv in args.fn_env))
    procs, files = [], []
    for i in range(k):
        out = open(os.path.join(outdir, f"K{k}-N{n}-R{r}-fn{i}.out"), "wb")
        err = open(os.path.join(outdir, f"K{k}-N{n}-R{r}-fn{i}.err"), "wb")
        files += [out, err]
        p, _ = start_function(binary, env, emu.port, stdout=out, stderr=err, memory_mb=sv["memory_mb"])
        procs.append(p)
    # Every instance parked on GET /next before the clock starts.
    emu.wait_next_arrivals(k, 30, alive=lambda: all(p.poll() is None for p in procs))
    stack.proxy_config(iam_rate=r, iam_burst=args.burst_s * r, latency_ms=args.latency_ms)
    stack.proxy_reset()
    es = EventSource(sqs, url, arn, emu, k, sv["batch_size"], args.deadline_ms / 1000 + 10)
    t0 = time.monotonic()
    es.start()
    dlq = 0
    limit = args.cell_timeout
    end = None
    next_dlq_check = t0
    try:
        while time.monotonic() - t0 < limit:
            time.sleep(0.1)
            with es.lock:
                deleted = es.deleted
            if deleted >= n:
                end = es.last_delete
                break
            if es.handed_back and time.monotonic() >= next_dlq_check:
                next_dlq_check = time.monotonic() + 1.0
                dlq = es.dlq_depth(dlq_url)
                if deleted + dlq >= n:
                    end = time.monotonic()
                    break
    finally:
        es.join()
    wall = (end or time.monotonic()) - t0
    timed_out = end is None
    dlq = es.dlq_depth(dlq_url)
    stats = stack.proxy_stats()
    data = stack.data()
    for p in procs:
        p.kill()
        p.wait()
    for f in files:
        f.close()
    emu.stop()

    counts = ok_counts(stats)
    iam_calls = [c for c in stats["calls"] if c["service"] == "iam"]
    iam_accepted = sum(1 for c in iam_calls if not c.get("throttled"))
    throttles = {}
    for c in stats["calls"]:
        if c.get("throttled"):
            throttles[c["service"]] = throttles.get(c["service"], 0) + 1
    missing, dup, notes = check_end_state(data, bodies, counts)
    handler_s = sum((i["handler_ms"] or 0) for i in es.invocations) / 1000
    bound = iam_accepted / r
    row = {
        "K": k, "N": n, "R": r, "wall_s": wall, "bound_s": bound, "ratio": wall / bound if bound else None,
        "iam_calls": iam_accepted, "iam_per_joiner": iam_accepted / n,
        "dlq": dlq, "receives_per_record": es.received / n, "invocations": len(es.invocations),
        "handed_back": es.handed_back, "throttled_iam": throttles.get("iam", 0),
        "throttled_other": sum(v for s, v in throttles.items() if s != "iam"),
        "gb_s": handler_s * sv["memory_mb"] / 1024, "missing": len(missing), "duplicated": len(dup),
        "notes": notes + (["cell timed out"] if timed_out else []), "timed_out": timed_out,
        "counts_ok": not notes,
        "ops": counts.get("iam", {}),
        "mean_batch": statistics.mean(i["n"] for i in es.invocations) if es.invocations else 0,
        "max_handler_s": max(((i["handler_ms"] or 0) for i in es.invocations), default=0) / 1000,
    }
    if missing[:3] or dup[:3]:
        row["notes"].append(f"missing e.g. {missing[:3]}, duplicated e.g. {dup[:3]}")
    return row


def target_for(row):
    k, r = row["K"], row["R"]
    if k == 1:
        return 1.10
    if k >= r / 10:
        return 1.25
    return None


def verdict(row):
    t = target_for(row)
    clean = (row["dlq"] == 0 and row["missing"] == 0 and row["duplicated"] == 0 and not row["timed_out"]
             and row["counts_ok"])
    fast = t is None or (row["ratio"] is not None and row["ratio"] <= t)
    return clean, fast, t


def table(rows):
    lines = ["| K | N | R | wall | bound (IAM calls / R) | wall / bound | target | DLQ | receives / record | "
             "IAM throttling errors | IAM calls / joiner | GB-s | exactly once | |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for x in rows:
        clean, fast, t = verdict(x)
        once = "yes" if x["missing"] == 0 and x["duplicated"] == 0 and x["counts_ok"] else \
            f"**no**: {x['missing']} missing, {x['duplicated']} duplicated; {'; '.join(x['notes'])}"
        lines.append(
            f"| {x['K']} | {x['N']} | {x['R']} | {x['wall_s']:.1f} s | {x['bound_s']:.1f} s ({x['iam_calls']}) | "
            f"{x['ratio']:.2f}x | {'<= %.2fx' % t if t else '-'} | {x['dlq']} | {x['receives_per_record']:.2f} | "
            f"{x['throttled_iam']} | {x['iam_per_joiner']:.2f} | {x['gb_s']:.1f} | {once} | "
            f"{'met' if clean and fast else '**missed**'} |")
    return "\n".join(lines)


def machine():
    from bench import machine as m
    return m()


def cold_ratio(stack, binary, bare, runs, outdir):
    """Cold start of the provisioner and of a bare lambda_runtime function, same run,
    same method (bench.py: first answer after process start minus a warm answer)."""
    from bench import cold_starts
    prov, pf = cold_starts(stack, binary, runs, outdir, log)
    bar, bf = cold_starts(stack, bare, runs, outdir, log)
    med = lambda rows, key: statistics.median(r[key] for r in rows)  # noqa: E731
    return {"prov_cold": med(prov, "cold"), "bare_cold": med(bar, "cold"),
            "prov_next": med(prov, "next"), "bare_next": med(bar, "next"),
            "prov_first": med(prov, "first"), "bare_first": med(bar, "first"),
            "prov_warm": med(prov, "warm"), "bare_warm": med(bar, "warm"),
            "failures": pf + bf, "runs": runs}


def main():
    sv = stack_values()
    p = argparse.ArgumentParser()
    p.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "bootstrap"))
    p.add_argument("--bare", default=None, help="bare lambda_runtime binary: cold-start ratio")
    p.add_argument("--cold-runs", type=int, default=20)
    p.add_argument("--cells", default=None, help="K:N:R,... (default: the issue's 9 cells)")
    p.add_argument("--ci", action="store_true", help="the reduced scenario: K=3, N=30, R=10; no results.md")
    p.add_argument("--latency-ms", type=float, default=40.0)
    p.add_argument("--burst-s", type=float, default=1.0, help="IAM bucket size in seconds of R")
    p.add_argument("--visibility", type=int, default=sv["timeout_s"] + 30,
                   help="queue visibility timeout (stack: 720 s = 6x the 120 s function timeout)")
    p.add_argument("--deadline-ms", type=int, default=sv["timeout_s"] * 1000, help="function timeout")
    p.add_argument("--cell-timeout", type=float, default=1200)
    p.add_argument("--case-check", default="create", choices=("create", "scan"),
                   help="HR_IAM_CASE_CHECK of the function (create = the AWS path)")
    p.add_argument("--fn-env", action="append", default=[], metavar="K=V", help="extra function env")
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results.md"))
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args()
    if a.cells:
        cells = [tuple(int(x) for x in c.split(":")) for c in a.cells.split(",")]
    else:
        cells = CI_CELLS if a.ci else FULL_CELLS
    outdir = tempfile.mkdtemp(prefix="hr-load-")
    log(f"function output in {outdir}")
    started = time.time()
    stack = Stack(latency_ms=0, logdir=outdir)
    rows, cold = [], None
    try:
        if a.bare:
            log("cold starts: provisioner and bare lambda_runtime ...")
            cold = cold_ratio(stack, a.binary, a.bare, a.cold_runs, outdir)
        for (k, n, r) in cells:
            log(f"cell K={k} N={n} R={r} ...")
            row = run_cell(stack, a.binary, k, n, r, sv, a, outdir)
            rows.append(row)
            log(f"  wall {row['wall_s']:.1f} s, bound {row['bound_s']:.1f} s ({row['ratio']:.2f}x), "
                f"DLQ {row['dlq']}, receives/record {row['receives_per_record']:.2f}, "
                f"IAM throttles {row['throttled_iam']}, handed back {row['handed_back']}, "
                f"missing {row['missing']}, duplicated {row['duplicated']}, GB-s {row['gb_s']:.1f}, "
                f"max invocation {row['max_handler_s']:.1f} s {'; '.join(row['notes'])}")
    finally:
        stack.stop()
    total = time.time() - started
    text = table(rows)
    notes = [
        f"Machine: {machine()}.",
        f"Binary: `{os.path.relpath(a.binary, ROOT)}`. Stack values from infra/template.yaml: "
        f"MemorySize {sv['memory_mb']} MB (GB-s = sum of invocation durations x {sv['memory_mb']} MB), "
        f"Timeout {sv['timeout_s']} s (the emulator's deadline), BatchSize {sv['batch_size']}, "
        f"maxReceiveCount {sv['max_receive']}; VisibilityTimeout {sv['visibility_s']} s scaled to {a.visibility} s "
        f"(function timeout + 30 s, so a record can never be handed out twice at once).",
        f"Proxy: {a.latency_ms:g} ms per AWS call; IAM token bucket R calls/s, bucket {a.burst_s:g} s of R "
        f"(starts full); Secrets Manager and SES unthrottled. Joiners: a third each engineering (2 groups, "
        f"console, key), sales (1 group, console), default rule (1 group, console).",
        f"Wall = first ReceiveMessage to the last record deleted (or moved to the DLQ); the queue is filled "
        f"before. Bound = accepted IAM calls / R. Bench wall time {total:.0f} s.",
    ]
    if cold:
        ratio = cold["prov_cold"] / cold["bare_cold"] if cold["bare_cold"] > 0 else float("inf")
        notes.append(
            f"Cold start ({cold['runs']} starts each, bench.py's method: first answer after process start "
            f"minus a warm answer): provisioner {cold['prov_cold']:.2f} ms, bare lambda_runtime "
            f"{cold['bare_cold']:.2f} ms: **{ratio:.2f}x** (target <= 2x). Start -> first GET next: "
            f"{cold['prov_next']:.2f} vs {cold['bare_next']:.2f} ms.")
    body = text + "\n\n" + "\n".join(f"- {x}" for x in notes) + "\n"
    print(body)
    if not a.ci and not a.no_write:
        write_section(a.out, "load", "## Load: acquisition day (issue 12)\n\n"
                      f"Written by `scripts/load.sh` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.\n\n"
                      + body)
    bad = [x for x in rows if not verdict(x)[0]]
    if a.ci:
        for x in bad:
            log(f"FAIL K={x['K']} N={x['N']} R={x['R']}: DLQ {x['dlq']}, missing {x['missing']}, "
                f"duplicated {x['duplicated']} {'; '.join(x['notes'])}")
        log(f"load --ci: {len(rows) - len(bad)} passed, {len(bad)} failed ({total:.0f} s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
