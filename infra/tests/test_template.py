"""Structural tests of infra/template.yaml.

The template is parsed (cfn-lint's decoder) and its intrinsic functions resolved with
placeholder values (extract_policies.Resolver), then the resolved policy documents are
checked against what the function needs and the least-privilege rules of issue 5.
"""

from __future__ import annotations

import fnmatch
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import extract_policies as ep  # noqa: E402

ACCOUNT = ep.PSEUDO["AWS::AccountId"]
REGION = ep.PSEUDO["AWS::Region"]
STACK = ep.PSEUDO["AWS::StackName"]

IAM_READS = {
    "iam:GetUser", "iam:ListUsers", "iam:ListGroupsForUser", "iam:ListAttachedUserPolicies",
    "iam:ListUserPolicies", "iam:GetLoginProfile", "iam:ListAccessKeys", "iam:ListSigningCertificates",
    "iam:ListSSHPublicKeys", "iam:ListServiceSpecificCredentials", "iam:ListMFADevices",
    "iam:ListUserTags", "iam:GetAccountPasswordPolicy", "iam:ListAccountAliases",
    # Not in issue 5's list, but called by src/aws/iam.rs (orphaned virtual MFA devices).
    "iam:ListVirtualMFADevices",
}
IAM_WRITES = {
    "iam:CreateUser", "iam:TagUser", "iam:UntagUser", "iam:PutUserPermissionsBoundary",
    "iam:AddUserToGroup", "iam:RemoveUserFromGroup", "iam:AttachUserPolicy", "iam:DetachUserPolicy",
    "iam:PutUserPolicy", "iam:DeleteUserPolicy", "iam:CreateLoginProfile", "iam:UpdateLoginProfile",
    "iam:DeleteLoginProfile", "iam:CreateAccessKey", "iam:DeleteAccessKey", "iam:UpdateAccessKey",
    "iam:DeleteSigningCertificate", "iam:DeleteSSHPublicKey", "iam:DeleteServiceSpecificCredential",
    "iam:DeactivateMFADevice", "iam:DeleteVirtualMFADevice", "iam:DeleteUser",
}
# Writes whose resource is not the user (service authorization reference).
GROUP_WRITES = {"iam:AddUserToGroup", "iam:RemoveUserFromGroup"}
MFA_WRITES = {"iam:DeleteVirtualMFADevice"}
USER_WRITES = IAM_WRITES - GROUP_WRITES - MFA_WRITES
NEEDS_BOUNDARY = {"iam:CreateUser", "iam:PutUserPermissionsBoundary", "iam:AttachUserPolicy", "iam:PutUserPolicy"}
SECRETS = {
    "secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret", "secretsmanager:CreateSecret",
    "secretsmanager:PutSecretValue", "secretsmanager:RestoreSecret", "secretsmanager:DeleteSecret",
    "secretsmanager:TagResource",
}
RUNTIME = {  # SQS event source mapping (runs with the function's role) and logging
    "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
    "logs:CreateLogStream", "logs:PutLogEvents",
}
EXPECTED_ACTIONS = IAM_READS | IAM_WRITES | SECRETS | RUNTIME | {
    "ses:SendEmail", "kms:GenerateDataKey", "kms:Decrypt",
}
CONTRACT_VARIABLES = {
    "USER_PATH", "PROVISIONING_RULES", "PERMISSIONS_BOUNDARY_ARN", "SECRET_PREFIX",
    "SECRET_KMS_KEY_ID", "SENDER_EMAIL", "SIGNIN_URL", "LEAVER_ACTION", "SECRET_RECOVERY_DAYS",
    "DRY_RUN",
}


def as_list(value):
    return value if isinstance(value, list) else [value]


def grants(statement: dict, action: str) -> bool:
    patterns = as_list(statement.get("Action", []))
    return any(fnmatch.fnmatchcase(action.lower(), p.lower()) for p in patterns)


# --- fixtures --------------------------------------------------------------------------

@pytest.fixture(scope="session")
def template():
    return ep.load_template()


def resolved(template, **overrides):
    return ep.Resolver(template, overrides)


@pytest.fixture(scope="session")
def resolver(template):
    return resolved(template)


