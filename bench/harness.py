"""Shared pieces of the benchmark and the fault suite: moto + the proxy on loopback,
seeding, HR events, SQS batches, and the function as a real process under the
runtime emulator. Run with the project's venv python (it has boto3)."""
import datetime
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench", "tools"))
from runtime_emulator import RuntimeEmulator, start_function  # noqa: E402

VENV = os.path.join(ROOT, ".venv", "bin")
SENDER = "it@example.com"
RULES = ('{"default":{"groups":["staff"],"console":true,"access_key":false},'
         '"departments":{"engineering":{"groups":["developers","staff"],"console":true,"access_key":true},'
         '"sales":{"groups":["sales"],"console":true,"access_key":false}}}')


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, timeout=30):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        raw = r.read()
    try:
        return json.loads(raw)
    except ValueError:
        return raw


MINISTACK = os.path.join(ROOT, ".venv-ministack", "bin", "ministack")


class Stack:
    """An emulator + awsproxy, both on 127.0.0.1; stop() ends only what it started.

    emulator="moto" (the default, every bench) or "ministack": a second emulator
    (scripts/venv.sh installs it) whose calls cost far less of its time than moto's,
    which opens a connection and a thread per call and serves them one at a time. The
    bench measures the batch and cold start ratios on both, so a figure shows what is
    the function's and what is the emulator's."""

    def __init__(self, latency_ms=0.0, throttle_rate=0.0, seed=7, logdir=None, emulator="moto"):
        self.procs = []
        self.logdir = logdir
        self.emulator = emulator
        mport = free_port()
        # `moto` names the emulator's own endpoint (whichever it is): the callers that
        # go around the proxy (seeding, SQS in the load bench) use it.
        self.moto = f"http://127.0.0.1:{mport}"
        mlog = open(os.path.join(logdir, f"{emulator}.log"), "ab") if logdir else subprocess.DEVNULL
        if emulator == "moto":
            # moto_server with its SQS receive's O(queue length) attribute scan taken
            # out (bench/tools/moto_server.py says why); the same moto otherwise.
            cmd, env, health = [os.path.join(VENV, "python"), os.path.join(ROOT, "bench", "tools", "moto_server.py"),
                                "-H", "127.0.0.1", "-p", str(mport)], None, "/moto-api/data.json"
        elif emulator == "ministack":
            cmd, health = [MINISTACK], "/_ministack/health"
            env = dict(os.environ, GATEWAY_PORT=str(mport), MINISTACK_HOST="127.0.0.1", LOG_LEVEL="WARNING")
        else:
            raise ValueError(f"unknown emulator {emulator!r}")
        self.procs.append(subprocess.Popen(cmd, env=env, stdout=mlog, stderr=mlog, stdin=subprocess.DEVNULL))
        for _ in range(300):
            try:
                http("GET", self.moto + health, timeout=2)
                break
            except Exception:  # noqa: BLE001
                time.sleep(0.1)
        else:
            raise RuntimeError(f"{emulator} did not start")
        args = [sys.executable, os.path.join(ROOT, "bench", "tools", "awsproxy.py"), "--listen-port", "0",
                "--upstream", self.moto, "--latency-ms", str(latency_ms), "--throttle-rate", str(throttle_rate),
                "--seed", str(seed)]
        proxy = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        self.procs.append(proxy)
        line = proxy.stdout.readline().decode()
        if not line.startswith("READY"):
            raise RuntimeError(f"proxy did not start: {line!r}")
        self.proxy = f"http://127.0.0.1:{int(line.split()[1])}"
        import boto3
        kw = dict(endpoint_url=self.moto, region_name="us-east-1",
                  aws_access_key_id="test", aws_secret_access_key="test")
        self.iam = boto3.client("iam", **kw)
        self.sm = boto3.client("secretsmanager", **kw)
        self.ses = boto3.client("sesv2", **kw)

    def reset_seed(self):
        reset = "/moto-api/reset" if self.emulator == "moto" else "/_ministack/reset"
        http("POST", self.moto + reset, b"")
        for g in ("developers", "staff", "sales"):
            self.iam.create_group(GroupName=g)
        self.iam.update_account_password_policy(
            MinimumPasswordLength=20, RequireSymbols=True, RequireNumbers=True,
            RequireUppercaseCharacters=True, RequireLowercaseCharacters=True)
        self.iam.create_account_alias(AccountAlias="acme-demo")
        self.ses.create_email_identity(EmailIdentity=SENDER)
        # moto builds a service's backend lazily on its first request after a reset;
        # touch Secrets Manager here so that cost is not charged to the function's
        # cold start (IAM and SES were touched by the seeding above).
        self.sm.list_secrets()
        self.proxy_reset()

    def proxy_config(self, **cfg):
        return http("POST", self.proxy + "/__proxy/config", cfg)

    def proxy_reset(self):
        return http("POST", self.proxy + "/__proxy/reset", b"")

    def proxy_stats(self):
        return http("GET", self.proxy + "/__proxy/stats")

    def data(self):
        return http("GET", self.moto + "/moto-api/data.json")

    def stop(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def function_env(endpoint, **extra):
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "SENDER_EMAIL": SENDER,
           "PROVISIONING_RULES": RULES}
    env.update({k: v for k, v in extra.items() if v is not None})
    # BENCH_FUNCTION_ENV="K=V,K=V" adds function settings (e.g. SIGNIN_URL) to a run.
    for pair in filter(None, os.environ.get("BENCH_FUNCTION_ENV", "").split(",")):
        k, _, v = pair.partition("=")
        env[k] = v
    return env


