#!/usr/bin/env python3
"""A SCIM client that is not ours drives the front door: python-scim's scim2-client
(a SCIM 2.0 client library) and scim2-tester (its RFC 7643/7644 compliance checks),
from PyPI, in their own venv (.venv-scim, scripts/test-front-door-scim.sh makes it).

    scim_check.py --url http://127.0.0.1:PORT/scim/v2 --token TOKEN

1. An identity provider's life cycle with scim2-client, every step asserted:
   discovery, create, filter by userName, get, replace (PUT), disable (PATCH
   active false), delete, and a wrong token refused.
2. scim2-tester's checks (discovery, CRUD and PATCH on the User resource type,
   random values from a fixed seed so that runs compare), one line per check.
   Required to pass: every discovery check, create and read. The others are
   reported with scim2-tester's reason (docs/contract.md section 10.3 says what the
   front door refuses or does not keep on purpose: inactive creation, names, ...;
   a deleted user stays, retired, under LEAVER_ACTION=disable).

Exit 0 when everything required passed, 1 otherwise. The front door must apply
events before it answers (front_door_local.py --sync), as a test suite reads back
what it wrote at once.
"""
from __future__ import annotations

import argparse
import collections
import random
import sys
import uuid

from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_models import Error, PatchOp, PatchOperation, SearchRequest
from scim2_tester import Status, check_server

OK = {Status.SUCCESS, Status.COMPLIANT, Status.ACCEPTABLE}
# Delete is not required: with LEAVER_ACTION=disable the provisioner keeps a
# leaver's user (retired), so GET still answers it, active false, not 404.
REQUIRED = {"discovery", "crud:create", "crud:read"}


def client_for(url: str, token: str) -> SyncSCIMClient:
    return SyncSCIMClient(Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60))


def life_cycle(url: str, token: str) -> list[str]:
    """An identity provider's calls; returns the failures."""
    failures = []

    def check(what, cond, detail=""):
        print(f"  {'ok  ' if cond else 'FAIL'} {what}{(': ' + str(detail)) if detail and not cond else ''}")
        if not cond:
            failures.append(what)

    scim = client_for(url, token)
    scim.discover()
    User = scim.get_resource_model("User")
    check("discovery: the User resource type and its schema", User is not None)
    if User is None:
        return failures
    name = f"scim2.{uuid.uuid4().hex[:8]}"
    created = scim.create(User(user_name=name, external_id=f"E-{name}", active=True,
                               name={"given_name": "Scim", "family_name": "Client"},
                               emails=[{"value": f"{name}@example.com", "primary": True, "type": "work"}]))
    check("create: 201 and the id is the user name", getattr(created, "id", None) == name, created)
    found = scim.query(User, query_parameters=SearchRequest(filter=f'userName eq "{name.upper()}"'))
    check("filter userName eq (case-insensitive): one result", getattr(found, "total_results", None) == 1, found)
    got = scim.query(User, name)
    check("get by id: externalId and email from IAM",
          getattr(got, "external_id", None) == f"E-{name}"
          and getattr(got, "emails", None) and got.emails[0].value == f"{name}@example.com", got)
    got.name = type(created.name)(given_name="Renamed", family_name="Client")  # IAM keeps no names
    replaced = scim.replace(got)
    check("replace (PUT): 200", getattr(replaced, "id", None) == name, replaced)
    patch = PatchOp[User](operations=[PatchOperation(op="replace", path="active", value=False)])
    scim.modify(User, name, patch)
    got = scim.query(User, name)
    check("disable (PATCH active false): GET shows active false", getattr(got, "active", None) is False, got)
    deleted = scim.delete(User, name)
    check("delete: 204", deleted is None, deleted)
    r = Client(base_url=url, headers={"Authorization": "Bearer not-the-token-0123456789abcdef0123"}).get("/Users")
    body = r.json()
    check("a wrong token is refused: 401 and a SCIM error object",
          r.status_code == 401 and body.get("status") == "401"
          and Error.model_validate(body).status == 401, (r.status_code, body))
    return failures


def compliance(url: str, token: str, seed: int) -> list[str]:
    random.seed(seed)
    scim = client_for(url, token)
    results = check_server(scim, raise_exceptions=False, resource_types=["User"])
    counts = collections.Counter(r.status.name for r in results)
    failures = []
    for r in results:
        required = bool(r.tags & REQUIRED)
        mark = "ok  " if r.status in OK or r.status == Status.SKIPPED else ("FAIL" if required else "note")
        reason = (r.reason or "").replace("\n", " ")[:160]
        print(f"  {mark} {r.status.name:<10} {r.title or ''}"
              f"{(' - ' + reason) if r.status not in OK and reason else ''}")
        if mark == "FAIL":
            failures.append(r.title or "?")
    print("  scim2-tester: " + ", ".join(f"{n} {k.lower()}" for k, n in sorted(counts.items())))
    return failures


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--seed", type=int, default=18)
    args = p.parse_args(argv)
    print("scim2-client: an identity provider's life cycle")
    failed = life_cycle(args.url, args.token)
    print(f"scim2-tester: RFC 7643/7644 checks of the User resource type (seed {args.seed})")
    failed += compliance(args.url, args.token, args.seed)
    print(f"scim-check: {'all required checks passed' if not failed else 'FAILED: ' + '; '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
