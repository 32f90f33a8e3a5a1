"""Effective dates (docs/contract.md, section 9; issue 17): the schedule group, the role
EventBridge Scheduler sends with, the provisioner's and the audit's scheduler permissions,
and the HR queue as a Scheduler target. Each property is evaluated as the request it
allows or refuses (iam_eval), like test_template.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import extract_policies as ep  # noqa: E402
from iam_eval import ALLOW, as_list, decide  # noqa: E402
from test_template import ACCOUNT, REGION, STACK, function_props, resolved, role_statements  # noqa: E402

GROUP = f"{STACK}-dates"
WRITES = ("scheduler:CreateSchedule", "scheduler:UpdateSchedule", "scheduler:DeleteSchedule",
          "scheduler:GetSchedule")


def schedule_arn(name: str, group: str = GROUP) -> str:
    return f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/{group}/{name}"


@pytest.fixture(scope="module")
def template():
    return ep.load_template()


@pytest.fixture(scope="module")
def resolver(template):
    return resolved(template)


def test_the_group_is_the_stacks_and_the_function_is_told_so(template, resolver):
    assert template["Resources"]["ScheduleGroup"]["Type"] == "AWS::Scheduler::ScheduleGroup"
    env = function_props(template)["Environment"]["Variables"]
    assert env["SCHEDULE_GROUP"] == resolver.ref("ScheduleGroup") == GROUP
    assert env["SCHEDULE_TARGET_ARN"] == resolver.get_att("HrEventQueue", "Arn")
    assert env["SCHEDULER_ROLE_ARN"] == resolver.get_att("SchedulerRole", "Arn")
    assert (env["PROVISION_LEAD"], env["HR_TIME_ZONE"]) == ("P1D", "UTC")
    env = function_props(template, ProvisionLead="PT12H", HrTimeZone="Europe/Berlin")["Environment"]["Variables"]
    assert (env["PROVISION_LEAD"], env["HR_TIME_ZONE"]) == ("PT12H", "Europe/Berlin")
    assert "ProvisionerSchedulesPolicy" in template["Resources"]["ProvisionerFunction"]["DependsOn"]


def test_parameters_refuse_what_the_function_would_refuse(template):
    import re

    lead = template["Parameters"]["ProvisionLead"]["AllowedPattern"]
    for ok in ("P1D", "PT12H", "P1DT6H", "P2W", "PT0S"):
        assert re.match(lead, ok), ok
    for bad in ("P", "1D", "PT", "P1DT", "-P1D", "P1D "):
        assert not re.match(lead, bad), bad
    tz = template["Parameters"]["HrTimeZone"]["AllowedPattern"]
    assert re.match(tz, "America/Argentina/Buenos_Aires") and not re.match(tz, "Europe/Berlin; rm")


def test_provisioner_writes_schedules_only_in_the_stacks_group(template):
    stmts = role_statements(template)
    for action in WRITES:
        assert decide(stmts, action, schedule_arn("hr-start-E1001")) == ALLOW, action
        assert decide(stmts, action, schedule_arn("hr-start-E1001", "default")) != ALLOW, action
        assert decide(stmts, action, schedule_arn("x", "other-team")) != ALLOW, action
    group_arn = f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule-group/{GROUP}"
    for action in ("scheduler:CreateScheduleGroup", "scheduler:DeleteScheduleGroup", "scheduler:ListSchedules",
                   "scheduler:TagResource"):
        assert decide(stmts, action, group_arn) != ALLOW, action
        assert decide(stmts, action, "*") != ALLOW, action


def test_provisioner_passes_only_the_scheduler_role_and_only_to_scheduler(template, resolver):
    stmts = role_statements(template)
    role = resolver.get_att("SchedulerRole", "Arn")
    to_scheduler = {"iam:PassedToService": "scheduler.amazonaws.com"}
    assert decide(stmts, "iam:PassRole", role, to_scheduler) == ALLOW
    assert decide(stmts, "iam:PassRole", role, {"iam:PassedToService": "lambda.amazonaws.com"}) != ALLOW
    assert decide(stmts, "iam:PassRole", role) != ALLOW
    for other in (resolver.get_att("ProvisionerRole", "Arn"), resolver.get_att("AuditRole", "Arn"),
                  f"arn:aws:iam::{ACCOUNT}:role/admin", f"arn:aws:iam::{ACCOUNT}:role/*"):
        assert decide(stmts, "iam:PassRole", other, to_scheduler) != ALLOW, other


def test_scheduler_role_is_assumed_by_this_groups_schedules_and_only_sends_to_the_hr_queue(template, resolver):
    res = template["Resources"]["SchedulerRole"]
    trust = resolver.resolve(res["Properties"]["AssumeRolePolicyDocument"])
    (stmt,) = trust["Statement"]
    assert stmt["Principal"] == {"Service": "scheduler.amazonaws.com"} and stmt["Action"] == "sts:AssumeRole"
    assert stmt["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT}
    assert stmt["Condition"]["ArnEquals"] == {
        "aws:SourceArn": f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule-group/{GROUP}"}
    stmts = role_statements(template, "SchedulerRole")
    actions = {a for s in stmts if s["Effect"] == "Allow" for a in as_list(s["Action"])}
    assert actions == {"sqs:SendMessage"}
    queue = resolver.get_att("HrEventQueue", "Arn")
    assert decide(stmts, "sqs:SendMessage", queue) == ALLOW
    for other in (resolver.get_att("HrDeadLetterQueue", "Arn"), f"arn:aws:sqs:{REGION}:{ACCOUNT}:other.fifo"):
        assert decide(stmts, "sqs:SendMessage", other) != ALLOW
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "iam:PassRole", "kms:Decrypt"):
        assert decide(stmts, action, queue) != ALLOW, action


def test_hr_queue_takes_scheduler_deliveries(template, resolver):
    q = resolver.resolve(template["Resources"]["HrEventQueue"]["Properties"])
    # Scheduler sends no deduplication id: a FIFO target needs content-based
    # deduplication. HR's explicit MessageDeduplicationId (event_id) still wins.
    assert q["FifoQueue"] is True and q["ContentBasedDeduplication"] is True
    assert q["SqsManagedSseEnabled"] is True and "KmsMasterKeyId" not in q, "no key for the scheduler role"
    doc = resolver.resolve(template["Resources"]["HrEventQueuePolicy"]["Properties"]["PolicyDocument"])
    role = resolver.get_att("SchedulerRole", "Arn")
    (deny,) = [s for s in doc["Statement"] if s.get("Sid") == "DenySendFromAnyoneElse"]
    assert role in deny["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]


def test_audit_reads_schedules_and_writes_none(template):
    stmts = role_statements(template, "AuditRole")
    assert decide(stmts, "scheduler:ListSchedules", "*") == ALLOW
    assert decide(stmts, "scheduler:GetSchedule", schedule_arn("hr-end-E1")) == ALLOW
    assert decide(stmts, "scheduler:GetSchedule", schedule_arn("x", "other-team")) != ALLOW
    for action in WRITES[:3]:
        assert decide(stmts, action, schedule_arn("hr-end-E1")) != ALLOW, action
