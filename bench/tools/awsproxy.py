#!/usr/bin/env python3
"""Counting / delaying / throttling / crash-injecting reverse proxy for AWS calls.

Stdlib only (Python 3.11+). Binds and connects to 127.0.0.1 only.

    python awsproxy.py --listen-port P --upstream http://127.0.0.1:M
        [--latency-ms 40] [--throttle-rate 0.3 --seed 7]
        [--iam-rate 50 [--iam-burst 50]]
        [--kill-after-mutations K --kill-pid-file FILE] [--log FILE]

The function under test points AWS_ENDPOINT_URL at this proxy; the proxy
forwards to the upstream (a moto server).  Control endpoints (never forwarded):

    GET  /__proxy/stats   -> {"calls":[...], "counts":{svc:{op:n}}, ...}
    POST /__proxy/reset   -> clears calls/counts/killed_after (config kept)
    POST /__proxy/config  <- {"throttle_rate":..,"kill_after_mutations":..,
                              "latency_ms":..,"kill_pid":..,"seed":..,
                              "iam_rate":..,"iam_burst":..}
    GET  /__proxy/config  -> current config

Request and response bodies are never logged or stored (they hold secrets).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import sys
import time
import urllib.parse
import uuid

HOST = "127.0.0.1"
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
    "trailer", "upgrade", "proxy-authenticate", "proxy-authorization",
    "content-length", "expect",
}
READ_LIMIT = 4 * 1024 * 1024
CRED_SCOPE_RE = re.compile(r"Credential=[^/,\s]+/\d{8}/[^/,\s]+/([^/,\s]+)/aws4_request")

SM_READ_ONLY = {"GetSecretValue", "DescribeSecret", "ListSecrets", "BatchGetSecretValue",
                "ListSecretVersionIds", "GetResourcePolicy", "GetRandomPassword"}


class ProtocolError(Exception):
    pass


# --------------------------------------------------------------------------- HTTP/1.1 framing

async def read_head(reader: asyncio.StreamReader) -> tuple[str, list[tuple[str, str]]] | None:
    """Read a request/status line plus headers. None on clean EOF before any byte."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial.strip():
            return None
        raise ProtocolError("truncated head")
    except asyncio.LimitOverrunError:
        raise ProtocolError("head too large")
    lines = raw[:-4].decode("latin-1").split("\r\n")
    while lines and lines[0] == "":  # tolerate stray CRLF between messages
        lines.pop(0)
    if not lines:
        return None
    headers = []
    for line in lines[1:]:
        if ":" not in line:
            raise ProtocolError("bad header line")
        k, v = line.split(":", 1)
        headers.append((k.strip(), v.strip()))
    return lines[0], headers


def hget(headers, name, default=None):
    name = name.lower()
    for k, v in headers:
        if k.lower() == name:
            return v
    return default


async def read_chunked(reader: asyncio.StreamReader) -> bytes:
    out = bytearray()
    while True:
        line = await reader.readuntil(b"\r\n")
        size = int(line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            # trailers until empty line
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return bytes(out)
        out += await reader.readexactly(size)
        await reader.readexactly(2)


async def read_body(reader, headers, *, is_response=False, status=0, method="") -> tuple[bytes, bool]:
    """Returns (body, must_close)."""
    if is_response and (method == "HEAD" or 100 <= status < 200 or status in (204, 304)):
        return b"", False
    te = (hget(headers, "transfer-encoding") or "").lower()
    if "chunked" in te:
        return await read_chunked(reader), False
    cl = hget(headers, "content-length")
    if cl is not None:
        n = int(cl)
        return (await reader.readexactly(n) if n else b""), False
    if is_response:
        return await reader.read(), True  # read until close
    return b"", False


def serialize(first_line: str, headers, body: bytes) -> bytes:
    parts = [first_line]
    parts += [f"{k}: {v}" for k, v in headers]
    parts.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(parts) + "\r\n\r\n").encode("latin-1") + body


