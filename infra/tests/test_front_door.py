"""The front door's resources (docs/contract.md section 10, issue 18): its role may send
to the HR queue, read its own two token secrets and the users under UserPath, and write
its log group; nothing else, and in particular no IAM write. Evaluated with iam_eval."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import extract_policies as ep  # noqa: E402
from iam_eval import ALLOW, DENY, as_list, decide  # noqa: E402

ACCOUNT = ep.PSEUDO["AWS::AccountId"]
REGION = ep.PSEUDO["AWS::Region"]
STACK = ep.PSEUDO["AWS::StackName"]

EXPECTED = {"sqs:SendMessage", "secretsmanager:GetSecretValue", "iam:GetUser", "iam:ListUserTags",
            "iam:ListUsers", "logs:CreateLogStream", "logs:PutLogEvents"}


@pytest.fixture(scope="module")
def template():
    return ep.load_template()


@pytest.fixture(scope="module")
def resolver(template):
    return ep.Resolver(template)


@pytest.fixture(scope="module")
def statements(template):
    docs = [d for d in ep.policy_documents(template) if d["resource"] == "FrontDoorRole" and d["kind"] == "identity"]
    assert [d["id"] for d in docs] == ["FrontDoorRole.front-door"]
    # No other policy attaches to the role.
    for lid, res in template["Resources"].items():
        props = res.get("Properties", {})
        attached = as_list(props.get("RoleName", [])) + as_list(props.get("Roles", []))
        assert {"Ref": "FrontDoorRole"} not in attached, lid
    assert "ManagedPolicyArns" not in template["Resources"]["FrontDoorRole"]["Properties"]
    return [s for d in docs for s in as_list(d["document"]["Statement"])]


def user(name, path="/employees/"):
    return f"arn:aws:iam::{ACCOUNT}:user{path}{name}"


def test_role_allows_exactly_what_the_front_door_calls(statements):
    actions = set()
    for s in statements:
        assert s["Effect"] == "Allow" and "NotAction" not in s and "NotResource" not in s
        actions.update(as_list(s["Action"]))
    assert actions == EXPECTED


def test_send_only_to_the_hr_queue(statements, resolver):
    queue = resolver.get_att("HrEventQueue", "Arn")
    assert decide(statements, "sqs:SendMessage", queue) == ALLOW
    for other in (resolver.get_att("HrDeadLetterQueue", "Arn"), f"arn:aws:sqs:{REGION}:{ACCOUNT}:other.fifo"):
        assert decide(statements, "sqs:SendMessage", other) != ALLOW, other
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:PurgeQueue", "sqs:SetQueueAttributes"):
        assert decide(statements, action, queue) != ALLOW, action


def test_reads_only_its_own_two_secrets(statements, resolver):
    own = [resolver.ref("FrontDoorWebhookSecret"), resolver.ref("FrontDoorScimTokenSecret")]
    assert own[0].endswith(f":secret:{STACK}-front-door/webhook-AbCdEf")
    for arn in own:
        assert decide(statements, "secretsmanager:GetSecretValue", arn) == ALLOW
        for action in ("secretsmanager:PutSecretValue", "secretsmanager:DeleteSecret",
                       "secretsmanager:UpdateSecret", "secretsmanager:TagResource"):
            assert decide(statements, action, arn) != ALLOW, action
    # Never an employee's credentials.
    employee_secret = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:hr-provisioner/jane.doe-AbCdEf"
    assert decide(statements, "secretsmanager:GetSecretValue", employee_secret) != ALLOW


def test_iam_is_read_only_and_limited_to_the_user_path(statements):
    from policy_sentry.querying.actions import get_actions_for_service

    for name in ("jane.doe", "x@example.com"):
        for action in ("iam:GetUser", "iam:ListUserTags"):
            assert decide(statements, action, user(name)) == ALLOW
            assert decide(statements, action, user(name, "/admins/")) != ALLOW
            assert decide(statements, action, user(name, "/")) != ALLOW
    assert decide(statements, "iam:ListUsers", "*") == ALLOW
    # Every IAM action other than the three reads is refused, on any resource.
    for action in get_actions_for_service("iam"):
        if action.lower() in {"iam:getuser", "iam:listusertags", "iam:listusers"}:
            continue
        for arn in (user("jane.doe"), "*", f"arn:aws:iam::{ACCOUNT}:role/x", f"arn:aws:iam::{ACCOUNT}:group/x"):
            assert decide(statements, action, arn) != ALLOW, (action, arn)


def test_logs_only_its_own_group(statements, resolver):
    own = resolver.get_att("FrontDoorLogGroup", "Arn")
    assert decide(statements, "logs:PutLogEvents", own) == ALLOW
    assert decide(statements, "logs:PutLogEvents", resolver.get_att("ProvisionerLogGroup", "Arn")) != ALLOW


def test_queue_policy_lets_the_front_door_send(template, resolver):
    doc = resolver.resolve(template["Resources"]["HrEventQueuePolicy"]["Properties"]["PolicyDocument"])
    (deny,) = [s for s in doc["Statement"] if s.get("Sid") == "DenySendFromAnyoneElse"]
    assert resolver.get_att("FrontDoorRole", "Arn") in deny["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]


def test_function_url_and_limits(template, resolver):
    fn = resolver.resolve(ep.function_properties(template, "FrontDoorFunction"))
    assert template["Resources"]["FrontDoorFunction"]["Metadata"]["BuildProperties"] == {"Binary": "front-door"}
    assert fn["Role"] == resolver.get_att("FrontDoorRole", "Arn")
    assert fn["ReservedConcurrentExecutions"] == "5", "the documented requests-per-second ceiling"
    assert fn["LoggingConfig"]["LogGroup"] == f"/aws/lambda/{fn['FunctionName']}"
    env = fn["Environment"]["Variables"]
    assert env["QUEUE_URL"] == resolver.ref("HrEventQueue")
    assert env["WEBHOOK_SECRET_ID"] == resolver.ref("FrontDoorWebhookSecret")
    assert env["SCIM_TOKEN_SECRET_ID"] == resolver.ref("FrontDoorScimTokenSecret")
    url = template["Resources"]["FrontDoorFunctionUrl"]["Properties"]
    assert url["AuthType"] == "NONE" and url["TargetFunctionArn"] == {"Fn::GetAtt": ["FrontDoorFunction", "Arn"]}
    perm = template["Resources"]["FrontDoorUrlPermission"]["Properties"]
    assert (perm["Action"], perm["FunctionUrlAuthType"]) == ("lambda:InvokeFunctionUrl", "NONE")
    lg = resolver.resolve(template["Resources"]["FrontDoorLogGroup"]["Properties"])
    assert int(lg["RetentionInDays"]) >= 365 and lg["KmsKeyId"]
    for sid in ("FrontDoorWebhookSecret", "FrontDoorScimTokenSecret"):
        gen = template["Resources"][sid]["Properties"]["GenerateSecretString"]
        assert gen["GenerateStringKey"] == "current" and gen["PasswordLength"] >= 32


def test_employees_cannot_touch_the_front_door(template, resolver):
    doc = resolver.resolve(template["Resources"]["EmployeeBoundaryPolicy"]["Properties"]["PolicyDocument"])
    stmts = as_list(doc["Statement"])
    ctx = {"aws:username": "jane.doe", "aws:PrincipalArn": user("jane.doe")}
    fn = resolver.get_att("FrontDoorFunction", "Arn")
    for action, arn in (("lambda:UpdateFunctionCode", fn), ("lambda:UpdateFunctionConfiguration", fn),
                        ("secretsmanager:GetSecretValue", resolver.ref("FrontDoorWebhookSecret")),
                        ("secretsmanager:GetSecretValue", resolver.ref("FrontDoorScimTokenSecret")),
                        ("logs:DeleteLogGroup", resolver.get_att("FrontDoorLogGroup", "Arn"))):
        assert decide(stmts, action, arn, ctx) == DENY, (action, arn)
