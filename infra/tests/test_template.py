"""Tests of infra/template.yaml.

The template is parsed (cfn-lint's decoder) and its intrinsic functions resolved with
placeholder values (extract_policies.Resolver). The policies are then checked two ways:
structurally (which statements exist, with which conditions) and by evaluating requests
against them (iam_eval: "may the provisioner attach AdministratorAccess to a managed
user?"), so each security property is tested as the attack it prevents. Action metadata
(access levels, condition keys) comes from the Service Authorization Reference data of
policy_sentry, installed with cloudsplaining.
"""

from __future__ import annotations

import fnmatch
import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import extract_policies as ep  # noqa: E402
import iam_eval  # noqa: E402
from iam_eval import ALLOW, DENY, as_list, decide  # noqa: E402

ACCOUNT = ep.PSEUDO["AWS::AccountId"]
REGION = ep.PSEUDO["AWS::Region"]
STACK = ep.PSEUDO["AWS::StackName"]
MANAGED_BY = "iam:ResourceTag/hr:managed-by"
REPO = Path(__file__).resolve().parents[2]

# --- what the function calls (notes/decisions, docs/contract.md) ------------------------
IAM_READS = {
    "iam:GetUser", "iam:ListUsers", "iam:ListGroupsForUser", "iam:ListAttachedUserPolicies",
    "iam:ListUserPolicies", "iam:GetUserPolicy", "iam:GetLoginProfile", "iam:ListAccessKeys",
    "iam:ListMFADevices", "iam:ListSSHPublicKeys", "iam:ListSigningCertificates",
    "iam:ListServiceSpecificCredentials", "iam:ListVirtualMFADevices", "iam:GetAccountPasswordPolicy",
    "iam:ListAccountAliases",
}
TEMPLATE_READS = {"iam:GetUser", "iam:ListGroupsForUser", "iam:ListAttachedUserPolicies",
                  "iam:ListAccessKeys", "iam:GetLoginProfile"}
IAM_WRITES = {
    "iam:CreateUser", "iam:TagUser", "iam:UntagUser", "iam:PutUserPermissionsBoundary",
    "iam:AddUserToGroup", "iam:RemoveUserFromGroup", "iam:AttachUserPolicy", "iam:DetachUserPolicy",
    "iam:DeleteUserPolicy", "iam:CreateAccessKey", "iam:DeleteAccessKey", "iam:CreateLoginProfile",
    "iam:UpdateLoginProfile", "iam:DeleteLoginProfile", "iam:DeactivateMFADevice",
    "iam:DeleteVirtualMFADevice", "iam:DeleteSSHPublicKey", "iam:DeleteSigningCertificate",
    "iam:DeleteServiceSpecificCredential", "iam:DeleteUser", "iam:UpdateAccessKey",
}
# Writes whose resource is not the user (service authorization reference).
GROUP_WRITES = {"iam:AddUserToGroup", "iam:RemoveUserFromGroup"}
MFA_WRITES = {"iam:DeleteVirtualMFADevice"}
USER_WRITES = IAM_WRITES - GROUP_WRITES - MFA_WRITES
SECRETS = {
    "secretsmanager:DescribeSecret", "secretsmanager:GetResourcePolicy", "secretsmanager:GetSecretValue",
    "secretsmanager:CreateSecret", "secretsmanager:PutSecretValue", "secretsmanager:TagResource",
    "secretsmanager:UntagResource", "secretsmanager:RestoreSecret", "secretsmanager:DeleteSecret",
    "secretsmanager:ListSecrets", "secretsmanager:UpdateSecretVersionStage",
}
SECRET_WRITES = {"secretsmanager:PutSecretValue", "secretsmanager:TagResource", "secretsmanager:UntagResource",
                 "secretsmanager:RestoreSecret", "secretsmanager:DeleteSecret",
                 "secretsmanager:UpdateSecretVersionStage"}
RUNTIME = {  # SQS event source mapping (runs with the function's role) and logging
    "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
    # Records handed back untouched are made visible again at once (issue 20).
    "sqs:ChangeMessageVisibility",
    "logs:CreateLogStream", "logs:PutLogEvents",
}
# Effective dates (contract section 9; test_dates.py checks their scope).
SCHEDULES = {"scheduler:GetSchedule", "scheduler:CreateSchedule", "scheduler:UpdateSchedule",
             "scheduler:DeleteSchedule", "iam:PassRole"}
# The credential lifecycle (section 11) reads like the audit.
LIFECYCLE_READS = {"iam:GetAccountAuthorizationDetails", "iam:GenerateCredentialReport",
                   "iam:GetCredentialReport"}
EXPECTED_ACTIONS = IAM_READS | IAM_WRITES | SECRETS | RUNTIME | SCHEDULES | LIFECYCLE_READS | {
    "ses:SendEmail", "kms:GenerateDataKey", "kms:Decrypt", "kms:DescribeKey",
}
AUDIT_ACTIONS = {"iam:GetAccountAuthorizationDetails", "iam:GenerateCredentialReport",
                 "iam:GetCredentialReport", "secretsmanager:ListSecrets",
                 "scheduler:ListSchedules", "scheduler:GetSchedule",
                 "iam:ListSSHPublicKeys", "iam:ListServiceSpecificCredentials",
                 "logs:CreateLogStream", "logs:PutLogEvents"}
CONTRACT_VARIABLES = {
    "USER_PATH", "PROVISIONING_RULES", "TEMPLATE_PATH", "PERMISSIONS_BOUNDARY_ARN", "SECRET_PREFIX",
    "SECRET_KMS_KEY_ID", "SENDER_EMAIL", "SIGNIN_URL", "LEAVER_ACTION", "SECRET_RECOVERY_DAYS",
    "DRY_RUN", "MAX_EVENT_AGE_DAYS", "DENY_POLICY_ARN", "KEY_MAX_AGE_DAYS", "MFA_GRACE_DAYS",
    "SCHEDULE_GROUP", "SCHEDULE_TARGET_ARN", "SCHEDULER_ROLE_ARN", "PROVISION_LEAD", "HR_TIME_ZONE",
    "KEY_ROTATION_GRACE_DAYS", "UNUSED_DISABLE_DAYS",
}
# The project's own variables the stack sets (README configuration table).
STACK_VARIABLES = {"MAX_INSTANCES", "RATE_FLOOR_PER_SECOND"}
ADMIN = "arn:aws:iam::aws:policy/AdministratorAccess"
READONLY = "arn:aws:iam::aws:policy/ReadOnlyAccess"
TEAM_POLICY = f"arn:aws:iam::{ACCOUNT}:policy/team-analytics"


def grants(statement: dict, action: str) -> bool:
    return any(fnmatch.fnmatchcase(action.lower(), p.lower()) for p in as_list(statement.get("Action", [])))


def user_arn(name: str, path: str = "/employees/") -> str:
    return f"arn:aws:iam::{ACCOUNT}:user{path}{name}"


def secret_arn(name: str, prefix: str = "hr-provisioner/") -> str:
    return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{prefix}{name}-AbCdEf"


# --- fixtures --------------------------------------------------------------------------

@pytest.fixture(scope="session")
def template():
    return ep.load_template()


def resolved(template, **overrides):
    return ep.Resolver(template, overrides)


@pytest.fixture(scope="session")
def resolver(template):
    return resolved(template)


