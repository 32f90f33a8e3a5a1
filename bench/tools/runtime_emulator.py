#!/usr/bin/env python3
"""Minimal AWS Lambda Runtime API emulator (one function process), stdlib only.

Serve mode (events from --events, if given, are queued at start-up):

    python runtime_emulator.py --port R [--events FILE.jsonl] [--deadline-ms 60000]
        [--function-arn arn:aws:lambda:us-east-1:123456789012:function:hr-iam-provisioner]

Spawn / cold-start mode (first line of --events is used for both invocations):

    python runtime_emulator.py --port R --events FILE.jsonl --spawn BINARY [--runs N]
        [--env K=V ...] [--env-file FILE] [--before-run CMD] [--child-output FILE]
        [--timeout-s 60] [--json]

Runtime API (what the function calls):
    GET  /2018-06-01/runtime/invocation/next
    POST /2018-06-01/runtime/invocation/{id}/response
    POST /2018-06-01/runtime/invocation/{id}/error
    POST /2018-06-01/runtime/init/error
Control API (what tests call):
    POST /__emu/invoke[?timeout_ms=N]  body = event JSON -> {"request_id","response","error","latency_ms"}
    POST /__emu/enqueue                body = event JSON -> {"request_id"} (does not wait)
    GET  /__emu/stats                  -> timestamps of every next/response/error
    POST /__emu/reset                  -> clears recorded stats (queue kept)
    POST /__emu/abort                  -> fails every invocation still waiting for an answer

Python API:
    emu = RuntimeEmulator(port=0).start()          # background thread
    proc, t0 = start_function(binary, env, emu.port)
    result = emu.invoke(event_dict, timeout=30)    # {"response":..., "latency_ms":...}
    emu.stop()
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid

HOST = "127.0.0.1"
DEFAULT_ARN = "arn:aws:lambda:us-east-1:123456789012:function:hr-iam-provisioner"
PREFIX = "/2018-06-01/runtime"
READ_LIMIT = 16 * 1024 * 1024


# --------------------------------------------------------------------------- tiny HTTP/1.1 server bits

class ProtocolError(Exception):
    pass


async def read_request(reader: asyncio.StreamReader):
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial.strip():
            return None
        raise ProtocolError("truncated head")
    lines = raw[:-4].decode("latin-1").split("\r\n")
    while lines and not lines[0]:
        lines.pop(0)
    if not lines:
        return None
    method, target, version = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                break
            body += await reader.readexactly(size)
            await reader.readexactly(2)
        body = bytes(body)
    else:
        n = int(headers.get("content-length", "0") or 0)
        body = await reader.readexactly(n) if n else b""
    return method, target, version, headers, body


def http_response(status: int, body: bytes, headers: dict | None = None, close=False) -> bytes:
    reasons = {200: "OK", 202: "Accepted", 400: "Bad Request", 404: "Not Found",
               405: "Method Not Allowed", 500: "Internal Server Error", 504: "Gateway Timeout"}
    hs = {"Content-Type": "application/json", **(headers or {}), "Content-Length": str(len(body))}
    hs["Date"] = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())
    if close:
        hs["Connection"] = "close"
    head = f"HTTP/1.1 {status} {reasons.get(status, 'OK')}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hs.items())
    return head.encode("latin-1") + b"\r\n" + body


def _decode(body: bytes):
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return body.decode("utf-8", "replace")


def _now():
    return time.monotonic_ns(), time.time()


class EventQueue:
    """FIFO of invocations with long-poll waiters; an undelivered event can go back to the front."""

    def __init__(self):
        import collections
        self.items = collections.deque()
        self.waiters = collections.deque()

    def qsize(self):
        return len(self.items)

    def _offer(self, inv, front=False):
        while self.waiters:
            w = self.waiters.popleft()
            if not w.done():
                w.set_result(inv)
                return
        (self.items.appendleft if front else self.items.append)(inv)

    def put(self, inv):
        self._offer(inv)

    def put_front(self, inv):
        self._offer(inv, front=True)

    def get_nowait(self):
        return self.items.popleft()

    def waiter(self, loop) -> asyncio.Future:
        fut = loop.create_future()
        if self.items:
            fut.set_result(self.items.popleft())
        else:
            self.waiters.append(fut)
        return fut

    def drop(self, fut):
        if fut in self.waiters:
            self.waiters.remove(fut)
        fut.cancel()


class Invocation:
    def __init__(self, event: bytes, loop: asyncio.AbstractEventLoop):
        self.id = str(uuid.uuid4())
        self.event = event
        self.future: asyncio.Future = loop.create_future()
        self.enqueued = _now()
        self.delivered = None
        self.answered = None
        self.kind = None  # "response" | "error" | "aborted" | "timeout"
        self.body = None
        self.error_type = None

    def record(self):
        d = {"request_id": self.id, "kind": self.kind,
             "enqueued_mono_ns": self.enqueued[0], "enqueued_wall": self.enqueued[1]}
        if self.delivered:
            d.update(delivered_mono_ns=self.delivered[0], delivered_wall=self.delivered[1])
        if self.answered:
            d.update(answered_mono_ns=self.answered[0], answered_wall=self.answered[1])
            d["latency_ms"] = (self.answered[0] - self.enqueued[0]) / 1e6
            if self.delivered:
                d["handler_ms"] = (self.answered[0] - self.delivered[0]) / 1e6
        if self.body is not None:
            d["body"] = self.body
        if self.error_type:
            d["error_type"] = self.error_type
        return d


# --------------------------------------------------------------------------- emulator

class RuntimeEmulator:
    def __init__(self, port: int = 0, deadline_ms: int = 60000, function_arn: str = DEFAULT_ARN):
        self.port = port
        self.deadline_ms = deadline_ms
        self.function_arn = function_arn
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread = None
        self._server = None
        self._ready = threading.Event()
        self.queue: EventQueue | None = None
        self.invocations: dict[str, Invocation] = {}
        self.reset_stats()

    # ---- stats
    def reset_stats(self):
        self.next_arrivals: list[dict] = []      # {"mono_ns","wall"}
        self.answers: list[dict] = []            # {"request_id","kind","mono_ns","wall","body"}
        self.init_errors: list[dict] = []
        self.order: list[str] = []               # request ids in enqueue order (since reset)

    def stats(self) -> dict:
        return {"next_arrivals": list(self.next_arrivals), "answers": list(self.answers),
                "init_errors": list(self.init_errors),
                "invocations": [self.invocations[i].record() for i in self.order if i in self.invocations],
                "queued": self.queue.qsize() if self.queue else 0}

    # ---- lifecycle
    async def start_async(self):
        self.loop = asyncio.get_running_loop()
        self.queue = EventQueue()
        self._server = await asyncio.start_server(self._handle, HOST, self.port, limit=READ_LIMIT,
                                                  reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def start(self):
        """Run the server on a background thread; returns self once listening."""
        def run():
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self.start_async())
            self._ready.set()
            loop.run_forever()
            self._server.close()
            loop.set_exception_handler(lambda _loop, _ctx: None)  # quiet shutdown
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.run_until_complete(asyncio.sleep(0.05))
            loop.close()
        self._thread = threading.Thread(target=run, name="runtime-emulator", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self):
        if self.loop and self._thread:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)

    def _call(self, coro, timeout=None):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    # ---- thread-safe sync API (when started with start())
    def enqueue(self, event) -> str:
        return self._call(self.enqueue_async(event))

    def invoke(self, event, timeout: float | None = None) -> dict:
        t = timeout if timeout is not None else self.deadline_ms / 1000 + 5
        return self._call(self.invoke_async(event, t), t + 5)

    def wait(self, request_id: str, timeout: float | None = None) -> dict:
        t = timeout if timeout is not None else self.deadline_ms / 1000 + 5
        return self._call(self.wait_async(request_id, t), t + 5)

    def wait_next_arrivals(self, n: int, timeout: float, alive=lambda: True) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if len(self.next_arrivals) >= n:
                return True
            if not alive():
                return False
            time.sleep(0.0005)
        return False

    def abort_all(self, reason="aborted"):
        self.loop.call_soon_threadsafe(self._abort, reason)

    # ---- async API
    async def enqueue_async(self, event) -> str:
        if not isinstance(event, (bytes, bytearray)):
            event = json.dumps(event).encode() if not isinstance(event, str) else event.encode()
        inv = Invocation(bytes(event), self.loop)
        self.invocations[inv.id] = inv
        self.order.append(inv.id)
        self.queue.put(inv)
        return inv.id

    async def wait_async(self, request_id: str, timeout: float) -> dict:
        inv = self.invocations[request_id]
        try:
            await asyncio.wait_for(asyncio.shield(inv.future), timeout)
        except asyncio.TimeoutError:
            return {"request_id": inv.id, "response": None, "error": "timeout",
                    "latency_ms": None}
        out = {"request_id": inv.id, "latency_ms": (inv.answered[0] - inv.enqueued[0]) / 1e6,
               "response": None, "error": None}
        if inv.kind == "response":
            out["response"] = inv.body
        else:
            out["error"] = inv.body if inv.kind == "error" else inv.kind
            if inv.error_type:
                out["error_type"] = inv.error_type
        if inv.delivered:
            out["handler_ms"] = (inv.answered[0] - inv.delivered[0]) / 1e6
        return out

    async def invoke_async(self, event, timeout: float) -> dict:
        rid = await self.enqueue_async(event)
        return await self.wait_async(rid, timeout)

    def _abort(self, reason):
        for inv in self.invocations.values():
            if not inv.future.done():
                inv.kind, inv.answered = reason, _now()
                inv.future.set_result(None)

    # ---- HTTP
    async def _handle(self, reader, writer):
        try:
            while True:
                req = await read_request(reader)
                if req is None:
                    break
                method, target, version, headers, body = req
                close = "close" in headers.get("connection", "").lower() or version == "HTTP/1.0"
                status, rbody, rheaders = await self._route(method, target, headers, body, reader)
                if status is None:   # client vanished while long-polling
                    break
                writer.write(http_response(status, rbody, rheaders, close))
                await writer.drain()
                if close:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ProtocolError, ValueError):
            pass
        finally:
            writer.close()

    async def _route(self, method, target, headers, body, reader):
        path, _, query = target.partition("?")
        j = lambda o: json.dumps(o).encode()
        if path == PREFIX + "/invocation/next":
            if method != "GET":
                return 405, j({"errorMessage": "method not allowed"}), None
            return await self._next(reader)
        if path.startswith(PREFIX + "/invocation/") and method == "POST":
            rest = path[len(PREFIX + "/invocation/"):]
            rid, _, what = rest.partition("/")
            inv = self.invocations.get(rid)
            if what not in ("response", "error"):
                return 404, j({"errorMessage": "not found"}), None
            if inv is None or inv.future.done():
                return 400, j({"errorMessage": "Invalid request ID", "errorType": "InvalidRequestID"}), None
            inv.answered = _now()
            inv.kind = what
            inv.body = _decode(body)
            if what == "error":
                inv.error_type = headers.get("lambda-runtime-function-error-type")
            self.answers.append({"request_id": rid, "kind": what, "mono_ns": inv.answered[0],
                                 "wall": inv.answered[1], "body": inv.body})
            inv.future.set_result(None)
            return 202, j({"status": "OK"}), None
        if path == PREFIX + "/init/error" and method == "POST":
            t = _now()
            self.init_errors.append({"mono_ns": t[0], "wall": t[1], "body": _decode(body),
                                     "error_type": headers.get("lambda-runtime-function-error-type")})
            return 202, j({"status": "OK"}), None
        if path == "/__emu/invoke" and method == "POST":
            q = urllib.parse.parse_qs(query)
            timeout = float(q.get("timeout_ms", [self.deadline_ms + 5000])[0]) / 1000
            res = await self.invoke_async(body, timeout)
            return (200 if res.get("error") != "timeout" else 504), j(res), None
        if path == "/__emu/enqueue" and method == "POST":
            return 200, j({"request_id": await self.enqueue_async(body)}), None
        if path == "/__emu/stats" and method == "GET":
            return 200, j(self.stats()), None
        if path == "/__emu/reset" and method == "POST":
            self.reset_stats()
            return 200, j({"ok": True}), None
        if path == "/__emu/abort" and method == "POST":
            self._abort("aborted")
            return 200, j({"ok": True}), None
        return 404, j({"errorMessage": "not found"}), None

    async def _next(self, reader):
        t = _now()
        self.next_arrivals.append({"mono_ns": t[0], "wall": t[1]})
        fut = self.queue.waiter(self.loop)
        # Long-poll; every 20 ms check whether the function went away (EOF) so that an
        # event is never handed to a dead process. Polling adds no latency to delivery.
        while True:
            done, _ = await asyncio.wait({fut}, timeout=0.02)
            if reader.at_eof():
                if fut.done() and not fut.cancelled():
                    self.queue.put_front(fut.result())   # not delivered: keep its place
                else:
                    self.queue.drop(fut)
                return None, b"", None
            if done:
                break
        inv = fut.result()
        inv.delivered = _now()
        deadline = int(time.time() * 1000) + self.deadline_ms
        trace = f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)};Parent={secrets.token_hex(8)};Sampled=0"
        return 200, inv.event, {
            "Lambda-Runtime-Aws-Request-Id": inv.id,
            "Lambda-Runtime-Deadline-Ms": str(deadline),
            "Lambda-Runtime-Invoked-Function-Arn": self.function_arn,
            "Lambda-Runtime-Trace-Id": trace,
        }


# --------------------------------------------------------------------------- spawning the function

def lambda_env(runtime_port: int, function_arn: str = DEFAULT_ARN, memory_mb: int = 128,
               extra: dict | None = None, inherit: bool = True) -> dict:
    parts = function_arn.split(":")
    region = parts[3] if len(parts) > 3 and parts[3] else "us-east-1"
    name = parts[6] if len(parts) > 6 else "function"
    env = dict(os.environ) if inherit else {}
    env.update({
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": time.strftime("%Y/%m/%d/[$LATEST]") + secrets.token_hex(16),
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "_HANDLER": "bootstrap",
    })
    env.update(extra or {})
    env["AWS_LAMBDA_RUNTIME_API"] = f"{HOST}:{runtime_port}"
    return env


def start_function(binary, env: dict | None, port: int, function_arn: str = DEFAULT_ARN,
                   stdout=None, stderr=None, memory_mb: int = 128):
    """Start the function process against the emulator on `port`.
    Returns (Popen, t0_monotonic_ns) where t0 is taken just before Popen."""
    full_env = lambda_env(port, function_arn, memory_mb, env)
    argv = binary if isinstance(binary, (list, tuple)) else [binary]
    t0 = time.monotonic_ns()
    proc = subprocess.Popen(argv, env=full_env, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL)
    return proc, t0


def measure_cold_starts(binary, event, env: dict | None = None, runs: int = 5, port: int = 0,
                        deadline_ms: int = 60000, function_arn: str = DEFAULT_ARN, timeout_s: float = 60,
                        before_run: str | None = None, child_output=None, log=print) -> dict:
    emu = RuntimeEmulator(port, deadline_ms, function_arn).start()
    out = subprocess.DEVNULL if child_output is None else child_output
    results, failures = [], []
    try:
        for i in range(runs):
            if before_run:
                subprocess.run(before_run, shell=True, check=True)
            emu.reset_stats()
            rid1 = emu.enqueue(event)   # queued before the process exists: init + first invoke
            proc, t0 = start_function(binary, env, emu.port, function_arn, stdout=out, stderr=out)
            try:
                r1 = emu.wait(rid1, timeout_s)
                if r1["latency_ms"] is None or not emu.next_arrivals:
                    raise RuntimeError(f"first invocation: {r1.get('error')} (exit={proc.poll()})")
                inv1 = emu.invocations[rid1]
                first_next = emu.next_arrivals[0]["mono_ns"]
                # make sure the function is parked on /next again before the warm call
                if not emu.wait_next_arrivals(2, timeout_s, alive=lambda: proc.poll() is None):
                    raise RuntimeError(f"function did not ask for a second event (exit={proc.poll()})")
                r2 = emu.invoke(event, timeout_s)
                if r2["latency_ms"] is None:
                    raise RuntimeError(f"warm invocation: {r2.get('error')} (exit={proc.poll()})")
                row = {
                    "start_to_first_next_ms": (first_next - t0) / 1e6,
                    "start_to_first_answer_ms": (inv1.answered[0] - t0) / 1e6,
                    "first_handler_ms": r1.get("handler_ms"),
                    "warm_answer_ms": r2["latency_ms"],
                    "warm_handler_ms": r2.get("handler_ms"),
                    "first_kind": inv1.kind, "warm_kind": emu.invocations[r2["request_id"]].kind,
                }
                row["cold_start_ms"] = row["start_to_first_answer_ms"] - row["warm_answer_ms"]
                results.append(row)
                log(f"run {i + 1}/{runs}: " + ", ".join(
                    f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
            except Exception as e:  # noqa: BLE001
                failures.append(str(e))
                log(f"run {i + 1}/{runs}: FAILED: {e}")
                emu.abort_all("aborted")
            finally:
                proc.kill()
                proc.wait()
                # drain anything a failed run left in the queue
                emu.loop.call_soon_threadsafe(emu.queue.items.clear)
    finally:
        emu.stop()
    summary = {}
    for key in ("start_to_first_next_ms", "start_to_first_answer_ms", "warm_answer_ms", "cold_start_ms",
                "first_handler_ms", "warm_handler_ms"):
        vals = [r[key] for r in results if r.get(key) is not None]
        if vals:
            summary[key] = {"median": statistics.median(vals), "max": max(vals), "min": min(vals), "n": len(vals)}
    return {"runs": results, "failures": failures, "summary": summary}


# --------------------------------------------------------------------------- CLI

def read_events(path):
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=0, help="0 = pick a free port (see READY line)")
    p.add_argument("--events", help="JSONL: one Lambda event per line")
    p.add_argument("--deadline-ms", type=int, default=60000)
    p.add_argument("--function-arn", default=DEFAULT_ARN)
    p.add_argument("--spawn", metavar="BINARY", help="cold-start measurement mode")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--env", action="append", default=[], metavar="K=V", help="extra env for the function")
    p.add_argument("--env-file", help="file of K=V lines for the function")
    p.add_argument("--memory-mb", type=int, default=128)
    p.add_argument("--before-run", metavar="CMD", help="shell command run before each spawn (e.g. reset moto)")
    p.add_argument("--child-output", metavar="FILE", help="append the function's stdout/stderr here (default: discard)")
    p.add_argument("--timeout-s", type=float, default=60)
    p.add_argument("--json", action="store_true", help="print full JSON result (spawn mode)")
    args = p.parse_args(argv)

    if args.spawn:
        if not args.events:
            p.error("--spawn needs --events")
        event = read_events(args.events)[0].encode()
        env = {}
        if args.env_file:
            with open(args.env_file) as f:
                for line in f:
                    line = line.strip()
                    if line and not line.startswith("#") and "=" in line:
                        k, v = line.split("=", 1)
                        env[k.strip()] = v.strip()
        for kv in args.env:
            k, v = kv.split("=", 1)
            env[k] = v
        child_out = open(args.child_output, "ab") if args.child_output else None
        res = measure_cold_starts(shlex.split(args.spawn), event, env, args.runs, args.port, args.deadline_ms,
                                  args.function_arn, args.timeout_s, args.before_run, child_out,
                                  log=lambda s: print(s, file=sys.stderr, flush=True))
        if args.json:
            print(json.dumps(res, indent=2))
        else:
            print(f"{'metric':<28}{'median ms':>12}{'max ms':>12}{'n':>5}")
            for k, v in res["summary"].items():
                print(f"{k:<28}{v['median']:>12.2f}{v['max']:>12.2f}{v['n']:>5}")
            if res["failures"]:
                print(f"failures: {len(res['failures'])}: {res['failures'][0]}")
        sys.exit(1 if res["failures"] or not res["runs"] else 0)

    async def serve():
        emu = await RuntimeEmulator(args.port, args.deadline_ms, args.function_arn).start_async()
        if args.events:
            for ev in read_events(args.events):
                await emu.enqueue_async(ev.encode())
        print(f"READY {emu.port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