def wants_close(version: str, headers) -> bool:
    conn = (hget(headers, "connection") or "").lower()
    if "close" in conn:
        return True
    if version == "HTTP/1.0" and "keep-alive" not in conn:
        return True
    return False


# --------------------------------------------------------------------------- upstream pool

class UpstreamPool:
    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def _connect(self):
        return await asyncio.open_connection(self.host, self.port, limit=READ_LIMIT)

    async def request(self, method, target, headers, body) -> tuple[int, str, list, bytes]:
        out_headers = [(k, v) for k, v in headers if k.lower() not in HOP_BY_HOP]
        data = serialize(f"{method} {target} HTTP/1.1", out_headers, body)
        for attempt in range(2):
            reused = bool(self.idle)
            reader, writer = self.idle.pop() if reused else await self._connect()
            try:
                writer.write(data)
                await writer.drain()
                while True:
                    head = await read_head(reader)
                    if head is None:
                        raise ConnectionResetError("upstream closed before responding")
                    status_line, rheaders = head
                    version, status, *reason = status_line.split(" ", 2)
                    status = int(status)
                    if 100 <= status < 200:
                        continue
                    break
                rbody, must_close = await read_body(reader, rheaders, is_response=True,
                                                    status=status, method=method)
            except (ConnectionError, asyncio.IncompleteReadError, ProtocolError):
                writer.close()
                if reused and attempt == 0:
                    continue  # stale keep-alive connection: retry once on a fresh one
                raise
            if must_close or wants_close(version, rheaders):
                writer.close()
            else:
                self.idle.append((reader, writer))
            return status, (reason[0] if reason else ""), rheaders, rbody
        raise ConnectionResetError("unreachable")


# --------------------------------------------------------------------------- classification

def classify(method: str, path: str, query: str, headers, body: bytes):
    """-> (service, op, mutating, signing_name)"""
    auth = hget(headers, "authorization") or ""
    m = CRED_SCOPE_RE.search(auth)
    signing = m.group(1) if m else None
    target = hget(headers, "x-amz-target") or ""

    if target.lower().startswith("secretsmanager.") or (signing == "secretsmanager"):
        op = target.split(".", 1)[1] if "." in target else f"{method} {path}"
        ro = op in SM_READ_ONLY or op.startswith(("Get", "List", "Describe"))
        return "secretsmanager", op, not ro, signing

    if path.startswith("/v2/email/") or (signing == "ses" and path.startswith("/v2/")):
        if method == "POST" and path.rstrip("/") == "/v2/email/outbound-emails":
            return "sesv2", "SendEmail", True, signing
        return "sesv2", f"{method} {path}", method not in ("GET", "HEAD"), signing

    if signing == "scheduler":
        # REST: /schedules[/{name}]; the method names the operation.
        named = path.rstrip("/").count("/") >= 2
        op = {("GET", False): "ListSchedules", ("GET", True): "GetSchedule",
              ("POST", True): "CreateSchedule", ("PUT", True): "UpdateSchedule",
              ("DELETE", True): "DeleteSchedule"}.get((method, named), f"{method} {path}")
        return "scheduler", op, method not in ("GET", "HEAD"), signing

    action = None
    ctype = (hget(headers, "content-type") or "").lower()
    if body and ("x-www-form-urlencoded" in ctype or (not ctype and b"Action=" in body)):
        try:
            action = urllib.parse.parse_qs(body.decode("utf-8", "replace")).get("Action", [None])[0]
        except Exception:
            action = None
    if action is None and query:
        action = urllib.parse.parse_qs(query).get("Action", [None])[0]

    if signing == "iam" or (signing is None and action is not None):
        op = action or f"{method} {path}"
        return "iam", op, not op.startswith(("Get", "List")), signing
    op = action or f"{method} {path}"
    return "other", op, False, signing