def principal_documents(template, role: str, **overrides) -> list[dict]:
    """Every identity policy document that applies to the role (inline, RolePolicy, managed)."""
    docs = ep.policy_documents(template, overrides)
    out = [d for d in docs if d["resource"] == role and d["kind"] == "identity"]
    for lid, res in template["Resources"].items():
        if res["Type"] in ("AWS::IAM::RolePolicy", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            props = res["Properties"]
            attached = as_list(props.get("RoleName", [])) + as_list(props.get("Roles", []))
            if {"Ref": role} in attached:
                out += [d for d in docs if d["resource"] == lid]
    return out


def role_statements(template, role: str = "ProvisionerRole", **overrides) -> list[dict]:
    docs = principal_documents(template, role, **overrides)
    assert docs, role
    return [s for d in docs for s in as_list(d["document"]["Statement"])]


@pytest.fixture(scope="session")
def statements(template):
    return role_statements(template)


@pytest.fixture(scope="session")
def boundary_arn(resolver):
    return resolver.ref("EmployeeBoundaryPolicy")


@pytest.fixture(scope="session")
def deny_all_arn(resolver):
    return resolver.ref("DenyAllPolicy")


def managed(boundary: str | None, **extra) -> dict:
    """Request context of a call on a user the provisioner manages."""
    ctx = {MANAGED_BY: "hr-provisioner"}
    if boundary:
        ctx["iam:PermissionsBoundary"] = boundary
    ctx.update(extra)
    return ctx


def boundary_statements(template, **overrides) -> list[dict]:
    doc = resolved(template, **overrides).resolve(
        template["Resources"]["EmployeeBoundaryPolicy"]["Properties"]["PolicyDocument"])
    return as_list(doc["Statement"])


def function_props(template, lid="ProvisionerFunction", **overrides):
    return resolved(template, **overrides).resolve(ep.function_properties(template, lid))


# =========================================================================================
# The provisioner's role
# =========================================================================================

def test_roles_are_explicit_and_functions_use_them(template):
    for fn, role in (("ProvisionerFunction", "ProvisionerRole"), ("AuditFunction", "AuditRole")):
        res = template["Resources"][fn]
        assert res["Type"] == "AWS::Serverless::Function"
        assert "Policies" not in res["Properties"], "no SAM policy templates"
        assert res["Properties"]["Role"] == {"Fn::GetAtt": [role, "Arn"]}
        assert template["Resources"][role]["Type"] == "AWS::IAM::Role"
        assert "ManagedPolicyArns" not in template["Resources"][role]["Properties"]


@pytest.mark.parametrize("role", ["ProvisionerRole", "AuditRole"])
def test_trust_policy_is_lambda_of_this_account_only(template, resolver, role):
    doc = resolver.resolve(template["Resources"][role]["Properties"]["AssumeRolePolicyDocument"])
    (stmt,) = doc["Statement"]
    assert stmt["Effect"] == "Allow"
    assert stmt["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert stmt["Action"] == "sts:AssumeRole"
    assert stmt["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}


def test_role_allows_exactly_the_apis_the_function_calls(statements):
    allowed = set()
    for s in statements:
        if s["Effect"] != "Allow":
            continue
        assert "NotAction" not in s and "NotResource" not in s, s.get("Sid")
        for a in as_list(s["Action"]):
            assert "*" not in a, f"wildcard action {a} in {s.get('Sid')}"
            allowed.add(a)
    assert allowed == EXPECTED_ACTIONS, (
        f"missing: {sorted(EXPECTED_ACTIONS - allowed)}, extra: {sorted(allowed - EXPECTED_ACTIONS)}"
    )


def test_no_inline_user_policies(statements):
    """Issue 9: no iam:PutUserPolicy at all; leavers get the managed deny-all instead."""
    assert not [s for s in statements if s["Effect"] == "Allow" and grants(s, "iam:PutUserPolicy")]
    assert decide(statements, "iam:PutUserPolicy", user_arn("jane"), managed(None)) == DENY


def test_condition_keys_exist_for_their_actions(template):
    """Every service-specific condition key applies to every action of its statement
    (Service Authorization Reference); a key IAM does not know would make an Allow dead
    and a Deny toothless."""
    docs = ep.policy_documents(template)
    bad = []
    for d in docs:
        if d["kind"] != "identity":
            continue
        for s in as_list(d["document"]["Statement"]):
            for op, block in (s.get("Condition") or {}).items():
                for key in block:
                    for action in as_list(s.get("Action", [])):
                        if "*" in action:
                            continue
                        # A Deny "...IfExists" on an action that lacks the key denies it
                        # outright, on purpose (e.g. SES SendBulkEmail has no FromAddress).
                        if s["Effect"] == "Deny" and op.endswith("IfExists"):
                            continue
                        if not iam_eval.key_supported(action, key):
                            bad.append(f"{d['id']}/{s.get('Sid')}: {key} on {action}")
    assert not bad, bad


def test_iam_reads(statements):
    for s in statements:
        if s["Effect"] != "Allow" or not any(grants(s, a) for a in IAM_READS):
            continue
        resources = as_list(s["Resource"])
        actions = set(as_list(s["Action"]))
        assert actions <= IAM_READS, s["Sid"]
        if resources == ["*"]:
            # Only the actions that support no resource-level permission.
            assert actions <= {"iam:ListUsers", "iam:GetAccountPasswordPolicy",
                               "iam:ListAccountAliases", "iam:ListVirtualMFADevices"}, s["Sid"]
        elif resources == [f"arn:aws:iam::{ACCOUNT}:user/*"]:
            assert actions == {"iam:GetUser"}, "only the name-clash lookup reads any user"
        else:
            assert resources in ([f"arn:aws:iam::{ACCOUNT}:user/employees/*"],
                                 [f"arn:aws:iam::{ACCOUNT}:user/templates/*"]), s["Sid"]
    # The state of an employee outside the path (an admin, say) is not readable.
    assert decide(statements, "iam:ListAccessKeys", user_arn("admin", "/")) != ALLOW
    assert decide(statements, "iam:GetUser", user_arn("admin", "/")) == ALLOW


def test_template_users_are_read_only(template, statements):
    """Issue 10: the role reads template users (copy_from) and never writes them."""
    (s,) = [s for s in statements if s.get("Sid") == "IamReadTemplateUsers"]
    assert set(as_list(s["Action"])) == TEMPLATE_READS
    assert as_list(s["Resource"]) == [f"arn:aws:iam::{ACCOUNT}:user/templates/*"]
    tpl = user_arn("tpl-engineering", "/templates/")
    for action in TEMPLATE_READS:
        assert decide(statements, action, tpl) == ALLOW, action
    for action in sorted(USER_WRITES):
        # Even a template someone tagged as managed is outside the user path.
        ctx = managed("x", **{"iam:PolicyARN": READONLY, "aws:RequestTag/hr:managed-by": "hr-provisioner",
                              "aws:TagKeys": ["hr:status"]})
        assert decide(statements, action, tpl, ctx) != ALLOW, action
    # The parameter moves the scope.
    moved = role_statements(template, TemplatePath="/hr/templates/")
    assert decide(moved, "iam:ListGroupsForUser", user_arn("t", "/hr/templates/")) == ALLOW
    assert decide(moved, "iam:ListGroupsForUser", tpl) != ALLOW


@pytest.mark.parametrize("path", ["/employees/", "/contractors/emea/"])
def test_every_iam_write_is_scoped(template, path):
    r = resolved(template, UserPath=path)
    baseline_group = r.get_att("BaselineGroup", "Arn")
    allowed_groups = {baseline_group} | {f"arn:aws:iam::{ACCOUNT}:group/{g}" for g in ("developers", "readonly")}
    seen = set()
    for s in role_statements(template, UserPath=path):
        if s["Effect"] != "Allow":
            continue
        writes = {a for a in IAM_WRITES if grants(s, a)}
        if not writes:
            continue
        seen |= writes
        resources = set(as_list(s["Resource"]))
        if writes & USER_WRITES:
            assert writes <= USER_WRITES, f"{s['Sid']} mixes user and non-user writes"
            assert resources == {f"arn:aws:iam::{ACCOUNT}:user{path}*"}, s["Sid"]
        elif writes <= GROUP_WRITES:
            assert resources == allowed_groups, s["Sid"]
        else:
            assert writes == MFA_WRITES, s["Sid"]
            assert resources == {f"arn:aws:iam::{ACCOUNT}:mfa/*"}, s["Sid"]
    assert seen == IAM_WRITES


def test_every_user_write_requires_the_managed_tag(statements, boundary_arn, deny_all_arn):
    """Issue 9: every IAM write on a user is conditioned on iam:ResourceTag/hr:managed-by."""
    for s in statements:
        if s["Effect"] != "Allow" or not ({a for a in USER_WRITES if grants(s, a)} - {"iam:CreateUser"}):
            continue
        cond = s["Condition"]
        if s["Sid"] == "IamTagOnCreation":
            # CreateUser's own tags (authorized as TagUser on a user that does not exist yet).
            assert cond == {"StringEquals": {"aws:RequestTag/hr:managed-by": "hr-provisioner"},
                            "StringEqualsIfExists": {MANAGED_BY: "hr-provisioner"}}
        else:
            assert cond["StringEquals"][MANAGED_BY] == "hr-provisioner", s["Sid"]
    # Evaluated: not one write on a user that is not ours, inside the path.
    for tags in ({}, {MANAGED_BY: "other-tool"}):
        for action in sorted(USER_WRITES - {"iam:CreateUser"}):
            ctx = {**tags, "iam:PermissionsBoundary": boundary_arn, "iam:PolicyARN": deny_all_arn,
                   "aws:TagKeys": ["hr:status"], "aws:RequestTag/hr:status": "retired"}
            assert decide(statements, action, user_arn("someone"), ctx) != ALLOW, (action, tags)
    # ... and the same writes on a managed user are allowed.
    for action in sorted(USER_WRITES - {"iam:CreateUser", "iam:AttachUserPolicy", "iam:DetachUserPolicy",
                                        "iam:PutUserPermissionsBoundary"}):
        ctx = managed(boundary_arn, **{"aws:TagKeys": ["hr:status"], "aws:RequestTag/hr:status": "retired"})
        assert decide(statements, action, user_arn("jane"), ctx) == ALLOW, action
    # Outside the path nothing is written, tag or not.
    for action in sorted(USER_WRITES):
        assert decide(statements, action, user_arn("jane", "/"), managed(boundary_arn)) == DENY, action


def test_claiming_an_untagged_user_is_the_only_residual(statements):
    """IamTagOnCreation lets the role write hr:managed-by = hr-provisioner on a user under
    the path that has no hr:managed-by tag (IAM cannot tell it from the user CreateUser is
    creating). Documented in infra/README.md; it can never take a user from another owner."""
    ours = {"aws:RequestTag/hr:managed-by": "hr-provisioner", "aws:TagKeys": ["hr:managed-by"]}
    assert decide(statements, "iam:TagUser", user_arn("x"), ours) == ALLOW
    assert decide(statements, "iam:TagUser", user_arn("x"), {**ours, MANAGED_BY: "other-tool"}) != ALLOW
    assert decide(statements, "iam:TagUser", user_arn("x"),
                  {"aws:RequestTag/hr:status": "active", "aws:TagKeys": ["hr:status"]}) != ALLOW


def test_create_user_needs_managed_tag_and_boundary(statements, boundary_arn):
    tag = {"aws:RequestTag/hr:managed-by": "hr-provisioner", "aws:TagKeys": ["hr:managed-by", "hr:employee-id"]}
    new = user_arn("jane")
    assert decide(statements, "iam:CreateUser", new, {**tag, "iam:PermissionsBoundary": boundary_arn}) == ALLOW
    # its tags (authorized as TagUser on the new user) too
    assert decide(statements, "iam:TagUser", new, tag) == ALLOW
    assert decide(statements, "iam:CreateUser", new, tag) == DENY, "no boundary"
    assert decide(statements, "iam:CreateUser", new,
                  {**tag, "iam:PermissionsBoundary": f"arn:aws:iam::{ACCOUNT}:policy/other"}) == DENY
    assert decide(statements, "iam:CreateUser", new, {"iam:PermissionsBoundary": boundary_arn}) == DENY
    assert decide(statements, "iam:CreateUser", new,
                  {"iam:PermissionsBoundary": boundary_arn, "aws:RequestTag/hr:managed-by": "someone",
                   "aws:TagKeys": ["hr:managed-by"]}) == DENY
    assert decide(statements, "iam:CreateUser", user_arn("jane", "/admins/"),
                  {**tag, "iam:PermissionsBoundary": boundary_arn}) == DENY
    (s,) = [s for s in statements if s["Effect"] == "Allow" and grants(s, "iam:CreateUser")]
    assert s["Condition"]["StringEquals"] == {"aws:RequestTag/hr:managed-by": "hr-provisioner"}
    assert s["Condition"]["ArnEquals"] == {"iam:PermissionsBoundary": boundary_arn}


def test_boundary_changes_only_to_the_stacks(statements, boundary_arn):
    assert decide(statements, "iam:PutUserPermissionsBoundary", user_arn("jane"), managed(boundary_arn)) == ALLOW
    other = managed(f"arn:aws:iam::{ACCOUNT}:policy/wide-open")
    assert decide(statements, "iam:PutUserPermissionsBoundary", user_arn("jane"), other) == DENY
    assert decide(statements, "iam:DeleteUserPermissionsBoundary", user_arn("jane"), managed(boundary_arn)) == DENY
    assert boundary_arn == f"arn:aws:iam::{ACCOUNT}:policy/{STACK}-employee-boundary"


def test_managed_policy_tampering_denied(statements, boundary_arn, deny_all_arn):
    for action in ("iam:DeletePolicy", "iam:CreatePolicyVersion", "iam:DeletePolicyVersion",
                   "iam:SetDefaultPolicyVersion"):
        for arn in (boundary_arn, deny_all_arn, f"arn:aws:iam::{ACCOUNT}:policy/{STACK}-provisioner-guardrails"):
            assert decide(statements, action, arn) == DENY, (action, arn)


@pytest.mark.parametrize("allow_list", ["", f"{READONLY},{TEAM_POLICY}"])
def test_attach_detach_only_allow_listed_policies_and_the_deny_all(template, allow_list, boundary_arn, deny_all_arn):
    """Issue 9: Attach/DetachUserPolicy only with iam:PolicyARN in AllowedManagedPolicyArns
    plus the stack's deny-all; grants only onto users that carry the boundary."""
    stmts = role_statements(template, AllowedManagedPolicyArns=allow_list)
    listed = [a for a in allow_list.split(",") if a]
    for s in stmts:
        if s["Effect"] == "Allow" and (grants(s, "iam:AttachUserPolicy") or grants(s, "iam:DetachUserPolicy")):
            arns = set(as_list(s["Condition"]["ArnEquals"]["iam:PolicyARN"]))
            assert arns in ({deny_all_arn}, set(listed)), s["Sid"]
            assert s["Condition"]["StringEquals"][MANAGED_BY] == "hr-provisioner"
    jane = user_arn("jane")

    def attach(policy, boundary=boundary_arn, **extra):
        return decide(stmts, "iam:AttachUserPolicy", jane, managed(boundary, **{"iam:PolicyARN": policy}, **extra))

    def detach(policy, boundary=boundary_arn):
        return decide(stmts, "iam:DetachUserPolicy", jane, managed(boundary, **{"iam:PolicyARN": policy}))

    assert attach(ADMIN) == DENY
    assert attach(boundary_arn) == DENY, "the boundary is a ceiling, never a grant"
    assert attach(READONLY) == (ALLOW if listed else DENY)
    assert attach(TEAM_POLICY) == (ALLOW if listed else DENY)
    assert detach(READONLY) == (ALLOW if listed else DENY)
    assert attach(READONLY, boundary=None) == DENY, "a grant needs the boundary on the user"
    # The leaver's cut-off works on every managed user, with or without its boundary.
    assert attach(deny_all_arn) == ALLOW
    assert attach(deny_all_arn, boundary=None) == ALLOW
    # Lifting it (rehire) gives access back: only within the boundary.
    assert detach(deny_all_arn) == ALLOW
    assert detach(deny_all_arn, boundary=None) != ALLOW
    # Not on users that are not ours.
    assert decide(stmts, "iam:AttachUserPolicy", jane,
                  {"iam:PolicyARN": deny_all_arn, "iam:PermissionsBoundary": boundary_arn}) == DENY


def test_the_boundary_can_never_be_attached_even_if_allow_listed(template, boundary_arn):
    stmts = role_statements(template, AllowedManagedPolicyArns=boundary_arn)
    ctx = managed(boundary_arn, **{"iam:PolicyARN": boundary_arn})
    assert decide(stmts, "iam:AttachUserPolicy", user_arn("jane"), ctx) == DENY


def test_allowed_managed_policy_arns_refuse_wildcards(template):
    pattern = template["Parameters"]["AllowedManagedPolicyArns"]["AllowedPattern"]
    for good in ("", READONLY, TEAM_POLICY, f"arn:aws:iam::{ACCOUNT}:policy/path/to/p"):
        assert re.match(pattern, good), good
    for bad in ("arn:aws:iam::aws:policy/*", "arn:aws:iam::*:policy/x", f"arn:aws:iam::{ACCOUNT}:policy/team-?",
                "AdministratorAccess"):
        assert not re.match(pattern, bad), bad


def test_managed_tag_can_be_neither_removed_nor_changed(statements):
    jane = user_arn("jane")
    for key in ("hr:managed-by", "HR:Managed-By"):
        assert decide(statements, "iam:UntagUser", jane, managed(None, **{"aws:TagKeys": [key]})) == DENY, key
        assert decide(statements, "iam:TagUser", jane, managed(None, **{
            "aws:TagKeys": [key], f"aws:RequestTag/{key}": "someone-else"})) == DENY, key
    # The other tags follow the HR record.
    assert decide(statements, "iam:UntagUser", jane, managed(None, **{"aws:TagKeys": ["hr:manager-email"]})) == ALLOW
    assert decide(statements, "iam:TagUser", jane, managed(None, **{
        "aws:TagKeys": ["hr:status"], "aws:RequestTag/hr:status": "retired"})) == ALLOW


@pytest.mark.parametrize(
    "names, expected",
    [
        ("", []),
        ("developers", ["developers"]),
        (",".join(f"g{i}" for i in range(10)), [f"g{i}" for i in range(10)]),
    ],
)
def test_group_membership_follows_allowed_group_names(template, names, expected):
    r = resolved(template, AllowedGroupNames=names)
    (s,) = [s for s in role_statements(template, AllowedGroupNames=names)
            if s["Effect"] == "Allow" and grants(s, "iam:AddUserToGroup")]
    assert grants(s, "iam:RemoveUserFromGroup")
    assert as_list(s["Resource"]) == [r.get_att("BaselineGroup", "Arn")] + [
        f"arn:aws:iam::{ACCOUNT}:group/{g}" for g in expected
    ]


def test_more_than_ten_groups_fails_deployment(template):
    names = ",".join(f"g{i}" for i in range(11))
    (s,) = [s for s in role_statements(template, AllowedGroupNames=names)
            if s["Effect"] == "Allow" and grants(s, "iam:AddUserToGroup")]
    # The guard is an ARN with an unknown partition, which IAM rejects.
    bad = [r for r in as_list(s["Resource"]) if not r.startswith("arn:aws:iam::")]
    assert len(bad) == 1 and "at-most-ten" in bad[0]


# --- Secrets Manager -------------------------------------------------------------------

def test_secret_writes_only_on_managed_secrets(statements):
    ours = {"secretsmanager:ResourceTag/hr:managed-by": "hr-provisioner"}
    for action in sorted(SECRET_WRITES):
        ctx = {"aws:TagKeys": ["hr:status"], "aws:RequestTag/hr:status": "deleted"}
        assert decide(statements, action, secret_arn("jane"), {**ours, **ctx}) == ALLOW, action
        assert decide(statements, action, secret_arn("jane"), ctx) != ALLOW, action
        assert decide(statements, action, secret_arn("jane"),
                      {"secretsmanager:ResourceTag/hr:managed-by": "squatter", **ctx}) != ALLOW, action
        assert decide(statements, action, f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:prod/db-AbCdEf",
                      {**ours, **ctx}) != ALLOW, action
    for s in statements:
        if s["Effect"] == "Allow" and (set(as_list(s["Action"])) & SECRET_WRITES) and s["Sid"] != "SecretsTagOnCreation":
            assert s["Condition"]["StringEquals"]["secretsmanager:ResourceTag/hr:managed-by"] == "hr-provisioner"


def test_create_secret_needs_managed_tag_and_the_stacks_key(statements, resolver):
    key = resolver.get_att("SecretsKey", "Arn")
    tag = {"aws:RequestTag/hr:managed-by": "hr-provisioner", "aws:TagKeys": ["hr:managed-by", "hr:employee-id"]}
    new = secret_arn("jane")
    assert decide(statements, "secretsmanager:CreateSecret", new, {**tag, "secretsmanager:KmsKeyArn": key}) == ALLOW
    assert decide(statements, "secretsmanager:TagResource", new, tag) == ALLOW, "CreateSecret's own tags"
    assert decide(statements, "secretsmanager:CreateSecret", new, tag) == DENY, "default aws/secretsmanager key"
    assert decide(statements, "secretsmanager:CreateSecret", new,
                  {**tag, "secretsmanager:KmsKeyArn": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/other"}) == DENY
    assert decide(statements, "secretsmanager:CreateSecret", new, {"secretsmanager:KmsKeyArn": key}) != ALLOW
    assert decide(statements, "secretsmanager:CreateSecret", new,
                  {"secretsmanager:KmsKeyArn": key, "aws:RequestTag/hr:managed-by": "x",
                   "aws:TagKeys": ["hr:managed-by"]}) == DENY
    (s,) = [s for s in statements if s["Effect"] == "Allow" and grants(s, "secretsmanager:CreateSecret")]
    assert s["Condition"] == {"StringEquals": {"aws:RequestTag/hr:managed-by": "hr-provisioner"},
                              "ArnEquals": {"secretsmanager:KmsKeyArn": key}}


def test_secret_managed_tag_kept_and_tombstones_recoverable(statements):
    ours = {"secretsmanager:ResourceTag/hr:managed-by": "hr-provisioner"}
    jane = secret_arn("jane")
    assert decide(statements, "secretsmanager:UntagResource", jane, {**ours, "aws:TagKeys": ["hr:managed-by"]}) == DENY
    assert decide(statements, "secretsmanager:TagResource", jane, {
        **ours, "aws:TagKeys": ["hr:managed-by"], "aws:RequestTag/hr:managed-by": "me"}) == DENY
    assert decide(statements, "secretsmanager:DeleteSecret", jane,
                  {**ours, "secretsmanager:ForceDeleteWithoutRecovery": "true"}) == DENY
    assert decide(statements, "secretsmanager:DeleteSecret", jane,
                  {**ours, "secretsmanager:RecoveryWindowInDays": "30"}) == ALLOW


def test_secret_reads_and_listing(statements):
    for action in ("secretsmanager:DescribeSecret", "secretsmanager:GetResourcePolicy",
                   "secretsmanager:GetSecretValue"):
        assert decide(statements, action, secret_arn("squatted")) == ALLOW, "must inspect foreign secrets"
        assert decide(statements, action, f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:prod/db-x") != ALLOW
    (s,) = [s for s in statements if s["Effect"] == "Allow" and grants(s, "secretsmanager:ListSecrets")]
    assert as_list(s["Action"]) == ["secretsmanager:ListSecrets"] and s["Resource"] == "*"


def test_secret_prefix_must_end_with_a_slash(template):
    params = template["Parameters"]
    pattern = params["SecretPrefix"]["AllowedPattern"]
    for good in ("hr-provisioner/", "iam/employees/", "a/"):
        assert re.match(pattern, good), good
    for bad in ("", "/", "hr-provisioner", "hr", "hr-provisioner//", "hr provisioner/"):
        assert not re.match(pattern, bad), bad
    assert params["SecretPrefix"]["Default"] == "hr-provisioner/"


# --- SES, KMS, SQS, logs -----------------------------------------------------------------

def test_mail_only_from_the_sender(statements):
    identity = f"arn:aws:ses:{REGION}:{ACCOUNT}:identity/example.com"
    assert decide(statements, "ses:SendEmail", identity, {"ses:FromAddress": "no-reply@example.com"}) == ALLOW
    assert decide(statements, "ses:SendEmail", identity, {"ses:FromAddress": "ceo@example.com"}) != ALLOW
    assert decide(statements, "ses:SendEmail", identity) != ALLOW
    assert decide(statements, "ses:SendEmail", f"arn:aws:ses:{REGION}:{ACCOUNT}:identity/other.com",
                  {"ses:FromAddress": "no-reply@example.com"}) != ALLOW
    (s,) = [s for s in statements if s["Effect"] == "Allow" and grants(s, "ses:SendEmail")]
    assert s["Condition"] == {"StringEquals": {"ses:FromAddress": "no-reply@example.com"}}


def test_kms_sqs_logs_are_scoped(statements, resolver):
    prefix_arn = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:hr-provisioner/*"
    key_arn = resolver.get_att("SecretsKey", "Arn")
    for s in statements:
        if s["Effect"] != "Allow":
            continue
        services = {a.split(":")[0] for a in as_list(s["Action"])}
        if as_list(s["Action"]) == ["kms:DescribeKey"]:
            assert as_list(s["Resource"]) == [key_arn], "resolves aliases of the stack key only"
        elif services == {"kms"}:
            assert as_list(s["Resource"]) == [key_arn]
            assert s["Condition"]["StringEquals"]["kms:ViaService"] == f"secretsmanager.{REGION}.amazonaws.com"
            assert s["Condition"]["StringLike"]["kms:EncryptionContext:SecretARN"] == prefix_arn
        elif services == {"sqs"}:
            assert as_list(s["Resource"]) == [resolver.get_att("HrEventQueue", "Arn")]
        elif services == {"logs"}:
            assert as_list(s["Resource"]) == [resolver.get_att("ProvisionerLogGroup", "Arn")]
        elif services == {"secretsmanager"} and s["Resource"] != "*":
            assert as_list(s["Resource"]) == [prefix_arn], s["Sid"]


# --- size limits ---------------------------------------------------------------------------

def test_policies_fit_iam_size_limits_with_the_largest_parameters(template):
    """Inline policies of a role: 10,240 characters together; a managed policy: 6,144
    (IAM quotas, whitespace not counted). Checked with every list parameter at its
    realistic maximum, so no deployment fails on size."""
    big = {
        "AllowedGroupNames": ",".join(f"engineering-platform-team-{i:02d}" for i in range(10)),
        "AllowedManagedPolicyArns": ",".join(
            f"arn:aws:iam::{ACCOUNT}:policy/departments/engineering/team-policy-{i:02d}" for i in range(10)),
        "AssumableRoleArns": ",".join(f"arn:aws:iam::{ACCOUNT}:role/engineering/deploy-{i:02d}-*" for i in range(10)),
        "UserPath": "/employees/corporate/",
        "SecretPrefix": "hr-iam-provisioner/employees/",
    }

    def size(doc):
        return len(json.dumps(doc, separators=(",", ":")))

    docs = ep.policy_documents(template, big)
    inline = [d for d in docs if d["kind"] == "identity" and d["resource"] == "ProvisionerRole"]
    inline += [d for d in docs if d["resource"] in ("ProvisionerKmsPolicy", "ProvisionerSchedulesPolicy")]
    assert sum(size(d["document"]) for d in inline) <= 10240, [d["id"] for d in inline]
    for d in docs:
        if template["Resources"][d["resource"]]["Type"] == "AWS::IAM::ManagedPolicy":
            assert size(d["document"]) <= 6144, (d["id"], size(d["document"]))
        if d["resource"] == "AuditRole" and d["kind"] == "identity":
            assert size(d["document"]) <= 10240


# =========================================================================================
# The employee permissions boundary
# =========================================================================================

def employee(name="jane"):
    return {"aws:username": name}


def test_boundary_allows_no_identity_administration(template):
    """No iam, organizations, account or Identity Center action gets through the ceiling,
    except the self-service of the own password and MFA device (baseline group)."""
    from policy_sentry.querying.actions import get_actions_for_service

    stmts = boundary_statements(template)
    own_user, own_mfa = user_arn("jane"), f"arn:aws:iam::{ACCOUNT}:mfa/jane"
    self_service = {"iam:ChangePassword", "iam:GetUser", "iam:GetMFADevice", "iam:ListMFADevices",
                    "iam:EnableMFADevice", "iam:ResyncMFADevice", "iam:DeactivateMFADevice",
                    "iam:CreateVirtualMFADevice", "iam:DeleteVirtualMFADevice",
                    "iam:GetAccountPasswordPolicy", "iam:ListVirtualMFADevices"}
    leaked = []
    for service in ("iam", "organizations", "account", "sso", "identitystore"):
        actions = get_actions_for_service(service)
        assert actions, service
        for action in actions:
            for resource in (own_user, own_mfa, user_arn("admin", "/"), f"arn:aws:iam::{ACCOUNT}:role/admin", "*"):
                if decide(stmts, action, resource, employee()) == ALLOW:
                    leaked.append((action, resource))
    allowed_actions = {a for a, _ in leaked}
    assert allowed_actions <= {a.lower() for a in self_service} | self_service, sorted(allowed_actions - self_service)
    # ... and self-service only on the own user and device (the two account-level reads
    # support no resource).
    for action, resource in leaked:
        if action not in ("iam:GetAccountPasswordPolicy", "iam:ListVirtualMFADevices"):
            assert resource in (own_user, own_mfa), (action, resource)
    assert decide(stmts, "iam:ChangePassword", own_user, employee()) == ALLOW
    assert decide(stmts, "iam:ChangePassword", user_arn("bob"), employee()) != ALLOW
    assert decide(stmts, "iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/admin", employee()) != ALLOW


@pytest.mark.parametrize("roles", ["", f"arn:aws:iam::{ACCOUNT}:role/dev-*,arn:aws:iam::210987654321:role/readonly"])
def test_boundary_denies_assume_role_outside_the_parameter(template, roles):
    stmts = boundary_statements(template, AssumableRoleArns=roles)
    admin = f"arn:aws:iam::{ACCOUNT}:role/OrganizationAccountAccessRole"
    assert decide(stmts, "sts:AssumeRole", admin, employee()) == DENY
    assert decide(stmts, "sts:AssumeRole", f"arn:aws:iam::{ACCOUNT}:role/{STACK}-provisioner", employee()) == DENY
    dev = f"arn:aws:iam::{ACCOUNT}:role/dev-analytics"
    own = {**employee(), "sts:SourceIdentity": "jane"}
    assert decide(stmts, "sts:AssumeRole", dev, own) == (ALLOW if roles else DENY)
    assert decide(stmts, "sts:AssumeRole", "arn:aws:iam::210987654321:role/readonly", own) == (
        ALLOW if roles else DENY)
    # The session tokens MFA-enforced users need are not affected.
    assert decide(stmts, "sts:GetSessionToken", "*", employee()) == ALLOW


def test_boundary_denies_security_service_tampering(template):
    """CloudTrail, Config, GuardDuty, Security Hub: read-only through the ceiling, and
    their stop/delete/update actions explicitly denied (a guardrail that survives a
    widening of the ceiling)."""
    from policy_sentry.querying.actions import get_action_data, get_actions_for_service

    stmts = boundary_statements(template)
    for service in ("cloudtrail", "config", "guardduty", "securityhub"):
        writes = []
        for action in get_actions_for_service(service):
            rows = [r for rows in get_action_data(service, action.split(":")[1]).values() for r in rows]
            if any(r["access_level"] in ("Write", "Permissions management", "Tagging") for r in rows):
                writes.append(action)
                assert decide(stmts, action, "*", employee()) != ALLOW, action
        assert len(writes) > 5, service
    explicitly_denied = ["cloudtrail:StopLogging", "cloudtrail:DeleteTrail", "cloudtrail:UpdateTrail",
                         "cloudtrail:PutEventSelectors", "config:StopConfigurationRecorder",
                         "config:DeleteConfigurationRecorder", "config:DeleteDeliveryChannel",
                         "config:PutConfigurationRecorder", "guardduty:DeleteDetector",
                         "guardduty:UpdateDetector", "guardduty:DisassociateFromMasterAccount",
                         "guardduty:CreateFilter", "guardduty:CreateIPSet", "guardduty:ArchiveFindings",
                         "securityhub:DisableSecurityHub", "securityhub:BatchDisableStandards",
                         "securityhub:BatchUpdateFindings", "securityhub:DeleteInsight",
                         "securityhub:CreateAutomationRule"]
    for action in explicitly_denied:
        assert decide(stmts, action, f"arn:aws:cloudtrail:{REGION}:{ACCOUNT}:trail/org", employee()) == DENY, action
    assert decide(stmts, "cloudtrail:LookupEvents", "*", employee()) == ALLOW
    assert decide(stmts, "guardduty:ListFindings", "*", employee()) == ALLOW


def test_boundary_denies_acting_as_existing_roles(template):
    stmts = boundary_statements(template)
    for action in ("lambda:UpdateFunctionCode", "lambda:UpdateFunctionConfiguration", "glue:UpdateDevEndpoint",
                   "ec2:ModifyInstanceAttribute", "ec2:ModifyLaunchTemplate", "ssm:SendCommand",
                   "ssm:StartSession", "ecs:ExecuteCommand", "cloudformation:ExecuteChangeSet",
                   "sagemaker:CreatePresignedNotebookInstanceUrl", "codebuild:StartBuild",
                   "ec2-instance-connect:SendSSHPublicKey"):
        assert decide(stmts, action, "*", employee()) == DENY, action
    # Ordinary work stays within the ceiling (the groups decide).
    assert decide(stmts, "s3:GetObject", "arn:aws:s3:::team-bucket/report.csv", employee()) == ALLOW
    assert decide(stmts, "lambda:InvokeFunction", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:team-fn",
                  employee()) == ALLOW


def test_boundary_has_no_privilege_escalation_for_cloudsplaining(template):
    import cloudsplaining_check as cc

    docs = cc.documents(template)
    assert cc.findings(docs[cc.BOUNDARY])["PrivilegeEscalation"] == []


def test_boundary_denies_every_access_to_the_provisioners_resources(template, resolver):
    stmts = boundary_statements(template)
    fn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{STACK}"
    own = {
        "lambda:InvokeFunction": [f"{fn}-provisioner", f"{fn}-audit"],
        "lambda:GetFunction": [f"{fn}-provisioner", f"{fn}-audit"],
        "lambda:UpdateAlias": [f"{fn}-provisioner:live"],
        "sqs:SendMessage": [resolver.get_att("HrEventQueue", "Arn"), resolver.get_att("HrDeadLetterQueue", "Arn")],
        "sqs:ReceiveMessage": [resolver.get_att("HrDeadLetterQueue", "Arn")],
        "sqs:PurgeQueue": [resolver.get_att("HrEventQueue", "Arn")],
        "kms:Decrypt": [resolver.get_att("SecretsKey", "Arn"), resolver.get_att("ObservabilityKey", "Arn")],
        "kms:ScheduleKeyDeletion": [resolver.get_att("SecretsKey", "Arn")],
        "kms:UpdateAlias": [f"arn:aws:kms:{REGION}:{ACCOUNT}:alias/{STACK}-secrets"],
        "secretsmanager:GetSecretValue": [secret_arn("bob")],
        "secretsmanager:DescribeSecret": [secret_arn("jane")],
        "logs:FilterLogEvents": [resolver.get_att("ProvisionerLogGroup", "Arn"), resolver.get_att("AuditLogGroup", "Arn")],
        "logs:DeleteLogGroup": [resolver.get_att("ProvisionerLogGroup", "Arn")],
        "logs:StartQuery": [resolver.get_att("ProvisionerLogGroup", "Arn")],
        "cloudformation:DeleteStack": [f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/0a1b2c3d"],
        "events:DisableRule": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{STACK}-audit"],
        "cloudwatch:DisableAlarmActions": [f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{STACK}-audit-findings"],
        "sns:Unsubscribe": [resolver.ref("AlarmTopic")],
    }
    for action, arns in own.items():
        for arn in arns:
            assert decide(stmts, action, arn, employee()) == DENY, (action, arn)
    # Control: the same actions on someone else's resources are within the ceiling.
    assert decide(stmts, "lambda:InvokeFunction", f"{fn.replace(STACK, 'team')}-x", employee()) == ALLOW
    assert decide(stmts, "secretsmanager:GetSecretValue",
                  f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:team/db-x", employee()) == ALLOW
    # Event source mappings pointing at the stack's functions.
    assert decide(stmts, "lambda:CreateEventSourceMapping", "*",
                  {**employee(), "lambda:FunctionArn": f"{fn}-provisioner"}) == DENY


def test_nobody_mails_as_the_hr_sender(template):
    stmts = boundary_statements(template)
    identity = f"arn:aws:ses:{REGION}:{ACCOUNT}:identity/example.com"
    for sender in ("no-reply@example.com", "No-Reply@Example.com"):
        assert decide(stmts, "ses:SendEmail", identity, {**employee(), "ses:FromAddress": sender}) == DENY
    assert decide(stmts, "ses:SendEmail", identity, {**employee(), "ses:FromAddress": "jane@example.com"}) == ALLOW


def test_deny_all_policy_denies_everything(template, resolver):
    doc = resolver.resolve(template["Resources"]["DenyAllPolicy"]["Properties"]["PolicyDocument"])
    assert doc["Statement"] == [{"Sid": "HrProvisionerRetired", "Effect": "Deny", "Action": "*", "Resource": "*"}]
    assert resolver.ref("DenyAllPolicy") == f"arn:aws:iam::{ACCOUNT}:policy/{STACK}-deny-all"


def test_baseline_group_is_self_service_with_forced_mfa(template, resolver):
    (pol,) = resolver.resolve(template["Resources"]["BaselineGroup"]["Properties"]["Policies"])
    stmts = pol["PolicyDocument"]["Statement"]
    own_user = f"arn:aws:iam::{ACCOUNT}:user/employees/${{aws:username}}"
    assert any(grants(s, "iam:ChangePassword") and s["Resource"] == own_user for s in stmts if s["Effect"] == "Allow")
    assert any(grants(s, "iam:EnableMFADevice") and s["Resource"] == own_user for s in stmts if s["Effect"] == "Allow")
    (block,) = [s for s in stmts if s["Effect"] == "Deny"]
    assert block["Resource"] == "*"
    assert block["Condition"] == {"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}}
    assert {"iam:ChangePassword", "iam:EnableMFADevice", "iam:CreateVirtualMFADevice"} <= set(block["NotAction"])
    own_device = f"arn:aws:iam::{ACCOUNT}:mfa/${{aws:username}}"
    assert all(s["Resource"] == own_device for s in stmts if grants(s, "iam:CreateVirtualMFADevice"))
    # Every IAM action the group grants survives the boundary.
    boundary = boundary_statements(template)
    for s in stmts:
        if s["Effect"] == "Allow":
            for a in as_list(s["Action"]):
                res = as_list(s["Resource"])[0].replace("${aws:username}", "jane")
                assert decide(boundary, a, res, employee()) == ALLOW, a
    assert template["Outputs"]["BaselineGroupName"]["Value"] == {"Ref": "BaselineGroup"}


# =========================================================================================
# Functions, scheduled audit, queue, alarms, queries
# =========================================================================================

def test_function_runtime_settings(template):
    for lid in ("ProvisionerFunction", "AuditFunction"):
        res = template["Resources"][lid]
        assert res["Metadata"]["BuildMethod"] == "rust-cargolambda"
        assert res["Metadata"]["BuildProperties"] == {"Binary": "bootstrap"}
        p = function_props(template, lid)
        assert p["Runtime"] == "provided.al2023"
        assert p["Architectures"] == ["arm64"]
        assert p["Handler"] == "bootstrap"
        assert p["CodeUri"] == ".."
        assert (ep.TEMPLATE.parent / p["CodeUri"] / "Cargo.toml").exists()
        assert p["ReservedConcurrentExecutions"]
        log = p["LoggingConfig"]
        assert log["LogFormat"] == "JSON" and log["ApplicationLogLevel"] == "INFO"
        assert log["LogGroup"] == f"/aws/lambda/{p['FunctionName']}"
        lg_id = {"ProvisionerFunction": "ProvisionerLogGroup", "AuditFunction": "AuditLogGroup"}[lid]
        lg = resolved(template).resolve(template["Resources"][lg_id]["Properties"])
        assert lg["LogGroupName"] == log["LogGroup"]
        assert int(lg["RetentionInDays"]) >= 365 and lg["KmsKeyId"]


def test_environment_is_the_contract(template, resolver):
    env = function_props(template, SigninUrl="https://example.signin.aws.amazon.com/console")["Environment"]["Variables"]
    assert set(env) == CONTRACT_VARIABLES | STACK_VARIABLES
    assert env["USER_PATH"] == "/employees/"
    assert env["TEMPLATE_PATH"] == "/templates/"
    assert env["SECRET_PREFIX"] == "hr-provisioner/"
    assert env["PERMISSIONS_BOUNDARY_ARN"] == resolver.ref("EmployeeBoundaryPolicy")
    assert env["DENY_POLICY_ARN"] == resolver.ref("DenyAllPolicy")
    assert env["SECRET_KMS_KEY_ID"] == resolver.get_att("SecretsKey", "Arn")
    assert env["LEAVER_ACTION"] == "disable" and env["DRY_RUN"] == "false"
    assert env["SECRET_RECOVERY_DAYS"] == "30"
    assert (env["MAX_EVENT_AGE_DAYS"], env["KEY_MAX_AGE_DAYS"], env["MFA_GRACE_DAYS"]) == ("14", "90", "7")
    rules = json.loads(env["PROVISIONING_RULES"])
    assert rules["default"]["groups"] == [resolver.ref("BaselineGroup")]
    # The DENY_POLICY_ARN the function attaches is the one the role may attach.
    stmts = role_statements(template)
    ctx = managed(None, **{"iam:PolicyARN": env["DENY_POLICY_ARN"]})
    assert decide(stmts, "iam:AttachUserPolicy", user_arn("jane"), ctx) == ALLOW


def test_empty_optional_parameters_leave_variables_unset(template):
    env = function_props(template, SigninUrl="")["Environment"]["Variables"]
    assert "SIGNIN_URL" not in env
    env = function_props(template, ProvisioningRules='{"default":{"groups":[],"console":false,"access_key":true}}')
    assert json.loads(env["Environment"]["Variables"]["PROVISIONING_RULES"])["default"]["access_key"] is True


def test_parameters_constraints(template):
    params = template["Parameters"]
    assert params["LeaverAction"]["AllowedValues"] == ["disable", "delete"]
    assert params["DryRun"]["AllowedValues"] == ["true", "false"]
    assert (params["SecretRecoveryDays"]["MinValue"], params["SecretRecoveryDays"]["MaxValue"]) == (7, 30)
    assert (params["MaxEventAgeDays"]["Default"], params["MaxEventAgeDays"]["MinValue"],
            params["MaxEventAgeDays"]["MaxValue"]) == (14, 1, 365)
    assert (params["KeyMaxAgeDays"]["Default"], params["KeyMaxAgeDays"]["MinValue"],
            params["KeyMaxAgeDays"]["MaxValue"]) == (90, 1, 3650)
    assert (params["MfaGraceDays"]["Default"], params["MfaGraceDays"]["MinValue"],
            params["MfaGraceDays"]["MaxValue"]) == (7, 0, 365)
    assert params["AllowedGroupNames"]["Type"] == "CommaDelimitedList"
    assert params["AllowedManagedPolicyArns"]["Type"] == "CommaDelimitedList"
    assert params["AllowedManagedPolicyArns"]["Default"] == ""
    assert params["AssumableRoleArns"]["Default"] == ""
    for name in ("UserPath", "TemplatePath"):
        assert not re.match(params[name]["AllowedPattern"], "/"), "the root path must be refused"
    assert params["TemplatePath"]["Default"] == "/templates/"
    assert params["AuditSchedule"]["Default"] == "rate(1 day)"
    assert params["LifecycleSchedule"]["Default"] == "rate(1 day)"
    assert (params["KeyRotationGraceDays"]["Default"], params["KeyRotationGraceDays"]["MinValue"],
            params["KeyRotationGraceDays"]["MaxValue"]) == (7, 0, 3649)
    assert (params["UnusedDisableDays"]["Default"], params["UnusedDisableDays"]["MinValue"],
            params["UnusedDisableDays"]["MaxValue"]) == (45, 1, 3650)


def test_rules_refuse_bad_combinations(template):
    """The Rules section, evaluated for every combination: TemplatePath != UserPath, and
    in delete mode MaxEventAgeDays <= SecretRecoveryDays (the function's own start-up check)."""

    def passes(**params) -> bool:
        r = resolved(template, **params)
        for rule in template["Rules"].values():
            if "RuleCondition" in rule and not r.resolve(rule["RuleCondition"]):
                continue
            if not all(r.resolve(a["Assert"]) for a in rule["Assertions"]):
                return False
        return True

    assert passes()
    assert not passes(TemplatePath="/employees/")
    for mode in ("disable", "delete"):
        for recovery in range(7, 31):
            for age in list(range(1, 40)) + [90, 365]:
                ok = passes(LeaverAction=mode, SecretRecoveryDays=str(recovery), MaxEventAgeDays=str(age))
                assert ok == (mode == "disable" or age <= recovery), (mode, recovery, age)


def test_fifo_queue_dlq_and_event_source(template, resolver):
    res = template["Resources"]
    q = resolver.resolve(res["HrEventQueue"]["Properties"])
    dlq = resolver.resolve(res["HrDeadLetterQueue"]["Properties"])
    fn = function_props(template)
    # Scheduler needs content-based deduplication on its FIFO target (test_dates.py).
    assert q["ContentBasedDeduplication"] is True and dlq["ContentBasedDeduplication"] is False
    for queue in (q, dlq):
        assert queue["FifoQueue"] is True
        assert queue["QueueName"].endswith(".fifo")
        assert queue.get("SqsManagedSseEnabled") is True or queue.get("KmsMasterKeyId")
    assert q["RedrivePolicy"]["deadLetterTargetArn"] == resolver.get_att("HrDeadLetterQueue", "Arn")
    assert q["RedrivePolicy"]["maxReceiveCount"] >= 5
    assert q["VisibilityTimeout"] >= 6 * fn["Timeout"]
    (event,) = fn["Events"].values()
    assert event["Type"] == "SQS"
    props = event["Properties"]
    assert props["Queue"] == resolver.get_att("HrEventQueue", "Arn")
    assert props["BatchSize"] == 10
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # No batching window: Lambda does not support one on FIFO queues.
    assert "MaximumBatchingWindowInSeconds" not in props


@pytest.mark.parametrize("value", ["2", "5", "20"])
def test_maximum_concurrency_is_a_parameter(template, value):
    """Issue 12: the event source's MaximumConcurrency is a stack parameter, and the
    reserved concurrency equals it (SQS never drives the function into throttling)."""
    param = template["Parameters"]["MaximumConcurrency"]
    assert (param["Default"], param["MinValue"]) == (5, 2)
    fn = function_props(template, MaximumConcurrency=value)
    (event,) = fn["Events"].values()
    assert event["Properties"]["ScalingConfig"] == {"MaximumConcurrency": value}
    assert fn["ReservedConcurrentExecutions"] == value
    # The pacer's floor is shared by exactly the instances the event source may run.
    assert fn["Environment"]["Variables"]["MAX_INSTANCES"] == value


def test_rate_floor_reaches_the_function_within_the_bounds_it_accepts(template):
    """RATE_FLOOR_PER_SECOND: 0.1-10000 (src/wiring.rs refuses anything else at start-up),
    default 10; MAX_INSTANCES 1-1000 covers MaximumConcurrency's 2-100."""
    param = template["Parameters"]["RateFloorPerSecond"]
    assert (param["Default"], param["MinValue"], param["MaxValue"]) == (10, 0.1, 10000)
    wiring = (REPO / "src" / "wiring.rs").read_text()
    assert "(0.1..=10_000.0).contains(&f)" in wiring and "(1..=1000).contains(&n)" in wiring
    conc = template["Parameters"]["MaximumConcurrency"]
    assert 1 <= conc["MinValue"] and conc["MaxValue"] <= 1000
    env = function_props(template, RateFloorPerSecond="2.5")["Environment"]["Variables"]
    assert env["RATE_FLOOR_PER_SECOND"] == "2.5"
    assert function_props(template)["Environment"]["Variables"]["RATE_FLOOR_PER_SECOND"] == "10"


def test_scheduled_audit_function(template, resolver):
    """Issue 11: the same code and configuration as the provisioner, on a schedule, with
    its own role."""
    prov = function_props(template, SigninUrl="https://x.signin.aws.amazon.com/console")
    audit = function_props(template, "AuditFunction", SigninUrl="https://x.signin.aws.amazon.com/console")
    for key in ("CodeUri", "Handler", "Runtime", "Architectures"):
        assert audit[key] == prov[key], key
    # The same configuration, but for WARM_UP: the audit's role reads neither the
    # password policy nor the account alias, so it never reads them at start-up.
    audit_env = dict(audit["Environment"]["Variables"])
    assert audit_env.pop("WARM_UP") == "false"
    assert "WARM_UP" not in prov["Environment"]["Variables"]
    assert audit_env == prov["Environment"]["Variables"]
    # sam build builds functions with equal build definitions (CodeUri, runtime,
    # architecture, Metadata, handler, and the build container's environment given
    # to `sam build`, not the function's) once: one binary for both.
    assert template["Resources"]["AuditFunction"]["Metadata"] == \
        template["Resources"]["ProvisionerFunction"]["Metadata"]
    assert audit["Role"] == resolver.get_att("AuditRole", "Arn") != prov["Role"]
    assert audit["ReservedConcurrentExecutions"] == 1
    (event,) = audit["Events"].values()
    assert event["Type"] == "Schedule"
    assert event["Properties"]["Schedule"] == "rate(1 day)"
    assert function_props(template, "AuditFunction", AuditSchedule="cron(0 6 * * ? *)")[
        "Events"]["Schedule"]["Properties"]["Schedule"] == "cron(0 6 * * ? *)"


def test_lifecycle_runs_in_the_provisioner_on_its_own_schedule(template, resolver, statements):
    """Section 11: rotation and unused disabling write, so they run with the provisioner's
    role (never the read-only audit's), on their own schedule whose input the bootstrap
    tells apart; UpdateAccessKey only on managed users."""
    res = template["Resources"]
    rule = resolved(template).resolve(res["LifecycleScheduleRule"]["Properties"])
    assert rule["ScheduleExpression"] == "rate(1 day)"
    (target,) = rule["Targets"]
    assert target["Arn"] == resolver.get_att("ProvisionerFunction", "Arn")
    assert json.loads(target["Input"]) == {"hr-iam-lifecycle": "run"}
    perm = resolved(template).resolve(res["LifecycleInvokePermission"]["Properties"])
    assert perm["Principal"] == "events.amazonaws.com"
    assert perm["SourceArn"] == resolver.get_att("LifecycleScheduleRule", "Arn")
    assert decide(statements, "iam:UpdateAccessKey", user_arn("jane"), managed(None)) == ALLOW
    assert decide(statements, "iam:UpdateAccessKey", user_arn("jane"), {}) != ALLOW
    assert decide(statements, "iam:UpdateAccessKey", user_arn("admin", "/"), managed(None)) != ALLOW
    for a in ("iam:GetAccountAuthorizationDetails", "iam:GetCredentialReport"):
        assert decide(statements, a, "*") == ALLOW, a
    audit = role_statements(template, "AuditRole")
    assert decide(audit, "iam:UpdateAccessKey", user_arn("jane"), managed(None)) != ALLOW


def test_audit_role_is_read_only(template, resolver):
    """The audit role holds the audit's reads and its own logs, and no other write."""
    from policy_sentry.querying.actions import get_action_data

    stmts = role_statements(template, "AuditRole")
    actions = {a for s in stmts if s["Effect"] == "Allow" for a in as_list(s["Action"])}
    assert actions == AUDIT_ACTIONS
    for s in stmts:
        assert s["Effect"] == "Allow" and "NotAction" not in s and "NotResource" not in s
        for a in as_list(s["Action"]):
            service, name = a.split(":")
            levels = {r["access_level"] for rows in get_action_data(service, name).values() for r in rows}
            if service == "logs":
                assert as_list(s["Resource"]) == [resolver.get_att("AuditLogGroup", "Arn")]
            else:
                assert levels <= {"Read", "List"}, (a, levels)
    for action in ("secretsmanager:GetSecretValue", "iam:CreateAccessKey", "iam:DeleteUser",
                   "secretsmanager:PutSecretValue", "kms:Decrypt", "iam:TagUser"):
        assert decide(stmts, action, "*") != ALLOW, action


def test_alarms(template, resolver):
    alarms = {lid: resolver.resolve(r["Properties"]) for lid, r in template["Resources"].items()
              if r["Type"] == "AWS::CloudWatch::Alarm"}
    metrics = {(a["Namespace"], a["MetricName"], (a.get("Dimensions") or [{"Value": None}])[0]["Value"])
               for a in alarms.values()}
    fn, audit = resolver.ref("ProvisionerFunction"), resolver.ref("AuditFunction")
    assert metrics == {
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", resolver.get_att("HrDeadLetterQueue", "QueueName")),
        ("AWS/Lambda", "Errors", fn),
        ("AWS/Lambda", "Throttles", fn),
        ("AWS/SQS", "ApproximateAgeOfOldestMessage", resolver.get_att("HrEventQueue", "QueueName")),
        ("AWS/Lambda", "Errors", audit),
        ("HrProvisioner/AuditLog", f"{STACK}-findings", None),
    }
    findings = alarms["AuditFindingsAlarm"]
    assert "Dimensions" not in findings, "the metric filter's metric has no dimensions"
    assert findings["Statistic"] == "Maximum", "a 0 beside a real count cannot hide it"
    assert (findings["ComparisonOperator"], findings["Threshold"]) == ("GreaterThanThreshold", 0)
    assert findings["TreatMissingData"] == "ignore", "keeps the last audit's verdict between runs"
    topic = resolver.ref("AlarmTopic")
    for a in alarms.values():
        assert a["AlarmActions"] == [topic]
        assert a["AlarmName"].startswith(f"{STACK}-"), "the boundary protects alarms by this prefix"
    t = resolver.resolve(template["Resources"]["AlarmTopic"]["Properties"])
    assert t["KmsMasterKeyId"]
    assert template["Resources"]["AlarmEmailSubscription"]["Condition"] == "HasAlarmEmail"


def test_observability_key_lets_logs_encrypt_both_log_groups(template, resolver):
    key = resolver.resolve(template["Resources"]["ObservabilityKey"]["Properties"])
    (logs,) = [s for s in key["KeyPolicy"]["Statement"] if s["Principal"] == {"Service": f"logs.{REGION}.amazonaws.com"}]
    arns = set(as_list(logs["Condition"]["StringEquals"]["kms:EncryptionContext:aws:logs:arn"]))
    assert arns == {f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{resolver.ref(lg)}"
                    for lg in ("ProvisionerLogGroup", "AuditLogGroup", "FrontDoorLogGroup")}


def test_saved_queries_over_the_audit_trail(template, resolver):
    """Issue 13: Logs Insights queries for one person's history, rejections and failures,
    and every change in a time range, over the provisioner's log group."""
    queries = {lid: resolver.resolve(r["Properties"]) for lid, r in template["Resources"].items()
               if r["Type"] == "AWS::Logs::QueryDefinition"}
    assert set(queries) == {"QueryEmployeeHistory", "QueryRejectionsAndFailures", "QueryChangesInTimeRange"}
    for q in queries.values():
        assert q["LogGroupNames"] == [resolver.ref("ProvisionerLogGroup")]
        assert q["Name"].startswith(f"{STACK}/")
        text = q["QueryString"]
        assert 'filter @message like /"audit":\\s*true/' in text
        for field in ("event_id", "message_id", "employee_id", "user_name"):
            assert field in text, field
    assert 'employee_id = "E1001" or user_name = "jane.doe"' in queries["QueryEmployeeHistory"]["QueryString"]
    assert 'outcome in ["rejected", "failed"]' in queries["QueryRejectionsAndFailures"]["QueryString"]
    changes = queries["QueryChangesInTimeRange"]["QueryString"]
    assert 'outcome = "applied"' in changes and '"actions"' in changes
    # The queries' regular expressions match a real audit line (compact JSON, as logged).
    line = json.dumps({"timestamp": "2026-11-22T09:00:01Z", "level": "INFO", "target": "audit", "audit": True,
                       "message_id": "m1", "event_id": "e1", "event_type": "employee.joined",
                       "employee_id": "E1001", "user_name": "jane.doe", "outcome": "applied",
                       "actions": ["CreateUser", "AddUserToGroup:developers"]}, separators=(",", ":"))
    assert re.search(r'"audit":\s*true', line)
    m = re.search(r'"actions":\[(?P<changes>[^\]]*)\]', line)
    assert m and m.group("changes") == '"CreateUser","AddUserToGroup:developers"'


def test_only_the_hr_sender_may_send(template, resolver):
    doc = resolver.resolve(template["Resources"]["HrEventQueuePolicy"]["Properties"]["PolicyDocument"])
    sender = "arn:aws:iam::210987654321:role/hr-system"
    allows = [s for s in doc["Statement"] if s["Effect"] == "Allow"]
    scheduler = resolver.get_att("SchedulerRole", "Arn")
    assert allows == [{
        "Sid": "AllowHrSender", "Effect": "Allow", "Principal": {"AWS": sender},
        "Action": "sqs:SendMessage", "Resource": resolver.get_att("HrEventQueue", "Arn"),
    }, {
        "Sid": "AllowStackScheduler", "Effect": "Allow", "Principal": {"AWS": scheduler},
        "Action": "sqs:SendMessage", "Resource": resolver.get_att("HrEventQueue", "Arn"),
    }]
    denies = {s["Sid"]: s for s in doc["Statement"] if s["Effect"] == "Deny"}
    others = denies["DenySendFromAnyoneElse"]
    assert others["Principal"] == "*" and others["Action"] == "sqs:SendMessage"
    assert sender in others["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]
    tls = denies["DenyInsecureTransport"]
    assert tls["Principal"] == "*" and tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    doc = resolved(template, RedrivePrincipalArn="").resolve(
        template["Resources"]["HrEventQueuePolicy"]["Properties"]["PolicyDocument"])
    (others,) = [s for s in doc["Statement"] if s.get("Sid") == "DenySendFromAnyoneElse"]
    # The HR sender, the stack's scheduler (section 9) and the front door (section 10) only.
    assert others["Condition"]["ArnNotEquals"]["aws:PrincipalArn"] == [
        sender, scheduler, resolver.get_att("FrontDoorRole", "Arn")]


def test_secrets_key_policy(template):
    for readers, glass, expected_sids in (("", "", 2), ("arn:aws:iam::123456789012:role/desk", "", 3),
                                          ("", "arn:aws:iam::123456789012:role/break-glass", 3),
                                          ("arn:aws:iam::123456789012:role/desk",
                                           "arn:aws:iam::123456789012:role/break-glass", 4)):
        r = resolved(template, SecretReaderRoleArns=readers, BreakGlassRoleArn=glass)
        key = r.resolve(template["Resources"]["SecretsKey"]["Properties"])
        assert key["EnableKeyRotation"] is True
        stmts = key["KeyPolicy"]["Statement"]
        assert len(stmts) == expected_sids
        (fn_stmt,) = [s for s in stmts if s["Principal"] == {"AWS": r.get_att("ProvisionerRole", "Arn")}]
        assert set(as_list(fn_stmt["Action"])) == {"kms:GenerateDataKey", "kms:Decrypt"}
        assert fn_stmt["Condition"]["StringEquals"]["kms:ViaService"] == f"secretsmanager.{REGION}.amazonaws.com"
        for s in stmts:
            if s["Sid"] != "AccountAdministrationOnly":
                assert "kms:ViaService" in s["Condition"]["StringEquals"]
                assert "kms:*" not in as_list(s["Action"])
    alias = resolved(template).resolve(template["Resources"]["SecretsKeyAlias"]["Properties"])
    assert alias["AliasName"].startswith("alias/")


def test_every_policy_document_is_extracted(template):
    ids = {d["id"] for d in ep.policy_documents(template)}
    assert {"ProvisionerRole.provisioner", "ProvisionerKmsPolicy", "ProvisionerGuardrailsPolicy",
            "AuditRole.audit-read-only", "EmployeeBoundaryPolicy", "DenyAllPolicy",
            "BaselineGroup.self-service-password-and-mfa", "SecretsKey.KeyPolicy",
            "ObservabilityKey.KeyPolicy", "HrEventQueuePolicy", "AlarmTopicPolicy",
            "ProvisionerSchedulesPolicy", "AuditSchedulesPolicy", "SchedulerRole.send-to-hr-queue"} <= ids


def test_infra_docs_point_inside_the_repository():
    for path in (REPO / "infra" / "README.md", REPO / "infra" / "template.yaml"):
        text = path.read_text()
        assert "shared/" not in text and "../shared" not in text, path
    assert "docs/contract.md" in (REPO / "infra" / "README.md").read_text()


def test_readme_lists_every_parameter(template):
    """infra/README.md's parameter table cannot drift from the template."""
    text = (REPO / "infra" / "README.md").read_text()
    table = [line for line in text.splitlines() if line.startswith("| `")]
    for name in template["Parameters"]:
        assert any(f"`{name}`" in line for line in table), name


def test_readme_reviewer_commands_run(tmp_path):
    """The two local commands of infra/README.md's reviewer section work as shown."""
    import subprocess

    for script, out, expected in (("extract_policies.py", "policies", "EmployeeBoundaryPolicy.json"),
                                  ("cloudsplaining_check.py", "principals", "ProvisionerRole.json")):
        assert f"infra/tests/{script} --dump /tmp/{out}" in (REPO / "infra" / "README.md").read_text()
        proc = subprocess.run([sys.executable, str(REPO / "infra" / "tests" / script), "--dump", str(tmp_path / out)],
                              capture_output=True, text=True, cwd=REPO)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        doc = json.loads((tmp_path / out / expected).read_text())
        assert doc["Version"] == "2012-10-17" and doc["Statement"]


# =========================================================================================
# Issue 16: the stack's share (KMS, key policy, boundary, role sessions, audit alarm)
# =========================================================================================

def key_arn_of(resolver, lid="SecretsKey"):
    return resolver.get_att(lid, "Arn")


def via_secrets_manager(secret="jane"):
    return {"kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com", "kms:CallerAccount": ACCOUNT,
            "kms:EncryptionContext:SecretARN": secret_arn(secret)}


def test_role_uses_no_kms_key_but_the_stacks(statements, resolver):
    """Issue 16 item 4: an explicit deny on every other key, which leaves Secrets
    Manager's use of the stack key (kms:ViaService) intact, and DescribeKey on the stack
    key only (the function resolves a secret's key alias to compare key ARNs)."""
    ours, other = key_arn_of(resolver), f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0f1e2d3c-squatter"
    for action in ("kms:Decrypt", "kms:GenerateDataKey"):
        assert decide(statements, action, ours, via_secrets_manager()) == ALLOW, action
        assert decide(statements, action, other, via_secrets_manager()) == DENY, action
        assert decide(statements, action, ours) != ALLOW, "only through Secrets Manager"
    assert decide(statements, "kms:DescribeKey", ours) == ALLOW
    assert decide(statements, "kms:DescribeKey", other) == DENY, "a foreign alias resolves to AccessDenied"
    for action in ("kms:CreateGrant", "kms:Encrypt", "kms:ReEncryptTo", "kms:PutKeyPolicy"):
        assert decide(statements, action, ours, via_secrets_manager()) != ALLOW, action
        assert decide(statements, action, other, via_secrets_manager()) == DENY, action
    assert decide(statements, "kms:ListAliases", "*") == DENY
    (deny,) = [s for s in statements if s["Effect"] == "Deny" and "kms:*" in as_list(s.get("Action", []))]
    assert deny["NotResource"] == ours and "Condition" not in deny
    # The variable the function compares with is the key's ARN, not an alias.
    env = function_props(template=ep.load_template())["Environment"]["Variables"]
    assert env["SECRET_KMS_KEY_ID"] == ours and ours.startswith(f"arn:aws:kms:{REGION}:{ACCOUNT}:key/")


def key_policy(template, **overrides):
    r = resolved(template, **overrides)
    return r, r.resolve(template["Resources"]["SecretsKey"]["Properties"]["KeyPolicy"])["Statement"]


def key_policy_for(stmts, principal: str) -> list[dict]:
    """The key-policy statements that name the principal (or the account root, which
    delegates to IAM policies of the account's principals)."""
    root = f"arn:aws:iam::{ACCOUNT}:root"
    return [s for s in stmts
            if {principal, root} & set(as_list(s["Principal"].get("AWS", [])))]


def test_secrets_key_root_administers_but_cannot_decrypt(template):
    """Issue 16 item 7: the account keeps key administration only, so IAM policies alone
    can let nobody decrypt; the key cannot be locked out (kms:PutKeyPolicy stays)."""
    from policy_sentry.querying.actions import get_actions_for_service

    r, stmts = key_policy(template)
    key = key_arn_of(r)
    admin_role = f"arn:aws:iam::{ACCOUNT}:role/Admin"
    root_stmts = key_policy_for(stmts, admin_role)
    (root,) = root_stmts
    assert root["Sid"] == "AccountAdministrationOnly" and "Condition" not in root
    crypto = {"kms:Decrypt", "kms:Encrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateDataKey",
              "kms:GenerateDataKeyWithoutPlaintext", "kms:GenerateDataKeyPair", "kms:CreateGrant",
              "kms:RetireGrant", "kms:Sign", "kms:Verify", "kms:GenerateMac", "kms:DeriveSharedSecret",
              "kms:ImportKeyMaterial", "kms:ReplicateKey"}
    allowed = {a for a in get_actions_for_service("kms") if decide(root_stmts, a, key) == ALLOW}
    assert allowed, "root keeps something"
    assert not {a.lower() for a in allowed} & {c.lower() for c in crypto}, sorted(allowed)
    for action in ("kms:PutKeyPolicy", "kms:GetKeyPolicy", "kms:DescribeKey", "kms:ScheduleKeyDeletion",
                   "kms:CancelKeyDeletion", "kms:EnableKeyRotation", "kms:TagResource", "kms:DisableKey"):
        assert decide(root_stmts, action, key) == ALLOW, f"administration keeps {action} (no lockout)"
    # Every action the statement names exists (a typo would silently drop it).
    known = {a.lower() for a in get_actions_for_service("kms")}
    assert {a.lower() for a in as_list(root["Action"])} <= known


@pytest.mark.parametrize("readers,glass", [
    ("", ""),
    (f"arn:aws:iam::{ACCOUNT}:role/service-desk", ""),
    (f"arn:aws:iam::{ACCOUNT}:role/service-desk", f"arn:aws:iam::{ACCOUNT}:role/break-glass"),
])
def test_only_the_function_readers_and_break_glass_can_decrypt(template, readers, glass):
    r, stmts = key_policy(template, SecretReaderRoleArns=readers, BreakGlassRoleArn=glass)
    key = key_arn_of(r)
    fn = r.get_att("ProvisionerRole", "Arn")
    desk, breakglass = f"arn:aws:iam::{ACCOUNT}:role/service-desk", f"arn:aws:iam::{ACCOUNT}:role/break-glass"
    expect = {fn: True, desk: bool(readers), breakglass: bool(glass),
              f"arn:aws:iam::{ACCOUNT}:role/Admin": False, r.get_att("AuditRole", "Arn"): False}
    for principal, can in expect.items():
        mine = key_policy_for(stmts, principal)
        got = decide(mine, "kms:Decrypt", key, via_secrets_manager()) == ALLOW
        assert got == can, principal
        # Never outside Secrets Manager, never for secrets outside the prefix.
        assert decide(mine, "kms:Decrypt", key, {"kms:CallerAccount": ACCOUNT}) != ALLOW, principal
        assert decide(mine, "kms:Decrypt", key, {**via_secrets_manager(), "kms:EncryptionContext:SecretARN":
                      f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:prod/db-x"}) != ALLOW, principal
    # The descriptions say who can read.
    params = template["Parameters"]
    for name in ("SecretReaderRoleArns", "BreakGlassRoleArn"):
        text = " ".join(params[name]["Description"].split())
        assert "decrypt" in text and "secretsmanager:GetSecretValue" in text, name
    assert "Who can read a secret: the function, these roles and BreakGlassRoleArn" in " ".join(
        params["SecretReaderRoleArns"]["Description"].split())
    assert re.match(params["BreakGlassRoleArn"]["AllowedPattern"], "")
    assert not re.match(params["BreakGlassRoleArn"]["AllowedPattern"], f"arn:aws:iam::{ACCOUNT}:user/bob")


def test_boundary_assume_role_only_with_own_source_identity(template):
    """Issue 16 item 7: sts:AssumeRole (and SetSourceIdentity) only with
    sts:SourceIdentity = the user's name, so every role session is traceable and
    revocable per employee."""
    stmts = boundary_statements(template, AssumableRoleArns=f"arn:aws:iam::{ACCOUNT}:role/dev-*")
    dev = f"arn:aws:iam::{ACCOUNT}:role/dev-analytics"
    for action in ("sts:AssumeRole", "sts:SetSourceIdentity"):
        assert decide(stmts, action, dev, {**employee("jane"), "sts:SourceIdentity": "jane"}) == ALLOW, action
        assert decide(stmts, action, dev, employee("jane")) == DENY, action
        assert decide(stmts, action, dev, {**employee("jane"), "sts:SourceIdentity": "bob"}) == DENY, action
    (s,) = [s for s in stmts if s["Sid"] == "DenyAssumeWithoutSourceIdentity"]
    assert s["Condition"] == {"StringNotEquals": {"sts:SourceIdentity": "${aws:username}"}}


def test_the_stack_owns_no_role_an_employee_assumes(template, resolver):
    """So the aws:TokenIssueTime revocation has nowhere to be applied by the stack:
    every role it owns is assumed by an AWS service only, and the boundary denies
    every access to the stack's roles anyway."""
    roles = [lid for lid, r in template["Resources"].items() if r["Type"] == "AWS::IAM::Role"]
    assert roles
    for lid in roles:
        doc = resolver.resolve(template["Resources"][lid]["Properties"]["AssumeRolePolicyDocument"])
        for st in as_list(doc["Statement"]):
            assert set(st["Principal"]) == {"Service"}, lid
    stmts = boundary_statements(template, AssumableRoleArns=f"arn:aws:iam::{ACCOUNT}:role/*")
    assert decide(stmts, "sts:AssumeRole", f"arn:aws:iam::{ACCOUNT}:role/{STACK}-provisioner",
                  {**employee(), "sts:SourceIdentity": "jane"}) == DENY


def readme_revocation_policy() -> dict:
    text = (REPO / "infra" / "README.md").read_text()
    section = text.split("### Revoking a leaver's role sessions", 1)[1]
    block = section.split("```json", 1)[1].split("```", 1)[0]
    return json.loads(block)


def test_role_session_revocation_recipe():
    """The documented recipe (infra/README.md, docs/contract.md): a deny keyed by source
    identity and aws:TokenIssueTime ends the leaver's existing sessions of a role, and
    nobody else's, nor the sessions of a later rehire."""
    doc = readme_revocation_policy()
    stmts = doc["Statement"]
    role_arn = f"arn:aws:iam::{ACCOUNT}:role/dev-analytics"
    before, after = "2026-11-30T16:59:00Z", "2026-12-01T09:00:00Z"
    jane_old = {"aws:SourceIdentity": "jane.doe", "aws:TokenIssueTime": before}
    for action, resource in (("s3:GetObject", "arn:aws:s3:::data/x"), ("sts:AssumeRole", role_arn),
                             ("iam:CreateAccessKey", "*")):
        assert decide(stmts, action, resource, jane_old) == DENY, action
    assert decide(stmts, "s3:GetObject", "arn:aws:s3:::data/x",
                  {"aws:SourceIdentity": "jane.doe", "aws:TokenIssueTime": after}) != DENY
    assert decide(stmts, "s3:GetObject", "arn:aws:s3:::data/x",
                  {"aws:SourceIdentity": "bob", "aws:TokenIssueTime": before}) != DENY
    contract = (REPO / "docs" / "contract.md").read_text()
    assert "aws:TokenIssueTime" in contract and "aws:SourceIdentity" in contract
    assert "sts:SetSourceIdentity" in (REPO / "infra" / "README.md").read_text()


def policy_sentry_knows(action: str) -> bool:
    from policy_sentry.querying.actions import get_actions_for_service

    service = action.split(":")[0]
    return any(fnmatch.fnmatchcase(a.lower(), action.lower()) for a in get_actions_for_service(service))


def test_boundary_denies_new_act_as_a_role_paths(template):
    """Issue 16 item 7: each action runs caller input with a resource's role (or, for
    sts:AssumeRoot, becomes a member account's root), beyond the boundary."""
    stmts = boundary_statements(template)
    (acting,) = [s for s in stmts if s["Sid"] == "DenyActingAsExistingRoles"]
    for action in ("ssm:CreateAssociation", "ssm:StartAutomationExecution", "states:UpdateStateMachine",
                   "sagemaker:UpdateNotebookInstanceLifecycleConfig", "ec2:CreateReplaceRootVolumeTask",
                   "sts:AssumeRoot", "cloudformation:UpdateStackSet", "codebuild:StartBuildBatch"):
        assert decide(stmts, action, "*", employee()) == DENY, action
    # Every name in the list is an action of the service authorization reference.
    assert all(policy_sentry_knows(a) for a in as_list(acting["Action"])), as_list(acting["Action"])


def test_boundary_denies_resource_policies_granting_outside_the_account(template):
    stmts = boundary_statements(template)
    (plain,) = [s for s in stmts if s["Sid"] == "DenyResourcePolicyWrites"]
    assert all(policy_sentry_knows(a) for a in as_list(plain["Action"]))
    for action in ("s3:PutBucketPolicy", "s3:PutBucketAcl", "s3:PutAccessPointPolicy", "sqs:AddPermission",
                   "sqs:SetQueueAttributes", "sns:AddPermission", "sns:SetTopicAttributes",
                   "lambda:AddLayerVersionPermission", "kms:PutKeyPolicy", "secretsmanager:PutResourcePolicy",
                   "ecr:SetRepositoryPolicy", "glacier:SetVaultAccessPolicy", "logs:PutResourcePolicy",
                   "events:PutPermission", "ses:PutIdentityPolicy", "ses:CreateEmailIdentityPolicy",
                   "ses:UpdateEmailIdentityPolicy", "ec2:ModifySnapshotAttribute", "ec2:ModifyImageAttribute",
                   "rds:ModifyDBSnapshotAttribute", "rds:ModifyDBClusterSnapshotAttribute"):
        assert decide(stmts, action, "*", employee()) == DENY, action
    fn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:team-fn"
    for principal, outcome in ((ACCOUNT, ALLOW), (f"arn:aws:iam::{ACCOUNT}:role/team", ALLOW),
                               ("s3.amazonaws.com", ALLOW), ("210987654321", DENY),
                               ("arn:aws:iam::210987654321:root", DENY), ("*", DENY)):
        assert decide(stmts, "lambda:AddPermission", fn, {**employee(), "lambda:Principal": principal}) == outcome, \
            principal
    key = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/team"
    assert decide(stmts, "kms:CreateGrant", key,
                  {**employee(), "kms:GranteePrincipal": f"arn:aws:iam::{ACCOUNT}:role/team"}) == ALLOW
    assert decide(stmts, "kms:CreateGrant", key,
                  {**employee(), "kms:GranteePrincipal": "arn:aws:iam::210987654321:role/x"}) == DENY
    assert decide(stmts, "kms:CreateGrant", key, {**employee(), "kms:GrantIsForAWSResource": "true",
                  "kms:GranteePrincipal": f"arn:aws:iam::{ACCOUNT}:role/team"}) == ALLOW
    # Ordinary writes of the same services stay within the ceiling.
    for action in ("s3:PutObject", "sqs:SendMessage", "sns:Publish", "secretsmanager:PutSecretValue"):
        assert decide(stmts, action, "*", employee()) == ALLOW, action


def test_boundary_mail_without_from_address_is_denied(template):
    stmts = boundary_statements(template)
    identity = f"arn:aws:ses:{REGION}:{ACCOUNT}:identity/example.com"
    for action in ("ses:SendRawEmail", "ses:SendEmail", "ses:SendBulkTemplatedEmail", "ses:SendTemplatedEmail",
                   "ses:SendBulkEmail"):
        assert policy_sentry_knows(action)
        assert decide(stmts, action, identity, employee()) == DENY, action
    for action in ("ses:SendRawEmail", "ses:SendEmail"):
        assert decide(stmts, action, identity, {**employee(), "ses:FromAddress": "jane@example.com"}) == ALLOW
        assert decide(stmts, action, identity, {**employee(), "ses:FromAddress": "NO-REPLY@example.com"}) == DENY
    # SendBulkEmail has no ses:FromAddress key: IAM drops it, so the deny is unconditional.
    assert decide(stmts, "ses:SendBulkEmail", identity, {**employee(), "ses:FromAddress": "jane@example.com"}) == DENY


def test_boundary_denies_writing_the_stacks_metrics(template):
    stmts = boundary_statements(template)
    for ns in ("HrProvisioner", "HrProvisioner/Audit", "HrProvisioner/AuditLog"):
        assert decide(stmts, "cloudwatch:PutMetricData", "*", {**employee(), "cloudwatch:namespace": ns}) == DENY
    assert decide(stmts, "cloudwatch:PutMetricData", "*", {**employee(), "cloudwatch:namespace": "Team/App"}) == ALLOW
    # The function that any new function of the stack would be: no access either.
    assert decide(stmts, "lambda:InvokeFunction", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{STACK}-frontdoor",
                  employee()) == DENY


def filter_matches(pattern: str, line: dict) -> bool:
    """CloudWatch Logs JSON filter patterns of the form { $.a = "x" && $.b >= 0 }."""
    body = pattern.strip()
    assert body.startswith("{") and body.endswith("}"), pattern
    for clause in body[1:-1].split("&&"):
        m = re.fullmatch(r'\s*\$\.(\w+)\s*(=|!=|>=|<=|>|<)\s*("[^"]*"|-?\d+(?:\.\d+)?)\s*', clause)
        assert m, clause
        field, op, raw = m.groups()
        if field not in line:
            return False
        value = line[field]
        if raw.startswith('"'):
            want = raw[1:-1]
            if not isinstance(value, str) or (value == want) != (op == "="):
                return False
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return False
            if not {"=": value == float(raw), "!=": value != float(raw), ">=": value >= float(raw),
                    "<=": value <= float(raw), ">": value > float(raw), "<": value < float(raw)}[op]:
                return False
    return True


def test_audit_alarm_reads_a_metric_filter_on_the_audit_log_group(template, resolver):
    """Issue 16 item 7: the findings alarm reads a metric that only lines of the audit's
    own log group feed, not the EMF namespace that any function can write."""
    filters = {lid: resolver.resolve(r["Properties"]) for lid, r in template["Resources"].items()
               if r["Type"] == "AWS::Logs::MetricFilter"}
    f = filters["AuditFindingsMetricFilter"]
    assert f["LogGroupName"] == resolver.ref("AuditLogGroup")
    (t,) = f["MetricTransformations"]
    alarm = resolver.resolve(template["Resources"]["AuditFindingsAlarm"]["Properties"])
    assert (alarm["Namespace"], alarm["MetricName"]) == (t["MetricNamespace"], t["MetricName"])
    assert t["MetricNamespace"] != "HrProvisioner/Audit", "not the EMF namespace"
    assert t["MetricNamespace"].startswith("HrProvisioner"), "the boundary's PutMetricData deny covers it"
    assert t["MetricValue"] == "$.findings" and "DefaultValue" not in t, "no data between audits"
    # The audit's EMF line, as src/logging.rs writes it (fields at the top level).
    emf = {"timestamp": "2026-12-01T06:00:02Z", "level": "INFO", "target": "emf", "message": "metrics",
           "_aws": {"Timestamp": 1, "CloudWatchMetrics": [{"Namespace": "HrProvisioner/Audit"}]},
           "no-mfa": 2, "findings": 3}
    assert filter_matches(f["FilterPattern"], emf)
    assert filter_matches(f["FilterPattern"], {**emf, "findings": 0}), "a clean audit clears the alarm"
    finding = {"level": "WARN", "target": "review", "message": "no-mfa jane", "code": "no-mfa",
               "user_name": "jane", "detail": "x"}
    assert not filter_matches(f["FilterPattern"], finding)
    assert not filter_matches(f["FilterPattern"], {"level": "INFO", "target": "emf", "applied": 1})
    # The code writes exactly that line: target "emf" and the total as "findings".
    lambda_rs = (REPO / "src" / "review" / "lambda.rs").read_text()
    assert 'target: "emf"' in lambda_rs and 'doc["findings"]' in lambda_rs


def test_provisioner_alarms_read_only_aws_namespaces(template, resolver):
    """The provisioner's alarms read AWS/Lambda and AWS/SQS, which neither PutMetricData
    nor EMF can write (AWS/ is reserved): nothing to move to a metric filter."""
    for lid, r in template["Resources"].items():
        if r["Type"] == "AWS::CloudWatch::Alarm" and lid != "AuditFindingsAlarm":
            assert resolver.resolve(r["Properties"])["Namespace"].startswith("AWS/"), lid
