"""Fault-injection suite of issue 6: the function (a real process under the runtime
emulator) against moto through bench/tools/awsproxy.py.

  throttle   30% throttling on every service: 20 joiners + 10 leavers in one batch,
             failed records redelivered; all applied, nothing duplicated.
  crash      kill the process right after the k-th mutating call of a joiner, of a
             leaver (LEAVER_ACTION=disable) and of a leaver (delete), for every k;
             redeliver to a fresh process: end state == undisturbed run's.
  dup        20 joiners, each delivered 3 times, in shuffled batches of 10.
  leak       every password / secret key seen in the secrets is searched for in all
             captured stdout/stderr, the answers and the mails: 0 hits.

    .venv/bin/python bench/fault_suite.py [--binary target/debug/bootstrap] [--only crash,dup]

Last line: `N passed, M failed`; exit status 1 if any check failed.
"""
import argparse
import json
import os
import random
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ROOT, Function, RuntimeEmulator, Stack, failed_ids, function_env, hr_event, sqs_event  # noqa: E402

# The stack's function timeout (infra/template.yaml: 120 s). Under 30% throttling on
# every call the function paces itself down to its floor (RATE_FLOOR_PER_SECOND,
# default 10 calls/s per service), so a batch of 30 records needs about a minute.
DEADLINE_MS = 120000


def current_secret_string(sec):
    """The AWSCURRENT version's SecretString of a moto FakeSecret (its top-level
    secret_string is the first version's, not updated by PutSecretValue)."""
    for v in (sec.get("versions") or {}).values():
        if "AWSCURRENT" in (v.get("version_stages") or []):
            return v.get("secret_string")
    return sec.get("secret_string")