def throttle_response(service: str):
    rid = str(uuid.uuid4())
    if service == "iam":
        body = ('<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">'
                "<Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error>"
                f"<RequestId>{rid}</RequestId></ErrorResponse>").encode()
        return 400, "Bad Request", [("Content-Type", "text/xml"), ("x-amzn-RequestId", rid)], body
    if service == "secretsmanager":
        body = b'{"__type":"ThrottlingException","message":"Rate exceeded"}'
        return 400, "Bad Request", [("Content-Type", "application/x-amz-json-1.1"),
                                    ("x-amzn-ErrorType", "ThrottlingException"),
                                    ("x-amzn-RequestId", rid)], body
    if service == "sesv2":
        body = b'{"message":"Too many requests"}'
        return 429, "Too Many Requests", [("Content-Type", "application/json"),
                                          ("x-amzn-ErrorType", "TooManyRequestsException"),
                                          ("x-amzn-RequestId", rid)], body
    return None


# --------------------------------------------------------------------------- account-wide rate limit

class TokenBucket:
    """IAM's account-wide request rate: `rate` tokens per second, at most `burst` kept.
    A call that finds no whole token is throttled and takes nothing (a refused call
    does not use up the account's rate)."""

    def __init__(self, rate: float, burst: float | None = None):
        self.rate = float(rate)
        self.burst = float(burst if burst else max(1.0, self.rate))
        self.tokens = self.burst
        self.t = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
        self.t = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


# --------------------------------------------------------------------------- proxy

