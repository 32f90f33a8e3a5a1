#!/usr/bin/env python3
"""cloudsplaining on the stack's identity policies, with a justified allow-list.

Scanned, each as one policy document (all statements of its documents together, so the
explicit denies count): the provisioner's role (inline policy, KMS policy and the
guardrails managed policy), the audit role, the employee permissions boundary, the
deny-all policy and the baseline group. The documents are resolved with placeholder
parameter values by extract_policies.py.

The scan is cloudsplaining's own `scan_policy` (what `cloudsplaining scan-policy-file`
runs) in its strictest mode, `--flag-all-risky-actions`: risky actions are reported even
when resource ARNs or conditions constrain them, so every capability of the roles is
listed and must be justified, not only unconstrained ones.

Every finding must match an entry of cloudsplaining-allowlist.yaml (policy, finding
category, action patterns, reason); an entry that matches nothing fails the run (no stale
entries). A privilege-escalation finding on the employee boundary can never be allow-listed:
such an entry is refused.

Usage: cloudsplaining_check.py [--dump DIR]   (DIR/<policy>.json: the scanned documents,
       for `cloudsplaining scan-policy-file -aR --input-file DIR/<policy>.json`)
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from pathlib import Path

import yaml
from cloudsplaining.command.scan_policy_file import scan_policy
from cloudsplaining.shared.constants import DEFAULT_EXCLUSIONS_CONFIG

sys.path.insert(0, str(Path(__file__).resolve().parent))
import extract_policies as ep  # noqa: E402

ALLOWLIST = Path(__file__).resolve().parent / "cloudsplaining-allowlist.yaml"
BOUNDARY = "EmployeeBoundaryPolicy"
# Which template resources make up each scanned principal or policy.
TARGETS = {
    "ProvisionerRole": {"ProvisionerRole", "ProvisionerKmsPolicy", "ProvisionerGuardrailsPolicy"},
    "AuditRole": {"AuditRole"},
    "FrontDoorRole": {"FrontDoorRole"},
    BOUNDARY: {BOUNDARY},
    "DenyAllPolicy": {"DenyAllPolicy"},
    "BaselineGroup": {"BaselineGroup"},
}
CATEGORIES = ("PrivilegeEscalation", "DataExfiltration", "ResourceExposure", "CredentialsExposure",
              "ServiceWildcard", "InfrastructureModification")


def documents(template: dict | None = None) -> dict[str, dict]:
    docs = ep.policy_documents(template)
    out = {}
    for name, members in TARGETS.items():
        stmts = []
        for d in docs:
            if d["resource"] in members and d["kind"] == "identity":
                s = d["document"]["Statement"]
                stmts += s if isinstance(s, list) else [s]
        if not stmts:
            raise SystemExit(f"no policy document found for {name}")
        out[name] = {"Version": "2012-10-17", "Statement": stmts}
    return out


def findings(policy: dict) -> dict[str, list[str]]:
    """category -> sorted finding items (actions; escalation method names)."""
    raw = scan_policy(policy, DEFAULT_EXCLUSIONS_CONFIG,
                      flag_conditional_statements=True, flag_resource_arn_statements=True)
    out = {}
    for cat in CATEGORIES:
        items = (raw.get(cat) or {}).get("findings") or []
        if cat == "PrivilegeEscalation":
            items = [f"{i['type']}({'+'.join(i['actions'])})" for i in items]
        out[cat] = sorted(set(items))
    return out


def load_allowlist() -> list[dict]:
    entries = yaml.safe_load(ALLOWLIST.read_text()) or []
    for e in entries:
        if not str(e.get("reason", "")).strip():
            raise SystemExit(f"{ALLOWLIST.name}: entry without a reason: {e}")
        if e.get("finding") not in CATEGORIES:
            raise SystemExit(f"{ALLOWLIST.name}: unknown finding category in {e}")
        if e.get("policy") not in TARGETS:
            raise SystemExit(f"{ALLOWLIST.name}: unknown policy in {e}")
        if e["policy"] == BOUNDARY and e["finding"] == "PrivilegeEscalation":
            raise SystemExit(f"{ALLOWLIST.name}: a privilege escalation through the employee "
                             "boundary can never be accepted; fix the boundary instead")
        if not e.get("actions"):
            raise SystemExit(f"{ALLOWLIST.name}: entry without actions: {e}")
    return entries


def check(docs: dict[str, dict], entries: list[dict]) -> tuple[list[str], list[str], dict]:
    """Returns (report lines, problems, counts)."""
    lines, problems = [], []
    used: set[int] = set()
    counts = {"policies": len(docs), "findings": 0, "allowed": 0}
    for name, policy in docs.items():
        found = findings(policy)
        total = sum(len(v) for v in found.values())
        lines.append(f"cloudsplaining: {name}: " + ", ".join(
            f"{cat} {len(found[cat])}" for cat in CATEGORIES) + f" ({total} findings)")
        for cat, items in found.items():
            for item in items:
                counts["findings"] += 1
                match = None
                for e in entries:
                    if e["policy"] == name and e["finding"] == cat and any(
                            fnmatch.fnmatchcase(item.lower(), p.lower()) for p in e["actions"]):
                        match = e
                        break
                if match is None:
                    problems.append(f"{name}: {cat}: {item}")
                else:
                    used.add(id(match))
                    counts["allowed"] += 1
        for e in entries:
            if e["policy"] == name and id(e) in used:
                n = sum(1 for cat, items in found.items() if cat == e["finding"] for i in items
                        if any(fnmatch.fnmatchcase(i.lower(), p.lower()) for p in e["actions"]))
                lines.append(f"cloudsplaining:   allowed {e['finding']} x{n} "
                             f"[{', '.join(e['actions'])[:120]}]: {' '.join(e['reason'].split())}")
    for e in entries:
        if id(e) not in used:
            problems.append(f"allow-list entry matched nothing (remove it): {e['policy']} "
                            f"{e['finding']} {e['actions']}")
    return lines, problems, counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dump", type=Path)
    args = ap.parse_args()
    docs = documents()
    if args.dump:
        args.dump.mkdir(parents=True, exist_ok=True)
        for name, policy in docs.items():
            (args.dump / f"{name}.json").write_text(json.dumps(policy, indent=2) + "\n")
    lines, problems, counts = check(docs, load_allowlist())
    print("\n".join(lines))
    for p in problems:
        print(f"cloudsplaining: UNJUSTIFIED {p}")
    boundary_escalations = findings(docs[BOUNDARY])["PrivilegeEscalation"]
    print(f"cloudsplaining: {counts['policies']} policies, {counts['findings']} findings "
          f"({counts['allowed']} allow-listed, {len(problems)} unjustified); "
          f"privilege escalation through the employee boundary: {len(boundary_escalations)}")
    return 1 if problems or boundary_escalations else 0


if __name__ == "__main__":
    sys.exit(main())