class Suite:
    def __init__(self, binary, outdir, verbose):
        self.binary, self.outdir, self.verbose = binary, outdir, verbose
        self.stack = Stack(latency_ms=0, logdir=outdir)
        self.passed = self.failed = 0
        self.needles = set()      # passwords and secret access keys seen
        self.answers = []         # every answer of the function, as text
        self.mails = []           # every mail body/subject seen
        self.n = 0

    # ------------------------------------------------------------------ plumbing
    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            if self.verbose:
                print(f"  ok   {name}", flush=True)
        else:
            self.failed += 1
            print(f"  FAIL {name} {detail}", flush=True)
        return ok

    def start(self, tag, **env):
        emu = RuntimeEmulator(0, DEADLINE_MS).start()
        self.n += 1
        fn = Function(emu, self.binary, function_env(self.stack.proxy, **env), self.outdir, f"{self.n:03d}-{tag}")
        return emu, fn

    @staticmethod
    def stop(emu, fn):
        fn.kill()
        emu.abort_all()
        emu.stop()

    def deliver(self, emu, event, timeout=DEADLINE_MS / 1000 + 10):
        r = emu.invoke(event, timeout)
        self.answers.append(json.dumps(r.get("response")) + " " + str(r.get("error")))
        return r

    def deliver_until_done(self, emu, bodies, fifo=False, batch=None, max_rounds=6):
        """Deliver records (in batches of `batch`), redelivering the failed ones like SQS
        would. Returns (rounds used, records still failing)."""
        pending = sqs_event(bodies, fifo)["Records"]
        for rnd in range(1, max_rounds + 1):
            size = batch or len(pending)
            still = []
            for i in range(0, len(pending), size):
                recs = pending[i:i + size]
                r = self.deliver(emu, {"Records": recs})
                ids = failed_ids(r["response"])
                if ids is None:          # whole invocation failed
                    still += recs
                else:
                    still += [x for x in recs if x["messageId"] in ids]
            if not still:
                return rnd, []
            for x in still:
                x["attributes"]["ApproximateReceiveCount"] = str(rnd + 1)
            pending = still
        return max_rounds, pending

    def data(self):
        """moto's data.json, or None (moto answers 500 once a user was deleted)."""
        try:
            d = self.stack.data()
        except Exception:  # noqa: BLE001
            return None
        for s in d.get("secretsmanager", {}).get("FakeSecret", []):
            self._harvest(s.get("secret_string"))
            for v in (s.get("versions") or {}).values():
                self._harvest(v.get("secret_string"))
        for m in d.get("ses", {}).get("Message", []):
            self.mails.append(f"{m.get('subject')}\n{m.get('body')}")
        for u in d.get("iam", {}).get("User", []):
            if u.get("password"):
                self.needles.add(u["password"])
        return d

    def _harvest(self, secret_string):
        try:
            v = json.loads(secret_string or "{}")
        except ValueError:
            return
        for k in ("password", "secret_access_key"):
            if v.get(k):
                self.needles.add(v[k])

    def state(self, n, data="fetch"):
        """What AWS holds for employee n, comparable between runs (no ids, no dates)."""
        iam, sm = self.stack.iam, self.stack.sm
        user, email = f"emp{n:04d}", f"emp{n:04d}@example.com"
        if data == "fetch":
            data = self.data()
        s = {}
        try:
            u = iam.get_user(UserName=user)["User"]
            s["user"] = u["Path"]
            s["tags"] = sorted((t["Key"], t["Value"]) for t in iam.list_user_tags(UserName=user)["Tags"])
            s["groups"] = sorted(g["GroupName"] for g in iam.list_groups_for_user(UserName=user)["Groups"])
            s["inline"] = sorted(iam.list_user_policies(UserName=user)["PolicyNames"])
            s["attached"] = sorted(p["PolicyName"] for p in
                                   iam.list_attached_user_policies(UserName=user)["AttachedPolicies"])
            try:
                iam.get_login_profile(UserName=user)
                s["login"] = True
            except iam.exceptions.NoSuchEntityException:
                s["login"] = False
            keys = iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
            s["keys"] = sorted(k["Status"] for k in keys)
            key_ids = {k["AccessKeyId"] for k in keys if k["Status"] == "Active"}
        except iam.exceptions.NoSuchEntityException:
            s["user"], key_ids = None, set()
        try:
            d = sm.describe_secret(SecretId=f"hr-provisioner/{user}")
            s["secret"] = "scheduled-deletion" if d.get("DeletedDate") else "active"
        except sm.exceptions.ResourceNotFoundException:
            s["secret"] = None
        if data is not None:
            sec = next((x for x in data.get("secretsmanager", {}).get("FakeSecret", [])
                        if x["name"] == f"hr-provisioner/{user}"), None)
            cur = current_secret_string(sec) if sec else None
            val = json.loads(cur) if cur else {}
            s["secret_fields"] = sorted(val)
            live = next((x for x in data.get("iam", {}).get("User", []) if x["name"] == user), None)
            creds_ok = True
            if s.get("login"):
                creds_ok &= bool(live) and val.get("password") == live.get("password")
            else:
                creds_ok &= "password" not in val
            held = {val["access_key_id"]} if val.get("access_key_id") else set()
            creds_ok &= held == key_ids
            s["creds_match"] = creds_ok
            s["mails"] = sum(1 for m in data.get("ses", {}).get("Message", [])
                             if email in m.get("destinations", {}).get("ToAddresses", []))
        return s

    def ok_calls(self, op):
        st = self.stack.proxy_stats()
        return sum(1 for c in st["calls"] if c["op"] == op and not c.get("throttled") and c.get("status") == 200)

    # ------------------------------------------------------------------ scenarios
    def joiner_ok(self, name, s, key):
        exp = {"user": "/employees/", "login": True, "keys": ["Active"] if key else [], "secret": "active",
               "creds_match": True, "mails": 1}
        bad = {k: s.get(k) for k, v in exp.items() if s.get(k) != v}
        return self.check(name, not bad, f"unexpected {bad}")

    def leaver_ok(self, name, s):
        exp = {"login": False, "keys": [], "groups": [], "secret": "scheduled-deletion", "creds_match": True}
        bad = {k: s.get(k) for k, v in exp.items() if s.get(k) != v}
        retired = ("hr:status", "retired") in s.get("tags", [])
        return self.check(name, not bad and retired, f"unexpected {bad} retired={retired}")

    def throttle(self):
        print("throttle: 30% throttling, 20 joiners + 10 leavers in one batch", flush=True)
        st = self.stack
        st.reset_seed()
        st.proxy_config(throttle_rate=0.0)
        emu, fn = self.start("throttle-setup")
        try:
            rounds, left = self.deliver_until_done(emu, [hr_event("joined", 100 + i) for i in range(10)], fifo=True)
            self.check("throttle: setup of 10 users to retire", not left)
        finally:
            self.stop(emu, fn)
        st.proxy_reset()
        st.proxy_config(throttle_rate=0.3, seed=42)
        depts = ["engineering"] * 15 + ["sales"] * 5
        bodies = [hr_event("joined", 200 + i, dept=depts[i]) for i in range(20)] + \
                 [hr_event("left", 100 + i, day=23) for i in range(10)]
        random.Random(3).shuffle(bodies)
        emu, fn = self.start("throttle")
        try:
            t = time.time()
            rounds, left = self.deliver_until_done(emu, bodies, fifo=True, max_rounds=5)
            stats = st.proxy_stats()
            st.proxy_config(throttle_rate=0.0)
            print(f"  {stats['throttled']} of {stats['total']} calls throttled; deliveries used: {rounds}; "
                  f"{time.time() - t:.1f} s", flush=True)
            self.check("throttle: every record applied within 5 deliveries", not left,
                       f"{len(left)} records still failing")
            self.check("throttle: proxy really throttled", stats["throttled"] > 20, str(stats["throttled"]))
            def ok_calls(op):
                return sum(1 for c in stats["calls"] if c["op"] == op and not c.get("throttled")
                           and c.get("status") == 200)
            for op, want in (("CreateUser", 20), ("CreateSecret", 20), ("SendEmail", 20)):
                got = ok_calls(op)
                self.check(f"throttle: {op} succeeded exactly {want} times", got == want, f"got {got}")
            # A record cut off by the invocation's deadline between CreateAccessKey and
            # the secret write is a crash there: the next delivery deletes that unstored
            # key and creates another (contract section 5). Every extra key must have
            # been deleted again: 10 leavers' keys + one per extra create.
            created, deleted = ok_calls("CreateAccessKey"), ok_calls("DeleteAccessKey")
            self.check("throttle: every access key created beyond the 15 joiners' was deleted again",
                       created >= 15 and deleted == 10 + (created - 15),
                       f"created {created}, deleted {deleted}")
        finally:
            self.stop(emu, fn)
        data = self.data()
        for i in range(20):
            self.joiner_ok(f"throttle: joiner emp{200 + i:04d}", self.state(200 + i, data), depts[i] == "engineering")
        for i in range(10):
            self.leaver_ok(f"throttle: leaver emp{100 + i:04d}", self.state(100 + i, data))

    def crash(self):
        cases = [("joiner", None, None), ("leaver-disable", "disable", 23), ("leaver-delete", "delete", 23)]
        for kind, action, day in cases:
            n = 500
            joiner = hr_event("joined", n, event_id=f"crash-join-{kind}")
            event = joiner if kind == "joiner" else hr_event("left", n, day=day, event_id=f"crash-leave-{kind}")
            record = sqs_event([event], fifo=True)

            def setup():
                self.stack.reset_seed()
                if kind != "joiner":
                    emu, fn = self.start(f"crash-{kind}-setup")
                    try:
                        r = self.deliver(emu, sqs_event([joiner], fifo=True))
                        assert failed_ids(r["response"]) == [], r
                    finally:
                        self.stop(emu, fn)
                    self.data()      # harvest the joiner's credentials while data.json works
                self.stack.proxy_reset()

            setup()
            emu, fn = self.start(f"crash-{kind}-undisturbed", LEAVER_ACTION=action)
            try:
                r = self.deliver(emu, record)
                self.check(f"crash/{kind}: undisturbed run applied", failed_ids(r["response"]) == [], str(r))
            finally:
                self.stop(emu, fn)
            muts = [c["op"] for c in self.stack.proxy_stats()["calls"] if c["mutating"] and not c.get("throttled")]
            base = self.state(n)
            print(f"crash/{kind}: {len(muts)} mutating calls: {', '.join(muts)}", flush=True)
            for k in range(1, len(muts) + 1):
                setup()
                emu, fn = self.start(f"crash-{kind}-k{k}", LEAVER_ACTION=action)
                try:
                    self.stack.proxy_config(kill_after_mutations=k, kill_pid=fn.proc.pid)
                    emu.enqueue(record)
                    try:
                        fn.proc.wait(30)
                    except Exception:  # noqa: BLE001
                        pass
                    killed = self.stack.proxy_stats().get("killed_after")
                    self.stack.proxy_config(kill_after_mutations=None)
                finally:
                    self.stop(emu, fn)
                if not self.check(f"crash/{kind} k={k}: killed after {killed}", fn.proc.returncode == -9,
                                  f"rc={fn.proc.returncode} killed_after={killed}"):
                    continue
                emu, fn = self.start(f"crash-{kind}-k{k}-redeliver", LEAVER_ACTION=action)
                try:
                    r = self.deliver(emu, record)
                    if failed_ids(r["response"]) != []:     # one more redelivery is allowed
                        r = self.deliver(emu, record)
                finally:
                    self.stop(emu, fn)
                s = self.state(n)
                diff = {key: (base.get(key), s.get(key)) for key in set(base) | set(s)
                        if key != "mails" and base.get(key) != s.get(key)}
                mails_ok = base.get("mails") is None or base["mails"] <= s.get("mails", -1) <= base["mails"] + 1
                self.check(f"crash/{kind} k={k} (after {killed}): redelivery applied, state == undisturbed",
                           failed_ids(r["response"]) == [] and not diff and mails_ok,
                           f"answer={r.get('response')} diff={diff} mails={s.get('mails')} vs {base.get('mails')}")

    def dup(self):
        print("dup: 20 joiners x 3 deliveries, shuffled batches of 10", flush=True)
        self.stack.reset_seed()
        bodies = [hr_event("joined", 300 + i) for i in range(20)]
        records = []
        for copy in range(3):
            for b in bodies:
                rec = sqs_event([b])["Records"][0]
                rec["messageId"] += f"-copy{copy}"
                records.append(rec)
        random.Random(5).shuffle(records)
        emu, fn = self.start("dup")
        try:
            retry = []
            for i in range(0, len(records), 10):
                r = self.deliver(emu, {"Records": records[i:i + 10]})
                ids = failed_ids(r["response"]) or []
                retry += [x for x in records[i:i + 10] if x["messageId"] in ids]
            if retry:
                r = self.deliver(emu, {"Records": retry})
                self.check("dup: redelivered failures applied", failed_ids(r["response"]) == [], str(r))
            stats = self.stack.proxy_stats()
            for op in ("CreateUser", "CreateAccessKey", "CreateSecret", "SendEmail"):
                got = sum(1 for c in stats["calls"] if c["op"] == op and c.get("status") == 200)
                self.check(f"dup: {op} succeeded exactly 20 times", got == 20, f"got {got}")
        finally:
            self.stop(emu, fn)
        data = self.data()
        for i in range(20):
            self.joiner_ok(f"dup: joiner emp{300 + i:04d}", self.state(300 + i, data), True)

    def leak(self):
        print(f"leak: {len(self.needles)} passwords/secret keys against captured output", flush=True)
        hay = []
        for f in sorted(os.listdir(self.outdir)):
            if f.endswith((".out", ".err")):
                with open(os.path.join(self.outdir, f), "rb") as fh:
                    hay.append((f, fh.read().decode("utf-8", "replace")))
        hay += [(f"answer#{i}", a) for i, a in enumerate(self.answers)]
        hay += [(f"mail#{i}", m) for i, m in enumerate(self.mails)]
        hits = [(name, needle[:3] + "...") for needle in self.needles for name, text in hay if needle in text]
        audit = sum(t.count('"audit":true') for _, t in hay)
        self.check("leak: credentials were collected to scan for", len(self.needles) >= 20, str(len(self.needles)))
        self.check("leak: captured output contains the audit trail", audit > 0, "no audit lines captured")
        self.check(f"leak: 0 hits in {len(hay)} captured texts", not hits, f"{len(hits)} hits: {hits[:5]}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--binary", default=os.path.join(ROOT, "target", "debug", "bootstrap"))
    p.add_argument("--only", default="throttle,crash,dup,leak")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args()
    t0 = time.time()
    outdir = tempfile.mkdtemp(prefix="hr-fault-")
    print(f"fault suite: binary {a.binary}, captured output in {outdir}", flush=True)
    suite = Suite(a.binary, outdir, a.verbose)
    try:
        for name in a.only.split(","):
            try:
                getattr(suite, name)()
            except Exception as e:  # noqa: BLE001
                suite.check(f"{name}: ran to the end", False, repr(e))
    finally:
        suite.stack.stop()
    print(f"runtime {time.time() - t0:.0f} s", flush=True)
    print(f"{suite.passed} passed, {suite.failed} failed")
    return 1 if suite.failed or not suite.passed else 0


if __name__ == "__main__":
    sys.exit(main())
