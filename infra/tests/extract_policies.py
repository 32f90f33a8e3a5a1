#!/usr/bin/env python3
"""Extract every IAM policy document from infra/template.yaml and lint it with parliament.

The template is parsed with cfn-lint's decoder (it understands !Sub, !Ref, !GetAtt, ...),
its conditions and intrinsic functions are resolved with placeholder parameter values
(PLACEHOLDER_PARAMETERS below, then the template's defaults), and each resulting policy
document is passed to `parliament --include-community-auditors --string`. Findings above LOW fail the run
unless they are listed, with a reason, in parliament-allowlist.yaml next to this file;
an allow-list entry that no longer matches anything fails the run too.

Usage: extract_policies.py [--dump DIR] [--list]
  --dump DIR  also write each resolved policy document to DIR/<id>.json
  --list      only print the ids of the policy documents found

The resolver is also imported by test_template.py.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from cfnlint.decode import decode

HERE = Path(__file__).resolve().parent
# HR_INFRA_TEMPLATE: lint another copy (used to check that the tests catch mutations).
TEMPLATE = Path(os.environ.get("HR_INFRA_TEMPLATE", HERE.parent / "template.yaml")).resolve()
ALLOWLIST = HERE / "parliament-allowlist.yaml"

PSEUDO = {
    "AWS::AccountId": "123456789012",
    "AWS::Region": "eu-west-1",
    "AWS::Partition": "aws",
    "AWS::StackName": "hr-prov",
    "AWS::URLSuffix": "amazonaws.com",
}

# Values for the parameters that have no default, plus non-empty values for optional
# ones so that every conditional statement is present in the resolved documents.
PLACEHOLDER_PARAMETERS = {
    "SenderEmail": "no-reply@example.com",
    "SenderIdentity": "example.com",
    "HrSenderPrincipalArn": "arn:aws:iam::210987654321:role/hr-system",
    "RedrivePrincipalArn": "arn:aws:iam::123456789012:role/hr-operator",
    "AllowedGroupNames": "developers,readonly",
    "SecretReaderRoleArns": "arn:aws:iam::123456789012:role/service-desk",
    "AlarmEmail": "ops@example.com",
}


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()


def load_template(path: Path = TEMPLATE) -> dict:
    template, matches = decode(str(path))
    if template is None:
        raise SystemExit(f"cannot parse {path}: {matches}")
    return template


class Resolver:
    """Evaluates CloudFormation intrinsic functions with placeholder values."""

    def __init__(self, template: dict, overrides: dict | None = None):
        self.template = template
        self.resources = template.get("Resources", {})
        self.params: dict[str, Any] = {}
        given = dict(PLACEHOLDER_PARAMETERS)
        given.update(overrides or {})
        for name, spec in template.get("Parameters", {}).items():
            if name in given:
                value = given[name]
            elif "Default" in spec:
                value = spec["Default"]
            else:
                raise SystemExit(f"parameter {name} has no default and no placeholder")
            value = str(value)
            if spec.get("Type") == "CommaDelimitedList":
                value = [v.strip() for v in value.split(",")]
            self.params[name] = value
        self._conditions: dict[str, bool] = {}

    # -- conditions -----------------------------------------------------------------
    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            expr = self.template["Conditions"][name]
            self._conditions[name] = bool(self.resolve(expr))
        return self._conditions[name]

    def resource_enabled(self, logical_id: str) -> bool:
        cond = self.resources[logical_id].get("Condition")
        return True if cond is None else self.condition(cond)

    # -- placeholders for resources ---------------------------------------------------
    def _prop(self, logical_id: str, name: str, fallback: str) -> str:
        props = self.resources[logical_id].get("Properties", {})
        if name in props:
            return self.resolve(props[name])
        return fallback

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.params:
            return self.params[name]
        if name not in self.resources:
            raise KeyError(f"Ref to unknown name {name}")
        rtype = self.resources[name]["Type"]
        acct, region, part = PSEUDO["AWS::AccountId"], PSEUDO["AWS::Region"], PSEUDO["AWS::Partition"]
        generated = f"{PSEUDO['AWS::StackName']}-{name}-ABCDEF123456"
        if rtype == "AWS::IAM::ManagedPolicy":
            pname = self._prop(name, "ManagedPolicyName", generated)
            return f"arn:{part}:iam::{acct}:policy/{pname}"
        if rtype == "AWS::IAM::Role":
            return self._prop(name, "RoleName", generated)
        if rtype == "AWS::IAM::Group":
            return self._prop(name, "GroupName", generated)
        if rtype == "AWS::KMS::Key":
            return "1234abcd-12ab-34cd-56ef-1234567890ab"
        if rtype == "AWS::KMS::Alias":
            return self._prop(name, "AliasName", "alias/" + generated)
        if rtype == "AWS::SQS::Queue":
            qname = self._prop(name, "QueueName", generated)
            return f"https://sqs.{region}.amazonaws.com/{acct}/{qname}"
        if rtype == "AWS::SNS::Topic":
            tname = self._prop(name, "TopicName", generated)
            return f"arn:{part}:sns:{region}:{acct}:{tname}"
        if rtype == "AWS::Serverless::Function":
            return self._prop(name, "FunctionName", generated)
        if rtype == "AWS::Logs::LogGroup":
            return self._prop(name, "LogGroupName", generated)
        if rtype == "AWS::Scheduler::ScheduleGroup":
            return self._prop(name, "Name", generated)
        if rtype == "AWS::SecretsManager::Secret":
            sname = self._prop(name, "Name", generated)
            return f"arn:{part}:secretsmanager:{region}:{acct}:secret:{sname}-AbCdEf"
        return generated

    def get_att(self, name: str, attr: str) -> Any:
        rtype = self.resources[name]["Type"]
        acct, region, part = PSEUDO["AWS::AccountId"], PSEUDO["AWS::Region"], PSEUDO["AWS::Partition"]
        if attr == "Arn":
            if rtype == "AWS::IAM::Role":
                return f"arn:{part}:iam::{acct}:role/{self.ref(name)}"
            if rtype == "AWS::IAM::Group":
                return f"arn:{part}:iam::{acct}:group/{self.ref(name)}"
            if rtype == "AWS::KMS::Key":
                return f"arn:{part}:kms:{region}:{acct}:key/{self.ref(name)}"
            if rtype == "AWS::SQS::Queue":
                return f"arn:{part}:sqs:{region}:{acct}:{self.ref(name).rsplit('/', 1)[1]}"
            if rtype == "AWS::Logs::LogGroup":
                return f"arn:{part}:logs:{region}:{acct}:log-group:{self.ref(name)}:*"
            if rtype == "AWS::Serverless::Function":
                return f"arn:{part}:lambda:{region}:{acct}:function:{self.ref(name)}"
            if rtype == "AWS::SNS::Topic":
                return self.ref(name)
            if rtype == "AWS::Events::Rule":
                rule = self._prop(name, "Name", name)
                return f"arn:{part}:events:{region}:{acct}:rule/{rule}"
        if rtype == "AWS::SQS::Queue" and attr == "QueueName":
            return self.ref(name).rsplit("/", 1)[1]
        raise KeyError(f"no placeholder for GetAtt {name}.{attr} ({rtype})")

    # -- intrinsic functions ----------------------------------------------------------
    def _sub(self, text: str, variables: dict) -> str:
        def repl(m: re.Match) -> str:
            inner = m.group(1)
            if inner.startswith("!"):
                return "${" + inner[1:] + "}"
            if inner in variables:
                return str(variables[inner])
            if "." in inner and inner.split(".", 1)[0] in self.resources:
                res, attr = inner.split(".", 1)
                return str(self.get_att(res, attr))
            value = self.ref(inner)
            if isinstance(value, list):
                raise ValueError(f"${{{inner}}} is a list in Fn::Sub")
            return str(value)

        return re.sub(r"\$\{([^}]+)\}", repl, text)

    def resolve(self, node: Any) -> Any:
        if isinstance(node, dict):
            if len(node) == 1:
                (key, arg), = node.items()
                if key == "Ref":
                    return self.ref(arg)
                if key == "Fn::GetAtt":
                    res, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                    return self.get_att(res, attr)
                if key == "Fn::Sub":
                    if isinstance(arg, list):
                        text, variables = arg
                        variables = {k: self.resolve(v) for k, v in variables.items()}
                    else:
                        text, variables = arg, {}
                    return self._sub(text, variables)
                if key == "Fn::Join":
                    sep, items = arg
                    items = self.resolve(items)
                    return sep.join(str(i) for i in items if i is not NO_VALUE)
                if key == "Fn::Split":
                    sep, text = arg
                    return self.resolve(text).split(sep)
                if key == "Fn::Select":
                    index, items = arg
                    return self.resolve(items)[int(self.resolve(index))]
                if key == "Fn::If":
                    cond, yes, no = arg
                    return self.resolve(yes if self.condition(cond) else no)
                if key == "Fn::Equals":
                    a, b = (self.resolve(x) for x in arg)
                    return str(a) == str(b)
                if key == "Fn::Not":
                    return not self.resolve(arg[0])
                if key == "Fn::And":
                    return all(self.resolve(x) for x in arg)
                if key == "Fn::Or":
                    return any(self.resolve(x) for x in arg)
                if key == "Fn::Contains":  # Rules only
                    items, value = arg
                    return str(self.resolve(value)) in [str(i) for i in self.resolve(items)]
                if key == "Condition":
                    return self.condition(arg)
                if key.startswith("Fn::"):
                    raise NotImplementedError(key)
            out = {}
            for k, v in node.items():
                r = self.resolve(v)
                if r is not NO_VALUE:
                    out[str(k)] = r
            return out
        if isinstance(node, list):
            out = []
            for v in node:
                r = self.resolve(v)
                if r is not NO_VALUE:
                    out.append(r)
            return out
        if isinstance(node, str):
            return str(node)
        return node


def function_properties(template: dict, logical_id: str) -> dict:
    """A SAM function's properties with the template's Globals merged in, as SAM does:
    maps are merged key by key, anything else the function sets wins."""

    def merge(glob: Any, own: Any) -> Any:
        if isinstance(glob, dict) and isinstance(own, dict):
            out = copy.deepcopy(glob)
            for k, v in own.items():
                out[k] = merge(glob.get(k), v) if k in glob else copy.deepcopy(v)
            return out
        return copy.deepcopy(own)

    globals_ = template.get("Globals", {}).get("Function", {})
    return merge(globals_, template["Resources"][logical_id]["Properties"])


def raw_policy_documents(template: dict) -> list[dict]:
    """Every policy document of the template, unresolved, with where it is.

    kind: identity (grants to a principal), resource (key/queue/topic policy, has
    Principal), trust (role trust policy).
    """
    docs = []
    for lid, res in template.get("Resources", {}).items():
        rtype, props = res.get("Type"), res.get("Properties", {})
        if rtype == "AWS::IAM::Role":
            docs.append({"id": f"{lid}.AssumeRolePolicyDocument", "resource": lid, "kind": "trust",
                         "document": props["AssumeRolePolicyDocument"]})
            for pol in props.get("Policies", []):
                docs.append({"id": f"{lid}.{pol['PolicyName']}", "resource": lid, "kind": "identity",
                             "document": pol["PolicyDocument"]})
        elif rtype == "AWS::IAM::Group":
            for pol in props.get("Policies", []):
                docs.append({"id": f"{lid}.{pol['PolicyName']}", "resource": lid, "kind": "identity",
                             "document": pol["PolicyDocument"]})
        elif rtype in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy", "AWS::IAM::RolePolicy",
                       "AWS::IAM::UserPolicy", "AWS::IAM::GroupPolicy"):
            docs.append({"id": lid, "resource": lid, "kind": "identity", "document": props["PolicyDocument"]})
        elif rtype == "AWS::KMS::Key":
            docs.append({"id": f"{lid}.KeyPolicy", "resource": lid, "kind": "resource", "document": props["KeyPolicy"]})
        elif rtype in ("AWS::SQS::QueuePolicy", "AWS::SNS::TopicPolicy"):
            docs.append({"id": lid, "resource": lid, "kind": "resource", "document": props["PolicyDocument"]})
        elif rtype == "AWS::Serverless::Function" and "Policies" in props:
            raise SystemExit(f"{lid}: SAM policy templates are not allowed; use the explicit role")
    return docs


def policy_documents(template: dict | None = None, overrides: dict | None = None) -> list[dict]:
    """Every policy document, resolved with placeholder values."""
    template = template if template is not None else load_template()
    resolver = Resolver(template, overrides)
    out = []
    for doc in raw_policy_documents(template):
        if not resolver.resource_enabled(doc["resource"]):
            continue
        resolved = dict(doc)
        resolved["document"] = resolver.resolve(copy.deepcopy(doc["document"]))
        out.append(resolved)
    return out


def load_allowlist() -> list[dict]:
    entries = yaml.safe_load(ALLOWLIST.read_text()) or []
    for e in entries:
        if not e.get("reason", "").strip():
            raise SystemExit(f"{ALLOWLIST.name}: entry without a reason: {e}")
    return entries


def allowed(finding: dict, policy_id: str, entries: list[dict]) -> dict | None:
    for e in entries:
        if e["policy"] != policy_id or e["issue"] != finding["issue"]:
            continue
        match = e.get("match")
        if match and match not in json.dumps(finding, sort_keys=True):
            continue
        return e
    return None


def parliament_exe() -> str:
    exe = Path(sys.executable).parent / "parliament"
    if exe.exists():
        return str(exe)
    found = shutil.which("parliament")
    if not found:
        raise SystemExit("parliament is not installed")
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dump", type=Path)
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()

    docs = policy_documents()
    if args.list:
        for d in docs:
            print(d["kind"], d["id"])
        return 0
    if args.dump:
        args.dump.mkdir(parents=True, exist_ok=True)
        for d in docs:
            (args.dump / f"{d['id']}.json").write_text(json.dumps(d["document"], indent=2) + "\n")

    entries = load_allowlist()
    used: set[int] = set()
    exe = parliament_exe()
    checked = total = justified = low = 0
    unjustified = []
    # Trust policies are checked by the pytest suite (lambda.amazonaws.com only,
    # aws:SourceAccount): parliament treats them as identity policies without
    # Resource and reports only that (MALFORMED).
    for d in docs:
        if d["kind"] == "trust":
            print(f"parliament: skip {d['id']} (role trust policy; asserted in test_template.py)")
    linted = [d for d in docs if d["kind"] != "trust"]

    def run(d: dict) -> subprocess.CompletedProcess:
        return subprocess.run(
            [exe, "--include-community-auditors", "--json", "--minimum_severity", "INFO",
             "--string", json.dumps(d["document"])],
            capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = list(pool.map(run, linted))
    for d, proc in zip(linted, results):
        checked += 1
        if proc.returncode not in (0, 1):
            print(proc.stdout + proc.stderr, file=sys.stderr)
            raise SystemExit(f"parliament crashed on {d['id']}")
        for line in proc.stdout.splitlines():
            line = line.strip()
            if not line.startswith("{"):
                continue
            finding = json.loads(line)
            total += 1
            entry = allowed(finding, d["id"], entries)
            sev = finding["severity"]
            about = finding.get("detail") or {
                k: v for k, v in (finding.get("location") or {}).items() if k != "filepath" and v is not None
            }
            where = f"{d['id']}: {sev} {finding['issue']} {json.dumps(about)[:240]}"
            if entry is not None:
                used.add(id(entry))
                justified += 1
                print(f"parliament: allowed   {where}\n            reason: {' '.join(entry['reason'].split())}")
            elif sev in ("LOW", "INFO", "MUTE"):
                low += 1
                print(f"parliament: low       {where}")
            else:
                unjustified.append(where)
                print(f"parliament: FINDING   {where}")
    stale = [e for e in entries if id(e) not in used]
    for e in stale:
        print(f"parliament: allow-list entry matched nothing (remove it): {e['policy']} {e['issue']}")
    print(
        f"parliament: {checked} policy documents, {total} findings "
        f"({justified} allow-listed, {low} low/info, {len(unjustified)} unjustified above LOW)"
    )
    return 1 if unjustified or stale else 0


if __name__ == "__main__":
    sys.exit(main())