def role_statements(template, **overrides) -> list[dict]:
    """Every statement of every identity policy that applies to the function's role."""
    docs = ep.policy_documents(template, overrides)
    role_docs = [d for d in docs if d["resource"] == "ProvisionerRole" and d["kind"] == "identity"]
    for lid, res in template["Resources"].items():
        if res["Type"] in ("AWS::IAM::RolePolicy", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            props = res["Properties"]
            attached = as_list(props.get("RoleName", [])) + as_list(props.get("Roles", []))
            if {"Ref": "ProvisionerRole"} in attached:
                role_docs += [d for d in docs if d["resource"] == lid]
    assert len(role_docs) >= 2
    return [s for d in role_docs for s in as_list(d["document"]["Statement"])]


@pytest.fixture(scope="session")
def statements(template):
    return role_statements(template)


@pytest.fixture(scope="session")
def boundary_arn(resolver):
    return resolver.ref("EmployeeBoundaryPolicy")


def user_path_arn(path="/employees/"):
    return f"arn:aws:iam::{ACCOUNT}:user{path}*"


# --- the function's role ---------------------------------------------------------------

def test_role_is_explicit_and_function_uses_it(template):
    fn = template["Resources"]["ProvisionerFunction"]
    assert fn["Type"] == "AWS::Serverless::Function"
    assert "Policies" not in fn["Properties"], "no SAM policy templates"
    assert fn["Properties"]["Role"] == {"Fn::GetAtt": ["ProvisionerRole", "Arn"]}
    assert template["Resources"]["ProvisionerRole"]["Type"] == "AWS::IAM::Role"
    assert "ManagedPolicyArns" not in template["Resources"]["ProvisionerRole"]["Properties"]


def test_trust_policy_is_lambda_of_this_account_only(template, resolver):
    doc = resolver.resolve(template["Resources"]["ProvisionerRole"]["Properties"]["AssumeRolePolicyDocument"])
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


def test_iam_reads_are_on_users_or_unscopable(statements):
    for s in statements:
        if s["Effect"] != "Allow" or not any(grants(s, a) for a in IAM_READS):
            continue
        resources = as_list(s["Resource"])
        if resources == ["*"]:
            # Only the actions that support no resource-level permission.
            assert set(as_list(s["Action"])) <= {"iam:ListUsers", "iam:GetAccountPasswordPolicy",
                                                  "iam:ListAccountAliases", "iam:ListVirtualMFADevices"}, s["Sid"]
        else:
            assert resources == [f"arn:aws:iam::{ACCOUNT}:user/*"], s["Sid"]
            assert set(as_list(s["Action"])) <= IAM_READS, s["Sid"]


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
            assert resources == {user_path_arn(path)}, s["Sid"]
        elif writes <= GROUP_WRITES:
            assert resources == allowed_groups, s["Sid"]
        else:
            assert writes == MFA_WRITES, s["Sid"]
            assert resources == {f"arn:aws:iam::{ACCOUNT}:mfa/*"}, s["Sid"]
    assert seen == IAM_WRITES


def test_grants_require_the_permissions_boundary(statements, boundary_arn):
    for action in NEEDS_BOUNDARY:
        granting = [s for s in statements if s["Effect"] == "Allow" and grants(s, action)]
        assert granting, action
        for s in granting:
            cond = s.get("Condition", {})
            values = [v.get("iam:PermissionsBoundary") for op, v in cond.items() if op in ("StringEquals", "ArnEquals")]
            assert values == [boundary_arn], f"{action} in {s['Sid']} lacks iam:PermissionsBoundary = boundary"
    # and the boundary the function passes is that same policy
    assert boundary_arn == f"arn:aws:iam::{ACCOUNT}:policy/{STACK}-employee-boundary"


def deny(statements, action):
    return [s for s in statements if s["Effect"] == "Deny" and grants(s, action)]


def test_deny_boundary_policy_tampering(statements, boundary_arn):
    for action in ("iam:DeletePolicy", "iam:CreatePolicyVersion", "iam:DeletePolicyVersion",
                   "iam:SetDefaultPolicyVersion"):
        assert any(boundary_arn in as_list(s.get("Resource", [])) and "Condition" not in s
                   for s in deny(statements, action)), action


def test_deny_boundary_removal(statements):
    assert any(s.get("Resource") == "*" and "Condition" not in s
               for s in deny(statements, "iam:DeleteUserPermissionsBoundary"))


def test_deny_user_writes_outside_path(statements):
    outside = [s for s in statements if s["Effect"] == "Deny" and "NotResource" in s]
    assert len(outside) == 1
    (s,) = outside
    assert as_list(s["NotResource"]) == [user_path_arn()]
    assert "Condition" not in s
    assert {a for a in USER_WRITES if grants(s, a)} == USER_WRITES


def test_deny_grants_without_boundary_and_boundary_as_permissions(statements, boundary_arn):
    for action in NEEDS_BOUNDARY:
        assert any(s.get("Condition", {}).get("ArnNotEquals", {}).get("iam:PermissionsBoundary") == boundary_arn
                   for s in deny(statements, action)), action
    assert any(s.get("Condition", {}).get("ArnEquals", {}).get("iam:PolicyARN") == boundary_arn
               for s in deny(statements, "iam:AttachUserPolicy"))


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


def test_secrets_ses_kms_are_scoped(statements, resolver):
    prefix_arn = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:hr-provisioner/*"
    key_arn = resolver.get_att("SecretsKey", "Arn")
    for s in statements:
        if s["Effect"] != "Allow":
            continue
        services = {a.split(":")[0] for a in as_list(s["Action"])}
        if services == {"secretsmanager"}:
            assert as_list(s["Resource"]) == [prefix_arn]
        elif services == {"ses"}:
            assert as_list(s["Resource"]) == [f"arn:aws:ses:{REGION}:{ACCOUNT}:identity/example.com"]
        elif services == {"kms"}:
            assert as_list(s["Resource"]) == [key_arn]
            assert s["Condition"]["StringEquals"]["kms:ViaService"] == f"secretsmanager.{REGION}.amazonaws.com"
            assert s["Condition"]["StringLike"]["kms:EncryptionContext:SecretARN"] == prefix_arn
        elif services == {"sqs"}:
            assert as_list(s["Resource"]) == [resolver.get_att("HrEventQueue", "Arn")]
        elif services == {"logs"}:
            assert as_list(s["Resource"]) == [resolver.get_att("ProvisionerLogGroup", "Arn")]
        else:
            assert services == {"iam"}, s["Sid"]


# --- function configuration ------------------------------------------------------------

def function_props(template, **overrides):
    return resolved(template, **overrides).resolve(template["Resources"]["ProvisionerFunction"]["Properties"])


def test_function_runtime_settings(template):
    res = template["Resources"]["ProvisionerFunction"]
    assert res["Metadata"]["BuildMethod"] == "rust-cargolambda"
    p = function_props(template)
    assert p["Runtime"] == "provided.al2023"
    assert p["Architectures"] == ["arm64"]
    assert p["Handler"] == "bootstrap"
    assert p["CodeUri"] == ".."
    assert (ep.TEMPLATE.parent / p["CodeUri"] / "Cargo.toml").exists()
    assert p["ReservedConcurrentExecutions"]
    log = p["LoggingConfig"]
    assert log["LogFormat"] == "JSON" and log["ApplicationLogLevel"] == "INFO"
    assert log["LogGroup"] == f"/aws/lambda/{p['FunctionName']}"
    lg = resolved(template).resolve(template["Resources"]["ProvisionerLogGroup"]["Properties"])
    assert lg["LogGroupName"] == log["LogGroup"]
    assert int(lg["RetentionInDays"]) >= 365


def test_environment_is_the_contract(template, resolver):
    env = function_props(template, SigninUrl="https://example.signin.aws.amazon.com/console")["Environment"]["Variables"]
    assert set(env) == CONTRACT_VARIABLES
    assert env["USER_PATH"] == "/employees/"
    assert env["SECRET_PREFIX"] == "hr-provisioner/"
    assert env["PERMISSIONS_BOUNDARY_ARN"] == resolver.ref("EmployeeBoundaryPolicy")
    assert env["SECRET_KMS_KEY_ID"] == resolver.get_att("SecretsKey", "Arn")
    assert env["LEAVER_ACTION"] == "disable" and env["DRY_RUN"] == "false"
    assert env["SECRET_RECOVERY_DAYS"] == "30"
    rules = json.loads(env["PROVISIONING_RULES"])
    assert rules["default"]["groups"] == [resolver.ref("BaselineGroup")]


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
    assert params["AllowedGroupNames"]["Type"] == "CommaDelimitedList"
    import re
    assert not re.match(params["UserPath"]["AllowedPattern"], "/"), "the root path must be refused"
    assert re.match(params["UserPath"]["AllowedPattern"], "/employees/")
    assert not re.match(params["SecretPrefix"]["AllowedPattern"], "")


# --- queues ----------------------------------------------------------------------------

def test_fifo_queue_dlq_and_event_source(template, resolver):
    res = template["Resources"]
    q = resolver.resolve(res["HrEventQueue"]["Properties"])
    dlq = resolver.resolve(res["HrDeadLetterQueue"]["Properties"])
    fn = function_props(template)
    for queue in (q, dlq):
        assert queue["FifoQueue"] is True and queue["ContentBasedDeduplication"] is False
        assert queue["QueueName"].endswith(".fifo")
        assert queue.get("SqsManagedSseEnabled") is True or queue.get("KmsMasterKeyId")
    assert q["RedrivePolicy"]["deadLetterTargetArn"] == resolver.get_att("HrDeadLetterQueue", "Arn")
    assert q["RedrivePolicy"]["maxReceiveCount"] >= 5
    assert q["VisibilityTimeout"] >= 6 * fn["Timeout"]
    (event,) = fn["Events"].values()
    assert event["Type"] == "SQS"
    assert event["Properties"]["Queue"] == resolver.get_att("HrEventQueue", "Arn")
    assert event["Properties"]["BatchSize"] == 10
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_only_the_hr_sender_may_send(template, resolver):
    doc = resolver.resolve(template["Resources"]["HrEventQueuePolicy"]["Properties"]["PolicyDocument"])
    sender = "arn:aws:iam::210987654321:role/hr-system"
    allows = [s for s in doc["Statement"] if s["Effect"] == "Allow"]
    assert allows == [{
        "Sid": "AllowHrSender", "Effect": "Allow", "Principal": {"AWS": sender},
        "Action": "sqs:SendMessage", "Resource": resolver.get_att("HrEventQueue", "Arn"),
    }]
    denies = {s["Sid"]: s for s in doc["Statement"] if s["Effect"] == "Deny"}
    others = denies["DenySendFromAnyoneElse"]
    assert others["Principal"] == "*" and others["Action"] == "sqs:SendMessage"
    assert sender in others["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]
    tls = denies["DenyInsecureTransport"]
    assert tls["Principal"] == "*" and tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    # without a redrive principal, the HR sender is the only exception
    doc = resolved(template, RedrivePrincipalArn="").resolve(
        template["Resources"]["HrEventQueuePolicy"]["Properties"]["PolicyDocument"])
    (others,) = [s for s in doc["Statement"] if s.get("Sid") == "DenySendFromAnyoneElse"]
    assert others["Condition"]["ArnNotEquals"]["aws:PrincipalArn"] == [sender]


# --- KMS, boundary, baseline group, alarms --------------------------------------------

def test_secrets_key_policy(template):
    for readers, expected_sids in (("", 2), ("arn:aws:iam::123456789012:role/desk", 3)):
        r = resolved(template, SecretReaderRoleArns=readers)
        key = r.resolve(template["Resources"]["SecretsKey"]["Properties"])
        assert key["EnableKeyRotation"] is True
        stmts = key["KeyPolicy"]["Statement"]
        assert len(stmts) == expected_sids
        fn_stmt = [s for s in stmts if s["Principal"] == {"AWS": r.get_att("ProvisionerRole", "Arn")}]
        (fn_stmt,) = fn_stmt
        assert set(as_list(fn_stmt["Action"])) == {"kms:GenerateDataKey", "kms:Decrypt"}
        assert fn_stmt["Condition"]["StringEquals"]["kms:ViaService"] == f"secretsmanager.{REGION}.amazonaws.com"
        for s in stmts:
            if s["Sid"] != "AccountAdministration":
                assert "kms:ViaService" in s["Condition"]["StringEquals"]
                assert "kms:*" not in as_list(s["Action"])
    alias = resolved(template).resolve(template["Resources"]["SecretsKeyAlias"]["Properties"])
    assert alias["AliasName"].startswith("alias/")


def test_boundary_grants_no_iam_administration(template, resolver):
    doc = resolver.resolve(template["Resources"]["EmployeeBoundaryPolicy"]["Properties"]["PolicyDocument"])
    stmts = doc["Statement"]
    self_service = {"iam:ChangePassword", "iam:EnableMFADevice", "iam:ResyncMFADevice",
                    "iam:DeactivateMFADevice", "iam:CreateVirtualMFADevice", "iam:DeleteVirtualMFADevice"}
    for s in stmts:
        if s["Effect"] != "Allow":
            continue
        if "NotAction" in s:
            assert "iam:*" in s["NotAction"]
            continue
        for a in as_list(s["Action"]):
            assert a.startswith("iam:")
            assert a in self_service or a in ("iam:Get*", "iam:List*"), a
        if set(as_list(s["Action"])) & {"iam:ChangePassword", "iam:EnableMFADevice"}:
            assert s["Resource"] == f"arn:aws:iam::{ACCOUNT}:user/employees/${{aws:username}}"
    denied = {a for s in stmts if s["Effect"] == "Deny" for a in as_list(s["Action"])}
    assert {"iam:DeleteUserPermissionsBoundary", "iam:DeleteRolePermissionsBoundary",
            "iam:CreatePolicyVersion", "iam:SetDefaultPolicyVersion", "iam:DeletePolicy"} <= denied
    (own,) = [s for s in stmts if s.get("Sid") == "DenyProvisionerResources"]
    res = set(own["Resource"])
    assert resolver.get_att("ProvisionerRole", "Arn") in res
    assert resolver.get_att("SecretsKey", "Arn") in res
    assert f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:hr-provisioner/*" in res


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
    # devices named after the user: the convention the function's orphan clean-up relies on
    own_device = f"arn:aws:iam::{ACCOUNT}:mfa/${{aws:username}}"
    assert all(s["Resource"] == own_device for s in stmts if grants(s, "iam:CreateVirtualMFADevice"))
    outputs = template["Outputs"]
    assert outputs["BaselineGroupName"]["Value"] == {"Ref": "BaselineGroup"}


def test_alarms(template, resolver):
    alarms = {lid: resolver.resolve(r["Properties"]) for lid, r in template["Resources"].items()
              if r["Type"] == "AWS::CloudWatch::Alarm"}
    metrics = {(a["Namespace"], a["MetricName"], a["Dimensions"][0]["Value"]) for a in alarms.values()}
    fn = resolver.ref("ProvisionerFunction")
    assert metrics == {
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", resolver.get_att("HrDeadLetterQueue", "QueueName")),
        ("AWS/Lambda", "Errors", fn),
        ("AWS/Lambda", "Throttles", fn),
        ("AWS/SQS", "ApproximateAgeOfOldestMessage", resolver.get_att("HrEventQueue", "QueueName")),
    }
    topic = resolver.ref("AlarmTopic")
    for a in alarms.values():
        assert a["AlarmActions"] == [topic]
    t = resolver.resolve(template["Resources"]["AlarmTopic"]["Properties"])
    assert t["KmsMasterKeyId"]
    assert template["Resources"]["AlarmEmailSubscription"]["Condition"] == "HasAlarmEmail"


def test_every_policy_document_is_extracted(template):
    kinds = {(d["id"], d["kind"]) for d in ep.policy_documents(template)}
    ids = {i for i, _ in kinds}
    assert {"ProvisionerRole.provisioner", "ProvisionerKmsPolicy", "EmployeeBoundaryPolicy",
            "BaselineGroup.self-service-password-and-mfa", "SecretsKey.KeyPolicy",
            "ObservabilityKey.KeyPolicy", "HrEventQueuePolicy", "AlarmTopicPolicy"} <= ids
