#!/usr/bin/env python3
"""The front door on this machine, through the real Lambda protocol.

    front_door_local.py --endpoint MOTO_URL --port PORT --dir DIR [--sync]
        [--front-door target/debug/front-door] [--provisioner target/debug/bootstrap]

Against a moto server (already seeded, e.g. by moto_seed.py), it creates the FIFO
queue `hr-events.fifo` and the two token secrets (`hr-front-door/webhook`,
`hr-front-door/scim-token`, values written to DIR/keys.json), starts the
front-door and provisioner binaries behind two Lambda Runtime API emulators
(bench/tools/runtime_emulator.py), and serves HTTP on 127.0.0.1:PORT the way a
function URL does: each request becomes a function-URL event (payload 2.0; a body
that is not text/JSON base64-encoded, as Lambda does), the function's answer
becomes the HTTP answer.

The provisioner is fed from the queue as Lambda's event source mapping would: a
pump receives up to 10 messages, invokes it with the SQS batch, and deletes what
it did not list in batchItemFailures. With --sync the pump runs after every
request before the answer is returned (so a SCIM GET right after a POST sees the
user, as a test suite expects); without it, every 0.5 s in the background.

The functions' logs go to DIR/front-door.log and DIR/provisioner.log; DIR/ready
appears once everything answers. Binds 127.0.0.1 only; stops its processes on
SIGTERM/SIGINT.
"""
from __future__ import annotations

import argparse
import base64
import http.server
import json
import os
import pathlib
import secrets
import signal
import sys
import threading
import time
import urllib.parse
import uuid

import boto3

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench" / "tools"))
from runtime_emulator import RuntimeEmulator, start_function  # noqa: E402

QUEUE = "hr-events.fifo"
WEBHOOK_SECRET = "hr-front-door/webhook"
SCIM_SECRET = "hr-front-door/scim-token"
RULES = ('{"default":{"groups":["staff"],"console":true,"access_key":false},'
         '"departments":{"engineering":{"groups":["developers","staff"],"console":true,"access_key":true},'
         '"sales":{"groups":["sales"],"console":true,"access_key":false}}}')
FD_ARN = "arn:aws:lambda:us-east-1:123456789012:function:hr-front-door"
PROV_ARN = "arn:aws:lambda:us-east-1:123456789012:function:hr-iam-provisioner"
TEXT_TYPES = ("application/json", "text/")


def as_json(v):
    """The emulator hands back the function's answer parsed when it is JSON."""
    return json.loads(v) if isinstance(v, (str, bytes, bytearray)) else v