_seq = [0]


def event_time(day):
    """Day 22 is five days ago (09:00 UTC), day 23 four days ago, and so on: the
    function rejects events older than MAX_EVENT_AGE_DAYS or from the future, so
    the suite's events are stamped relative to the run."""
    base = datetime.datetime.now(datetime.timezone.utc).replace(hour=9, minute=0, second=0, microsecond=0)
    t = base - datetime.timedelta(days=5) + datetime.timedelta(days=day - 22)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def hr_event(kind, n, dept="engineering", day=22, event_id=None):
    """kind: 'joined' | 'left'. The same n is the same employee."""
    _seq[0] += 1
    user = f"emp{n:04d}"
    body = {
        "event_id": event_id or f"{kind}-{n:04d}-{_seq[0]:06d}-{os.getpid()}",
        "event_type": f"employee.{kind}",
        "occurred_at": event_time(day),
        "employee": {"employee_id": f"E{n:05d}", "email": f"{user}@example.com", "first_name": "Emp",
                     "last_name": f"N{n}", "department": dept, "manager_email": "lead@example.com",
                     "username": user},
    }
    return body


def sqs_event(bodies, fifo=False):
    recs = []
    for i, b in enumerate(bodies):
        attrs = {"ApproximateReceiveCount": "1", "SentTimestamp": "1763802000000", "SenderId": "AIDAHRSYSTEM",
                 "ApproximateFirstReceiveTimestamp": "1763802000001"}
        if fifo:
            attrs["MessageGroupId"] = b["employee"]["employee_id"]
        recs.append({
            "messageId": f"m-{b['event_id']}-{i}", "receiptHandle": f"rh-{b['event_id']}-{i}",
            "body": json.dumps(b), "attributes": attrs, "messageAttributes": {}, "md5OfBody": "",
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:hr-events" + (".fifo" if fifo else ""),
            "awsRegion": "us-east-1"})
    return {"Records": recs}


def failed_ids(resp):
    """messageIds the function reports failed (None response = whole batch failed)."""
    if not isinstance(resp, dict):
        return None
    return [f["itemIdentifier"] for f in resp.get("batchItemFailures", [])]


class Function:
    """One function process under an emulator; stdout/stderr captured to files."""

    def __init__(self, emu, binary, env, outdir, tag):
        self.out_path = os.path.join(outdir, f"{tag}.out")
        self.err_path = os.path.join(outdir, f"{tag}.err")
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        self.proc, self.t0 = start_function(binary, env, emu.port, stdout=self._out, stderr=self._err)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._out.close()
        self._err.close()

    def vm_hwm_kb(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None


def write_section(path, name, text):
    """Replaces one bench's section of results.md (between `<!-- name:begin -->` and
    `<!-- name:end -->`), keeping the others; appended if it is not there yet."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    old = open(path).read() if os.path.exists(path) else "# Benchmark results\n"
    block = f"{begin}\n{text.rstrip()}\n{end}\n"
    if begin in old and end in old:
        new = old[:old.index(begin)] + block + old[old.index(end) + len(end):].lstrip("\n")
        if not new.endswith("\n"):
            new += "\n"
    else:
        new = old.rstrip() + "\n\n" + block
    with open(path, "w") as f:
        f.write(new)
