"""A small evaluator of IAM identity policies, for the template tests.

It answers "would this request be allowed?" for one principal's statements, following
IAM's documented evaluation logic for identity policies: an explicit Deny wins, then any
Allow, else the implicit deny. It supports what the stack's policies use: Action/NotAction,
Resource/NotResource with wildcards and ${aws:username}, and the condition operators
String(Not)Equals(IgnoreCase), String(Not)Like, Arn(Not)Equals/Like, Bool, Date*, Null, with
IfExists and the ForAnyValue/ForAllValues set qualifiers. Missing keys behave as in IAM:
a positive operator is false, a negated one true, IfExists true, Null tests presence.

The request context only holds keys that IAM would put there for that action: keys that
are not global (aws:*) are dropped when the action does not support them, according to the
Service Authorization Reference data shipped with policy_sentry.
"""

from __future__ import annotations

import fnmatch
import re
from datetime import datetime
from functools import lru_cache

ALLOW, DENY, IMPLICIT = "Allow", "Deny", "ImplicitDeny"


def as_list(value):
    return value if isinstance(value, list) else [value]


@lru_cache(maxsize=None)
def supported_keys(action: str) -> frozenset[str] | None:
    """Condition keys IAM documents for the action (its own and its resource types').

    None when policy_sentry does not know the action (then nothing is dropped)."""
    from policy_sentry.querying.actions import get_action_data

    service, name = action.split(":", 1)
    data = get_action_data(service, name) or {}
    rows = [r for rows in data.values() for r in rows]
    if not rows:
        return None
    keys = set()
    for r in rows:
        keys.update(k.lower() for k in r["condition_keys"])
    return frozenset(keys)


def key_supported(action: str, key: str) -> bool:
    key = key.lower()
    if key.startswith("aws:"):
        return True
    keys = supported_keys(action)
    if keys is None:
        return True
    if key in keys:
        return True
    # Templated keys: iam:ResourceTag/${TagKey}, kms:EncryptionContext:${EncryptionContextKey},
    # secretsmanager:ResourceTag/tag-key ...
    for k in keys:
        if "${" in k:
            if re.fullmatch(".+".join(re.escape(part) for part in re.split(r"\$\{[^}]*\}", k)), key):
                return True
        elif k.endswith("/tag-key") and key.startswith(k[: -len("tag-key")]):
            return True
    return False


def _date(value) -> datetime:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _match_value(base: str, ctx_value, policy_value) -> bool:
    cv, pv = str(ctx_value), str(policy_value)
    if base.startswith("Date"):
        a, b = _date(cv), _date(pv)
        return {"DateEquals": a == b, "DateNotEquals": a == b, "DateLessThan": a < b,
                "DateLessThanEquals": a <= b, "DateGreaterThan": a > b,
                "DateGreaterThanEquals": a >= b}[base]
    if base in ("StringEquals", "StringNotEquals"):
        return cv == pv
    if base in ("StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase"):
        return cv.lower() == pv.lower()
    if base in ("StringLike", "StringNotLike", "ArnEquals", "ArnLike", "ArnNotEquals", "ArnNotLike"):
        # ArnEquals and ArnLike both honour * and ? (IAM documentation).
        return fnmatch.fnmatchcase(cv, pv)
    if base == "Bool":
        return cv.lower() == pv.lower()
    raise NotImplementedError(base)


NEGATED = {"StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike", "ArnNotEquals", "ArnNotLike",
           "DateNotEquals"}


def _operator_holds(op: str, key: str, policy_values, ctx: dict) -> bool:
    qualifier = None
    if ":" in op:
        qualifier, op = op.split(":", 1)
    if_exists = op.endswith("IfExists")
    base = op[: -len("IfExists")] if if_exists else op
    present = key.lower() in ctx
    value = ctx.get(key.lower())
    # Policy variables (${aws:username}) are substituted in condition values too.
    values = [_substitute(v, ctx) if isinstance(v, str) else v for v in as_list(policy_values)]
    if base == "Null":
        want_missing = str(values[0]).lower() == "true"
        return (not present) == want_missing
    negated = base in NEGATED
    if qualifier == "ForAnyValue":
        if not present or not as_list(value):
            return False
        hit = any(_match_value(base, cv, pv) for cv in as_list(value) for pv in values)
        return not hit if negated else hit
    if qualifier == "ForAllValues":
        if not present:
            return True
        return all(
            (not any(_match_value(base, cv, pv) for pv in values)) if negated
            else any(_match_value(base, cv, pv) for pv in values)
            for cv in as_list(value)
        )
    if not present:
        return if_exists or negated
    hit = any(_match_value(base, value, pv) for pv in values)
    return not hit if negated else hit


def conditions_hold(condition: dict | None, ctx: dict) -> bool:
    for op, block in (condition or {}).items():
        for key, values in block.items():
            if not _operator_holds(op, key, values, ctx):
                return False
    return True


def _substitute(pattern: str, ctx: dict) -> str:
    return pattern.replace("${aws:username}", str(ctx.get("aws:username", "\0no-user\0")))


def statement_matches(stmt: dict, action: str, resource: str, ctx: dict) -> bool:
    if "Action" in stmt:
        if not any(fnmatch.fnmatchcase(action.lower(), p.lower()) for p in as_list(stmt["Action"])):
            return False
    elif any(fnmatch.fnmatchcase(action.lower(), p.lower()) for p in as_list(stmt["NotAction"])):
        return False
    if "Resource" in stmt:
        if not any(fnmatch.fnmatchcase(resource, _substitute(p, ctx)) for p in as_list(stmt["Resource"])):
            return False
    elif any(fnmatch.fnmatchcase(resource, _substitute(p, ctx)) for p in as_list(stmt["NotResource"])):
        return False
    return conditions_hold(stmt.get("Condition"), ctx)


def decide(statements: list[dict], action: str, resource: str, context: dict | None = None) -> str:
    """Allow, Deny (explicit) or ImplicitDeny for one request."""
    ctx = {k.lower(): v for k, v in (context or {}).items() if key_supported(action, k)}
    matching = [s for s in statements if statement_matches(s, action, resource, ctx)]
    if any(s["Effect"] == "Deny" for s in matching):
        return DENY
    if any(s["Effect"] == "Allow" for s in matching):
        return ALLOW
    return IMPLICIT


def allowed(statements: list[dict], action: str, resource: str, context: dict | None = None) -> bool:
    return decide(statements, action, resource, context) == ALLOW