class Local:
    def __init__(self, args):
        self.args = args
        self.dir = pathlib.Path(args.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        aws = dict(endpoint_url=args.endpoint, region_name="us-east-1",
                   aws_access_key_id="test", aws_secret_access_key="test")
        self.sqs = boto3.client("sqs", **aws)
        self.sm = boto3.client("secretsmanager", **aws)
        self.lock = threading.Lock()
        self.procs = []
        self.emus = []
        self.pumped = 0

    def setup_aws(self):
        self.queue_url = self.sqs.create_queue(
            QueueName=QUEUE, Attributes={"FifoQueue": "true", "VisibilityTimeout": "30"})["QueueUrl"]
        keys = {"webhook": secrets.token_hex(24), "scim_token": secrets.token_hex(24)}
        for name, value in ((WEBHOOK_SECRET, keys["webhook"]), (SCIM_SECRET, keys["scim_token"])):
            try:
                self.sm.create_secret(Name=name, SecretString=json.dumps({"current": value}))
            except self.sm.exceptions.ResourceExistsException:
                self.sm.put_secret_value(SecretId=name, SecretString=json.dumps({"current": value}))
        (self.dir / "keys.json").write_text(json.dumps(keys))

    def start_functions(self):
        common = {"AWS_ENDPOINT_URL": self.args.endpoint, "AWS_ACCESS_KEY_ID": "test",
                  "AWS_SECRET_ACCESS_KEY": "test", "RUST_LOG": "info"}
        for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_LAMBDA_MAX_CONCURRENCY"):
            os.environ.pop(var, None)
        fd_env = dict(common, QUEUE_URL=self.queue_url, WEBHOOK_SECRET_ID=WEBHOOK_SECRET,
                      SCIM_TOKEN_SECRET_ID=SCIM_SECRET)
        prov_env = dict(common, SENDER_EMAIL=self.args.sender, PROVISIONING_RULES=self.args.rules)
        for binary, env, arn, log in ((self.args.front_door, fd_env, FD_ARN, "front-door.log"),
                                      (self.args.provisioner, prov_env, PROV_ARN, "provisioner.log")):
            emu = RuntimeEmulator(0, 60000, arn).start()
            out = open(self.dir / log, "ab")
            proc, _ = start_function(binary, env, emu.port, arn, stdout=out, stderr=out, memory_mb=256)
            self.emus.append(emu)
            self.procs.append(proc)
        self.front_door, self.provisioner = self.emus

    # ---- the event source mapping, in small
    def pump(self) -> int:
        """Feeds what the queue holds to the provisioner until it is empty; returns how
        many messages were applied."""
        applied = 0
        with self.lock:
            while True:
                out = self.sqs.receive_message(
                    QueueUrl=self.queue_url, MaxNumberOfMessages=10,
                    MessageSystemAttributeNames=["All"], WaitTimeSeconds=0)
                msgs = out.get("Messages", [])
                if not msgs:
                    return applied
                records = [{
                    "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                    "attributes": m.get("Attributes", {}), "messageAttributes": {},
                    "md5OfBody": m.get("MD5OfBody", ""), "eventSource": "aws:sqs",
                    "eventSourceARN": f"arn:aws:sqs:us-east-1:123456789012:{QUEUE}",
                    "awsRegion": "us-east-1"} for m in msgs]
                r = self.provisioner.invoke({"Records": records}, timeout=120)
                if r.get("response") is None:
                    print(f"provisioner invocation failed: {r.get('error')}", file=sys.stderr)
                    return applied
                failed = {f["itemIdentifier"] for f in as_json(r["response"]).get("batchItemFailures", [])}
                for m in msgs:
                    if m["MessageId"] in failed:
                        print(f"provisioner did not apply {m['MessageId']} (see provisioner.log)",
                              file=sys.stderr)
                        continue
                    self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])
                    applied += 1
                if failed:
                    # Failed messages come back after the visibility timeout; not here.
                    return applied

    # ---- the function URL
    def invoke_http(self, method, target, headers, body, client_ip):
        path, _, query = target.partition("?")
        ctype = headers.get("content-type", "")
        text = any(ctype.startswith(t) for t in TEXT_TYPES)
        now = time.time()
        event = {
            "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
            "headers": headers,
            "queryStringParameters": {k: v for k, v in urllib.parse.parse_qsl(query)} or None,
            "requestContext": {
                "accountId": "anonymous", "apiId": "local", "domainName": f"127.0.0.1:{self.args.port}",
                "domainPrefix": "127", "requestId": str(uuid.uuid4()), "routeKey": "$default",
                "stage": "$default", "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
                "timeEpoch": int(now * 1000),
                "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                         "sourceIp": client_ip, "userAgent": headers.get("user-agent", "")},
            },
            "isBase64Encoded": bool(body) and not text,
        }
        if body:
            event["body"] = body.decode() if text else base64.b64encode(body).decode()
        if event["queryStringParameters"] is None:
            del event["queryStringParameters"]
        r = self.front_door.invoke(event, timeout=60)
        if r.get("response") is None:
            return 502, {"content-type": "application/json"}, json.dumps({"error": str(r.get("error"))}).encode()
        resp = as_json(r["response"])
        out = resp.get("body") or ""
        data = base64.b64decode(out) if resp.get("isBase64Encoded") else out.encode()
        return int(resp.get("statusCode", 200)), resp.get("headers") or {}, data


def serve(local: Local, port: int, sync: bool):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def handle_any(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, out_headers, data = local.invoke_http(self.command, self.path, headers, body,
                                                          self.client_address[0])
            if sync and self.command != "GET" and 200 <= status < 300:
                local.pump()
            self.send_response(status)
            for k, v in out_headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any

        def log_message(self, fmt, *a):  # the functions' logs say it all
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--endpoint", required=True, help="moto's URL")
    p.add_argument("--port", type=int, required=True, help="HTTP port of the front door")
    p.add_argument("--dir", required=True)
    p.add_argument("--sync", action="store_true", help="apply queued events before each answer")
    p.add_argument("--front-door", default=str(ROOT / "target" / "debug" / "front-door"))
    p.add_argument("--provisioner", default=str(ROOT / "target" / "debug" / "bootstrap"))
    p.add_argument("--sender", default="it@example.com")
    p.add_argument("--rules", default=RULES)
    args = p.parse_args(argv)
    local = Local(args)
    local.setup_aws()
    local.start_functions()
    server = serve(local, args.port, args.sync)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    (local.dir / "ready").write_text(str(args.port))
    print(f"front door on http://127.0.0.1:{args.port} (webhook: POST /events, SCIM: /scim/v2); "
          f"keys in {local.dir / 'keys.json'}", file=sys.stderr, flush=True)
    while not stop.wait(0.5):
        if not args.sync:
            local.pump()
        if any(proc.poll() is not None for proc in local.procs):
            print("a function process exited; see its log", file=sys.stderr)
            break
    server.shutdown()
    for proc in local.procs:
        proc.terminate()
    for proc in local.procs:
        try:
            proc.wait(5)
        except Exception:
            proc.kill()
    for emu in local.emus:
        emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