class Proxy:
    def __init__(self, upstream: str, latency_ms=0.0, throttle_rate=0.0, seed=None,
                 kill_after_mutations=None, kill_pid_file=None, kill_pid=None, log_path=None,
                 iam_rate=None, iam_burst=None):
        u = urllib.parse.urlsplit(upstream)
        if u.scheme != "http" or u.hostname not in ("127.0.0.1", "localhost"):
            raise SystemExit("--upstream must be http://127.0.0.1:<port>")
        self.pool = UpstreamPool(HOST, u.port or 80)
        self.latency_ms = float(latency_ms or 0)
        self.throttle_rate = float(throttle_rate or 0)
        self.seed = seed
        self.rng = random.Random(seed)
        self.kill_after_mutations = kill_after_mutations
        self.kill_pid_file = kill_pid_file
        self.kill_pid = kill_pid
        self.mutations_since_arm = 0
        self.iam_rate = float(iam_rate) if iam_rate else None
        self.iam_burst = float(iam_burst) if iam_burst else None
        self.iam_bucket = TokenBucket(self.iam_rate, self.iam_burst) if self.iam_rate else None
        self.log = open(log_path, "a", buffering=1) if log_path else None
        self.reset()

    def reset(self):
        self.calls: list[dict] = []
        self.counts: dict[str, dict[str, int]] = {}
        self.killed_after = None
        self.kill_events: list[dict] = []

    def config(self):
        return {"latency_ms": self.latency_ms, "throttle_rate": self.throttle_rate, "seed": self.seed,
                "kill_after_mutations": self.kill_after_mutations, "kill_pid": self.kill_pid,
                "kill_pid_file": self.kill_pid_file, "mutations_since_arm": self.mutations_since_arm,
                "iam_rate": self.iam_rate, "iam_burst": self.iam_bucket.burst if self.iam_bucket else None}

    def apply_config(self, cfg: dict):
        if "latency_ms" in cfg:
            self.latency_ms = float(cfg["latency_ms"] or 0)
        if "throttle_rate" in cfg:
            self.throttle_rate = float(cfg["throttle_rate"] or 0)
        if "seed" in cfg:
            self.seed = cfg["seed"]
            self.rng = random.Random(self.seed)
        if "kill_pid" in cfg:
            self.kill_pid = cfg["kill_pid"]
        if "kill_pid_file" in cfg:
            self.kill_pid_file = cfg["kill_pid_file"]
        if "kill_after_mutations" in cfg:
            k = cfg["kill_after_mutations"]
            self.kill_after_mutations = int(k) if k else None
            self.mutations_since_arm = 0
        if "iam_rate" in cfg or "iam_burst" in cfg:
            # A new bucket starts full.
            self.iam_rate = float(cfg.get("iam_rate", self.iam_rate) or 0) or None
            self.iam_burst = float(cfg.get("iam_burst", self.iam_burst) or 0) or None
            self.iam_bucket = TokenBucket(self.iam_rate, self.iam_burst) if self.iam_rate else None

    def record(self, entry: dict):
        entry["seq"] = len(self.calls)
        self.calls.append(entry)
        svc = self.counts.setdefault(entry["service"], {})
        svc[entry["op"]] = svc.get(entry["op"], 0) + 1
        if self.log:
            line = {k: entry[k] for k in ("service", "op", "status", "ms")}
            for flag in ("throttled", "killed"):
                if entry.get(flag):
                    line[flag] = True
            line["t"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time()*1000)%1000:03d}Z"
            self.log.write(json.dumps(line) + "\n")

    def stats(self):
        return {"calls": self.calls, "counts": self.counts, "killed_after": self.killed_after,
                "kills": self.kill_events,
                "total": len(self.calls),
                "throttled": sum(1 for c in self.calls if c.get("throttled")),
                "rate_limited": sum(1 for c in self.calls if c.get("rate_limited")),
                "mutations": sum(1 for c in self.calls if c["mutating"] and not c.get("throttled")),
                "config": self.config()}

    def _kill_target(self):
        pid = self.kill_pid
        if pid is None and self.kill_pid_file:
            try:
                with open(self.kill_pid_file) as f:
                    pid = int(f.read().strip())
            except (OSError, ValueError):
                pid = None
        return int(pid) if pid is not None else None

    # ----------------------------------------------------------------- connection handling
    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        try:
            while True:
                head = await read_head(reader)
                if head is None:
                    break
                request_line, headers = head
                try:
                    method, target, version = request_line.split(" ", 2)
                except ValueError:
                    raise ProtocolError("bad request line")
                if (hget(headers, "expect") or "").lower() == "100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                body, _ = await read_body(reader, headers)
                close = wants_close(version, headers)
                keep = await self.dispatch(method, target, version, headers, body, writer, close)
                if not keep or close:
                    break
        except (ProtocolError, ValueError):
            try:
                writer.write(serialize("HTTP/1.1 400 Bad Request", [("Connection", "close")], b"bad request\n"))
                await writer.drain()
            except ConnectionError:
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if not writer.is_closing():
                writer.close()

    async def send(self, writer, status, reason, headers, body, close):
        hs = [(k, v) for k, v in headers if k.lower() not in HOP_BY_HOP]
        if close:
            hs.append(("Connection", "close"))
        writer.write(serialize(f"HTTP/1.1 {status} {reason}".rstrip(), hs, body))
        await writer.drain()

    async def dispatch(self, method, target, version, headers, body, writer, close) -> bool:
        split = urllib.parse.urlsplit(target)
        path, query = split.path or "/", split.query

        if path.startswith("/__proxy/"):
            return await self.control(method, path, body, writer, close)

        if path.startswith("/moto-api/"):
            status, reason, rh, rb = await self.forward(method, target, headers, body)
            await self.send(writer, status, reason, rh, rb, close)
            return True

        service, op, mutating, signing = classify(method, path, query, headers, body)
        t0 = time.monotonic()
        entry = {"service": service, "op": op, "mutating": mutating, "status": None,
                 "throttled": False, "t_mono_ns": time.monotonic_ns()}
        if service == "other" and signing:
            entry["signing_name"] = signing

        if self.latency_ms > 0:
            await asyncio.sleep(self.latency_ms / 1000.0)

        if self.throttle_rate > 0 and service in ("iam", "secretsmanager", "sesv2") \
                and self.rng.random() < self.throttle_rate:
            status, reason, rh, rb = throttle_response(service)
            entry.update(status=status, throttled=True, ms=round((time.monotonic() - t0) * 1000, 3))
            self.record(entry)
            await self.send(writer, status, reason, rh, rb, close)
            return True

        if service == "iam" and self.iam_bucket is not None and not self.iam_bucket.take():
            status, reason, rh, rb = throttle_response(service)
            entry.update(status=status, throttled=True, rate_limited=True,
                         ms=round((time.monotonic() - t0) * 1000, 3))
            self.record(entry)
            await self.send(writer, status, reason, rh, rb, close)
            return True

        kill_now = False
        if mutating and self.kill_after_mutations:
            self.mutations_since_arm += 1
            if self.mutations_since_arm >= self.kill_after_mutations:
                kill_now = True
                self.kill_after_mutations = None  # disarm before awaiting anything
                self.mutations_since_arm = 0

        status, reason, rh, rb = await self.forward(method, target, headers, body)
        entry.update(status=status, ms=round((time.monotonic() - t0) * 1000, 3))

        if kill_now:
            pid = self._kill_target()
            err = None
            if pid is None:
                err = "no pid to kill"
            else:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError as e:
                    err = str(e)
            entry["killed"] = True
            self.killed_after = op
            ev = {"killed_after": op, "service": service, "pid": pid, "seq": len(self.calls)}
            if err:
                ev["error"] = err
            self.kill_events.append(ev)
            self.record(entry)
            writer.transport.abort()  # drop the connection without an answer
            return False

        self.record(entry)
        await self.send(writer, status, reason, rh, rb, close)
        return True

    async def forward(self, method, target, headers, body):
        try:
            return await self.pool.request(method, target, headers, body)
        except (OSError, asyncio.IncompleteReadError, ProtocolError) as e:
            msg = json.dumps({"proxy_error": type(e).__name__}).encode()
            return 502, "Bad Gateway", [("Content-Type", "application/json")], msg

    async def control(self, method, path, body, writer, close) -> bool:
        def reply(obj, status=200):
            return self.send(writer, status, "OK" if status == 200 else "Error",
                             [("Content-Type", "application/json")], json.dumps(obj).encode(), close)
        if path == "/__proxy/stats" and method == "GET":
            await reply(self.stats())
        elif path == "/__proxy/reset" and method == "POST":
            self.reset()
            await reply({"ok": True})
        elif path == "/__proxy/config" and method == "POST":
            try:
                cfg = json.loads(body or b"{}")
                self.apply_config(cfg)
            except (ValueError, TypeError) as e:
                await reply({"error": str(e)}, 400)
                return True
            await reply(self.config())
        elif path == "/__proxy/config" and method == "GET":
            await reply(self.config())
        else:
            await reply({"error": "unknown control endpoint"}, 404)
        return True


