"""How many AWS calls `hr-iam-audit` makes for N managed users (contract section 8:
it must not grow with users beyond paging).

    .venv/bin/python bench/audit_calls.py [--bin target/debug/hr-iam-audit] 10 1000

For each N: a fresh moto, N managed users seeded directly (a third in engineering
with a stored access key, the rest with the default rule), each with its secret
carrying the section-3 tags, then one audit through the counting proxy. Prints
one JSON line per N: the calls by operation, the audit's own count, findings and
wall time. Read it with moto's paging in mind: moto answers
GetAccountAuthorizationDetails in one page whatever MaxItems says; AWS pages it
(this audit asks for 1,000 users a page) and pages ListSecrets by 100, as moto does.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ROOT, RULES, Stack  # noqa: E402


def seed(stack, n):
    iam, sm = stack.iam, stack.sm

    def one(i):
        name = f"user{i:05d}"
        dept = "engineering" if i % 3 == 0 else None
        tags = {"hr:employee-id": f"E{i:05d}", "hr:managed-by": "hr-provisioner", "hr:status": "active",
                "hr:last-event-at": "2026-11-20T09:00:00Z", "hr:last-event-id": f"ev-{i}",
                "hr:email": f"{name}@example.com"}
        if dept:
            tags["hr:department"] = dept
        iam.create_user(UserName=name, Path="/employees/", Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
        for g in (["developers", "staff"] if dept else ["staff"]):
            iam.add_user_to_group(UserName=name, GroupName=g)
        iam.create_login_profile(UserName=name, Password="Xx1!-long-enough-password-for-policy")
        stags = {k: tags[k] for k in ("hr:employee-id", "hr:managed-by", "hr:status", "hr:last-event-at",
                                      "hr:last-event-id")}
        stags["hr:user-name"] = name
        if dept:
            key = iam.create_access_key(UserName=name)["AccessKey"]
            stags["hr:access-key-id"] = key["AccessKeyId"]
            stags["hr:access-key-created"] = key["CreateDate"].strftime("%Y-%m-%dT%H:%M:%SZ")
        sm.create_secret(Name=f"hr-provisioner/{name}", SecretString=json.dumps({"user_name": name}),
                         Tags=[{"Key": k, "Value": v} for k, v in stags.items()])

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(n)))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", default=os.path.join(ROOT, "target", "debug", "hr-iam-audit"))
    p.add_argument("users", nargs="+", type=int)
    args = p.parse_args()
    for n in args.users:
        stack = Stack()
        try:
            stack.reset_seed()
            seed(stack, n)
            stack.proxy_reset()
            env = {"PATH": os.environ.get("PATH", ""), "AWS_ENDPOINT_URL": stack.proxy, "AWS_REGION": "us-east-1",
                   "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                   "AWS_EC2_METADATA_DISABLED": "true", "PROVISIONING_RULES": RULES}
            t0 = time.monotonic()
            run = subprocess.run([args.bin, "--format", "json"], env=env, capture_output=True, text=True)
            secs = time.monotonic() - t0
            report = json.loads(run.stdout)
            stats = stack.proxy_stats()
            print(json.dumps({"managed_users": n, "exit": run.returncode, "seconds": round(secs, 2),
                              "calls_on_wire": stats["total"], "by_operation": stats["counts"],
                              "calls_reported": report["calls"]["total"],
                              "users_reported": report["summary"]["users"],
                              "findings": report["summary"]["findings"]}), flush=True)
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