async def amain(args):
    proxy = Proxy(args.upstream, latency_ms=args.latency_ms, throttle_rate=args.throttle_rate,
                  seed=args.seed, kill_after_mutations=args.kill_after_mutations,
                  kill_pid_file=args.kill_pid_file, log_path=args.log,
                  iam_rate=args.iam_rate, iam_burst=args.iam_burst)
    server = await asyncio.start_server(proxy.handle, HOST, args.listen_port, limit=READ_LIMIT,
                                        reuse_address=True)
    port = server.sockets[0].getsockname()[1]
    print(f"READY {port}", flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listen-port", type=int, required=True, help="0 = pick a free port (see READY line)")
    p.add_argument("--upstream", required=True, help="http://127.0.0.1:<moto port>")
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--throttle-rate", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--iam-rate", type=float, default=None,
                   help="account-wide IAM calls per second (token bucket); above it: Throttling")
    p.add_argument("--iam-burst", type=float, default=None, help="bucket size (default: one second of --iam-rate)")
    p.add_argument("--kill-after-mutations", type=int, default=None)
    p.add_argument("--kill-pid-file", default=None)
    p.add_argument("--log", default=None, help="append one JSON line per call (no bodies)")
    args = p.parse_args(argv)
    try:
        asyncio.run(amain(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
