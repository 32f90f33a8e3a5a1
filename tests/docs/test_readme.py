"""Every example of README.md runs here, so the README cannot drift from the code.

Run by scripts/check-docs.sh (all of tests/docs) and scripts/check-readme.sh (this
file only). Each fenced block of README.md that has a language carries a tag in its
info string, ```sh test=ID, and ID says what this file does with it:

  event-joined, event-left    validated against docs/event.schema.json and equal to
                              the body of events/joiner-engineering.json, leaver.json
  send-cli                    run with bash and the AWS CLI against a moto server
                              started here, after creating (in moto) a CloudFormation
                              stack "hr-prov" whose FIFO queue and output HrQueueUrl
                              are copied from infra/template.yaml; the message is
                              received back and its body, group id and deduplication
                              id checked. The same for infra/README.md's send example.
  send-boto3                  run with python against the same moto; checked alike
  read-secret                 run with bash and the AWS CLI against moto, which holds
                              a secret of the function's layout
  query-<Resource>            equal to the QueryString of that AWS::Logs::QueryDefinition
                              in infra/template.yaml (and every such query is shown)
  run-demo                    slow: scripts/demo.sh is run twice; both outputs must be
                              equal, show no runtime WARN, and contain demo-excerpt
  demo-excerpt                a part of the demo's output, quoted in the README
  by-hand                     slow: run with bash (ports and /tmp path replaced by free
                              ones), then the user it made is checked
  sign-webhook                slow: the webhook signing recipe, run with python against
                              the front door served locally (scripts/front_door_local.py)
                              over moto; the answer is 202 and the provisioner made the user
  not-run:<why>               NOT run: `not-run:needs-aws` (sam build / sam deploy need
                              an AWS account and the SAM CLI: only syntax-checked, and
                              checked to be the commands of infra/README.md);
                              `not-run:it-is-ci` (./scripts/test.sh is CI itself)

Every shell block is syntax-checked with `bash -n`. A block with a language and no
tag, or with an unknown tag, fails test_every_block_is_tested.

The AWS CLI is installed into .venv/ when missing (PyPI `awscli`; the venv's
botocore, which moto uses, is pinned so pip leaves it alone).

Slow tests (marked `slow`, deselect with -m "not slow"): the demo (twice) and the
by-hand recipe. They build the function's debug binary if needed (several minutes
on a fresh clone, seconds otherwise); once built, the demo takes about 10 s a run.
They run in CI too; DOCS_SKIP_SLOW=1 skips them.
"""

import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import time
import urllib.request

import boto3
import pytest
import yaml
from jsonschema import Draft202012Validator

ROOT = pathlib.Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
INFRA_README = (ROOT / "infra" / "README.md").read_text()
VENV_BIN = ROOT / ".venv" / "bin"
SCHEMA = json.loads((ROOT / "docs" / "event.schema.json").read_text())

FENCE = re.compile(r"^```([A-Za-z0-9_+-]*)([^\n]*)\n(.*?)^```[ \t]*$", re.M | re.S)
KNOWN_TAGS = {"event-joined", "event-left", "send-cli", "send-boto3", "read-secret",
              "run-demo", "demo-excerpt", "by-hand", "audit-readonly", "sign-webhook"}


def fenced(text):
    """(language, tag, body) of every fenced block."""
    out = []
    for lang, info, body in FENCE.findall(text):
        m = re.search(r"\btest=(\S+)", info)
        out.append((lang, m.group(1) if m else None, body))
    return out


BLOCKS = fenced(README)


def block(tag):
    found = [body for _, t, body in BLOCKS if t == tag]
    assert len(found) == 1, f"README.md must have exactly one block tagged test={tag}"
    return found[0]


def template():
    """infra/template.yaml, with CloudFormation's short tags read as plain values."""
    class Loader(yaml.SafeLoader):
        pass

    def any_tag(loader, suffix, node):
        if isinstance(node, yaml.ScalarNode):
            return {suffix: loader.construct_scalar(node)}
        if isinstance(node, yaml.SequenceNode):
            return {suffix: loader.construct_sequence(node, deep=True)}
        return {suffix: loader.construct_mapping(node, deep=True)}

    Loader.add_multi_constructor("!", any_tag)
    return yaml.load((ROOT / "infra" / "template.yaml").read_text(), Loader=Loader)


def records(name):
    return json.loads((ROOT / "events" / name).read_text())["Records"]


# ---------------------------------------------------------------------------
# The blocks themselves
# ---------------------------------------------------------------------------
def test_every_block_is_tested():
    for lang, tag, body in BLOCKS:
        if not lang:
            continue  # diagrams and the layout: no language, nothing to run
        assert tag, f"a ```{lang} block of README.md has no test= tag:\n{body[:200]}"
        assert (tag in KNOWN_TAGS or tag.startswith("query-")
                or tag.startswith("not-run:")), f"unknown tag test={tag}"
    for tag in KNOWN_TAGS:
        block(tag)


@pytest.mark.parametrize("body", [b for lang, _, b in BLOCKS if lang in ("sh", "bash")],
                         ids=[t for lang, t, _ in BLOCKS if lang in ("sh", "bash")])
def test_shell_block_parses(body):
    r = subprocess.run(["bash", "-n"], input=body, text=True, capture_output=True)
    assert r.returncode == 0, r.stderr


def test_python_block_compiles():
    compile(block("send-boto3"), "README.md:send-boto3", "exec")


@pytest.mark.parametrize("tag,sample", [("event-joined", "joiner-engineering.json"),
                                        ("event-left", "leaver.json")])
def test_event_example_is_valid_and_is_the_sample(tag, sample):
    event = json.loads(block(tag))
    errors = list(Draft202012Validator(
        SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER).iter_errors(event))
    assert not errors, errors
    assert event == json.loads(records(sample)[0]["body"])


def test_cli_example_names_the_event_it_sends():
    event = json.loads(block("event-joined"))
    cli = block("send-cli")
    assert f"--message-group-id {event['employee']['employee_id']}" in cli
    assert f"--message-deduplication-id {event['event_id']}" in cli


def test_deploy_commands_are_those_of_the_infra_readme():
    deploy = [b for _, t, b in BLOCKS if t == "not-run:needs-aws"]
    assert len(deploy) == 1
    lines = [line.strip() for line in deploy[0].splitlines() if line.strip()]
    assert lines[0] == "cd infra"
    infra_cmds = " ".join(b for lang, _, b in fenced(INFRA_README) if lang == "sh")
    for line in lines[1:]:
        assert line.startswith("sam ")
        assert line[len("sam"):] in infra_cmds, f"{line!r} is not what infra/README.md runs"


def test_parameters_named_exist_and_the_required_ones_are_named():
    params = template()["Parameters"]
    section = README[README.index("## Deploy"):README.index("## The password hand-over")]
    named = set(re.findall(r"`([A-Z][A-Za-z]+)`", section))
    for p in named:
        assert p in params, f"README names parameter {p}, the template has none"
    required = {p for p, spec in params.items() if "Default" not in spec}
    assert required == set(re.findall(r"required are `(\w+)`.*?`(\w+)`.*?and `(\w+)`",
                                      section, re.S)[0])
    for p in ("HrSenderPrincipalArn", "RedrivePrincipalArn", "SecretReaderRoleArns"):
        assert f"`{p}`" in README


def test_the_queue_is_fifo_grouped_and_only_the_hr_sender_may_send():
    t = template()["Resources"]
    q = t["HrEventQueue"]["Properties"]
    # Content-based deduplication for the stack's own schedules (contract section 9);
    # HR's explicit deduplication id still wins (infra/README.md).
    assert q["FifoQueue"] is True and q["ContentBasedDeduplication"] is True
    assert q["RedrivePolicy"]["maxReceiveCount"] == 5  # "5 in the stack"
    policy = t["HrEventQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    allow = [s for s in policy if s["Effect"] == "Allow"]
    assert [s["Principal"]["AWS"] for s in allow] == [{"Ref": "HrSenderPrincipalArn"},
                                                      {"GetAtt": "SchedulerRole.Arn"}]
    assert template()["Outputs"]["HrQueueUrl"]["Value"] == {"Ref": "HrEventQueue"}
    assert "SecretReadersThroughSecretsManager" in json.dumps(t["SecretsKey"])


def test_queries_are_the_stacks():
    resources = template()["Resources"]
    queries = {name: r["Properties"]["QueryString"] for name, r in resources.items()
               if r["Type"] == "AWS::Logs::QueryDefinition"}
    shown = {t[len("query-"):]: b for _, t, b in BLOCKS if t and t.startswith("query-")}
    if not queries:
        pytest.skip("infra/template.yaml has no AWS::Logs::QueryDefinition yet")
    assert set(shown) == set(queries)
    for name, text in queries.items():
        assert shown[name].rstrip("\n") == text.rstrip("\n"), f"{name} differs from the template"


def test_every_variable_of_the_contract_is_in_the_configuration_table():
    contract = (ROOT / "docs" / "contract.md").read_text()
    section = contract[contract.index("## 2. Configuration"):contract.index("### 2.1")]
    variables = set(re.findall(r"^\| `([A-Z_]+)`", section, re.M))
    table = README[README.index("## Configuration"):README.index("## How it works")]
    assert variables == set(re.findall(r"^\| `([A-Z_]+)`", table, re.M))


def test_every_outcome_is_explained():
    table = README[README.index("## Outcomes"):README.index("## How HR sends")]
    outcomes = set(re.findall(r"^\| `([a-z]+)`", table, re.M))
    assert outcomes == {"applied", "unchanged", "stale", "rejected", "failed", "planned", "scheduled"}


def test_rust_version_is_the_declared_one():
    declared = re.search(r'^rust-version = "([0-9.]+)"', (ROOT / "Cargo.toml").read_text(), re.M)
    assert declared, "Cargo.toml declares no rust-version"
    assert f"Rust **{declared.group(1)}** or newer" in README


def test_by_hand_rules_are_the_demos():
    demo = (ROOT / "scripts" / "demo.sh").read_text()
    rules = re.search(r"^rules='(.*)'$", demo, re.M).group(1)
    assert f"PROVISIONING_RULES='{rules}'" in block("by-hand")


# ---------------------------------------------------------------------------
# Against moto: the AWS CLI and boto3 examples
# ---------------------------------------------------------------------------
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def moto():
    port = free_port()
    proc = subprocess.Popen([str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1)
            break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("moto_server did not start")
    yield endpoint
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def aws_cli():
    """The AWS CLI of .venv, installed when missing. awscli 1.x carries its own
    botocore; the pin only makes sure pip never changes the one moto uses."""
    aws = VENV_BIN / "aws"
    if not aws.exists():
        import botocore
        subprocess.run([str(VENV_BIN / "pip"), "install", "--quiet", "--disable-pip-version-check",
                        "awscli", f"botocore=={botocore.__version__}"], check=True)
    return aws


@pytest.fixture
def aws_env(moto, tmp_path):
    """A clean AWS environment pointing at moto (no profile, config or real credentials)."""
    urllib.request.urlopen(urllib.request.Request(moto + "/moto-api/reset", method="POST"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        PATH=f"{VENV_BIN}:{env.get('PATH', '')}",
        AWS_ENDPOINT_URL=moto, AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
        AWS_CONFIG_FILE=str(tmp_path / "no-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"),
    )
    return env


def client(service, env):
    return boto3.client(service, endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test")


def create_stack(env):
    """A stack named hr-prov whose output HrQueueUrl is a queue made like the real
    template's HrEventQueue. The whole template cannot run in moto (SAM, KMS key
    policies...), and a queue that moto's CloudFormation creates gets a URL on AWS's
    host, which the CLI would then call; so the queue is created through SQS and the
    stack only carries the output."""
    props = template()["Resources"]["HrEventQueue"]["Properties"]
    queue_url = client("sqs", env).create_queue(QueueName="hr-prov-hr-events.fifo", Attributes={
        "FifoQueue": str(props["FifoQueue"]).lower(),
        "ContentBasedDeduplication": str(props["ContentBasedDeduplication"]).lower(),
        "VisibilityTimeout": str(props["VisibilityTimeout"]),
    })["QueueUrl"]
    body = {"Resources": {"Placeholder": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
            "Outputs": {"HrQueueUrl": {"Value": queue_url}}}
    client("cloudformation", env).create_stack(StackName="hr-prov", TemplateBody=json.dumps(body))
    return queue_url


def receive_one(env, queue_url):
    sqs = client("sqs", env)
    got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                              MessageSystemAttributeNames=["All"])["Messages"]
    assert len(got) == 1
    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=got[0]["ReceiptHandle"])
    return got[0]


def check_received(message, event):
    assert json.loads(message["Body"]) == event
    assert message["Attributes"]["MessageGroupId"] == event["employee"]["employee_id"]
    assert message["Attributes"]["MessageDeduplicationId"] == event["event_id"]


# The AWS CLI v1 ignores AWS_ENDPOINT_URL for SQS (its customization
# overridesslcommonname.py sets SQS's legacy endpoint unless --endpoint-url is given),
# so the blocks run with `aws` pointed at moto by that flag; the block is unchanged.
POINT_AWS_AT_MOTO = 'aws() { command aws --endpoint-url "$AWS_ENDPOINT_URL" "$@"; }\n'


def run_shell(script, env, cwd):
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", POINT_AWS_AT_MOTO + script], env=env, cwd=cwd,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r.stdout


def test_send_with_the_aws_cli(aws_cli, aws_env, tmp_path):
    queue_url = create_stack(aws_env)
    event = json.loads(block("event-joined"))
    (tmp_path / "event.json").write_text(block("event-joined"))
    run_shell(block("send-cli"), aws_env, tmp_path)
    check_received(receive_one(aws_env, queue_url), event)


def test_send_with_the_aws_cli_as_the_infra_readme_shows(aws_cli, aws_env, tmp_path):
    sends = [b for lang, _, b in fenced(INFRA_README) if lang == "sh" and "sqs send-message" in b]
    assert len(sends) == 1, "infra/README.md: expected one send-message example"
    queue_url = create_stack(aws_env)
    event = json.loads(block("event-joined"))
    (tmp_path / "event.json").write_text(block("event-joined"))
    run_shell(sends[0], aws_env, tmp_path)
    check_received(receive_one(aws_env, queue_url), event)


def test_send_with_boto3(aws_env, tmp_path):
    queue_url = create_stack(aws_env)
    event = json.loads(block("event-left"))
    (tmp_path / "event.json").write_text(block("event-left"))
    (tmp_path / "send.py").write_text(block("send-boto3"))
    r = subprocess.run([str(VENV_BIN / "python"), "send.py"], env={**aws_env, "QUEUE_URL": queue_url},
                       cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    check_received(receive_one(aws_env, queue_url), event)


def test_a_resend_within_five_minutes_is_dropped_by_sqs(aws_cli, aws_env, tmp_path):
    queue_url = create_stack(aws_env)
    (tmp_path / "event.json").write_text(block("event-joined"))
    run_shell(block("send-cli") + "\n" + block("send-cli"), aws_env, tmp_path)
    receive_one(aws_env, queue_url)
    sqs = client("sqs", aws_env)
    assert not sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1).get("Messages")


def test_read_the_secret(aws_cli, aws_env, tmp_path):
    value = {"user_name": "jane.doe", "signin_url": "https://acme-demo.signin.aws.amazon.com/console",
             "password": "example-Passw0rd!-not-real", "employee_id": "E1001"}
    client("secretsmanager", aws_env).create_secret(
        Name="hr-provisioner/jane.doe", SecretString=json.dumps(value),
        Tags=[{"Key": "hr:managed-by", "Value": "hr-provisioner"}, {"Key": "hr:employee-id", "Value": "E1001"}])
    out = run_shell(block("read-secret"), aws_env, tmp_path)
    assert json.loads(out) == value


# ---------------------------------------------------------------------------
# Slow: the demo and the by-hand recipe (they need the function's debug build)
# ---------------------------------------------------------------------------
slow = pytest.mark.skipif(os.environ.get("DOCS_SKIP_SLOW") == "1", reason="DOCS_SKIP_SLOW=1")


def run_demo(tmp_path, name):
    demo_dir = tmp_path / name
    env = {k: v for k, v in os.environ.items() if k not in ("MOTO_PORT", "INVOKE_PORT")}
    env.update(DEMO_DIR=str(demo_dir), NO_COLOR="1")
    started = time.monotonic()
    r = subprocess.run(["bash", "scripts/demo.sh"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=900)
    took = time.monotonic() - started
    assert r.returncode == 0, f"demo failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    print(f"demo run {name}: {took:.0f} s")
    out = r.stdout.replace(str(demo_dir), "<DEMO_DIR>")
    return out, (demo_dir / "function.log").read_text()


@pytest.mark.slow
@slow
def test_the_audit_block_for_security_reviewers(aws_env, tmp_path):
    """The reviewers' block against moto, with the debug build that `cargo test` made
    (the block's release build is not repeated here): an account with nothing managed
    is clean, so every command exits 0; `plan` shows what a joiner would do."""
    audit = ROOT / "target" / "debug" / "hr-iam-audit"
    if not audit.exists():
        subprocess.run(["cargo", "build", "--bin", "hr-iam-audit"], cwd=ROOT, check=True)
    script = block("audit-readonly")
    assert script.startswith("cargo build --release --bin hr-iam-audit\n")
    script = script.split("\n", 1)[1].replace("target/release/hr-iam-audit", str(audit))
    (tmp_path / "rules.json").write_text(
        '{"default":{"groups":[],"console":true,"access_key":false}}')
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    (tmp_path / "event.json").write_text(json.dumps({
        "event_id": "readme-1", "event_type": "employee.joined", "occurred_at": now,
        "employee": {"employee_id": "E1", "email": "jane.doe@example.com"}}))
    env = dict(aws_env, SENDER_EMAIL="it@example.com",
               FUNCTION_ARN="arn:aws:lambda:us-east-1:123456789012:function:hr-prov")
    out = run_shell(script, env, tmp_path)
    assert '"users"' in out and '"findings"' in out
    assert "code,user_name,secret_name,detail" in out
    assert "CreateUser" in out and "CreateLoginProfile" in out


@pytest.mark.slow
@slow
def test_demo(tmp_path):
    assert block("run-demo").strip() == "./scripts/demo.sh"
    first, log = run_demo(tmp_path, "first")
    second, _ = run_demo(tmp_path, "second")
    assert first == second, "the demo's output differs between two runs"
    assert block("demo-excerpt") in first, "the README's excerpt is not what the demo prints"
    # No WARN from the Lambda runtime (AWS_LAMBDA_MAX_CONCURRENCY), nothing but JSON lines.
    assert "AWS_LAMBDA_MAX_CONCURRENCY" not in log
    for line in log.splitlines():
        entry = json.loads(line)
        if entry["level"] in ("WARN", "ERROR") and not entry.get("audit"):
            assert entry.get("op") == "ListServiceSpecificCredentials", line
    steps = re.findall(r"^== (\d+)\. (\S+)$", first, re.M)
    assert [s for _, s in steps] == ["joiner-engineering.json", "joiner-sales.json",
                                      "joiner-duplicate.json", "invalid.json", "mover.json",
                                      "leaver.json", "rehire.json", "joiner-future-start.json",
                                      "contractor.json"]
    # Per step: the audit line(s) as JSON, and what changed; mails only when new.
    for part in re.split(r"^== \d+\. ", first, flags=re.M)[1:8]:
        audits = [line[len("audit: "):] for line in part.splitlines() if line.startswith("audit: ")]
        assert audits and all(json.loads(a)["audit"] is True for a in audits)
        assert "\nAWS:" in part and "\nmail:" in part
    # Three from the first seven steps, then the hire delivered by its schedule and
    # the contractor.
    assert first.count("mail:  to ") == 5
    assert not re.search(r"AKIA[A-Z0-9]{16}", first), "a raw access key id in the output"


@pytest.mark.slow
@slow
def test_by_hand(tmp_path):
    moto_port, invoke_port = free_port(), free_port()
    script = (block("by-hand").replace("5077", str(moto_port)).replace("9077", str(invoke_port))
              .replace("/tmp/joiner.json", str(tmp_path / "joiner.json")))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    stop = re.search(r"Stop the three background jobs with `([^`]+)`", README).group(1)
    # Output to files, not pipes: the recipe's background jobs would hold a pipe open.
    # They run in their own process group, ended afterwards whatever happens.
    out_path, err_path = tmp_path / "stdout", tmp_path / "stderr"
    with open(out_path, "w") as out_f, open(err_path, "w") as err_f:
        proc = subprocess.Popen(["bash", "-c", f"set -e\n{script}\n{stop}\nwait"], cwd=ROOT, env=env,
                                stdout=out_f, stderr=err_f, start_new_session=True)
        try:
            proc.wait(timeout=900)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    out, err = out_path.read_text(), err_path.read_text()
    assert proc.returncode == 0, f"{out[-3000:]}\n{err[-3000:]}"
    assert re.search(r'"batchItemFailures":\s*\[\]', out), out
    assert "groups: developers, staff" in out
    assert re.search(r"access keys: AKIA[A-Z0-9]{16} \(active\)", out), out


@pytest.mark.slow
@slow
def test_sign_webhook_against_the_front_door(aws_env, tmp_path):
    """The README's signing recipe, unchanged, against the real front door (the debug
    binaries behind the Lambda Runtime API, scripts/front_door_local.py) over moto."""
    for binary in ("front-door", "bootstrap"):
        if not (ROOT / "target" / "debug" / binary).exists():
            subprocess.run(["cargo", "build", "--bin", binary], cwd=ROOT, check=True)
    endpoint = aws_env["AWS_ENDPOINT_URL"]
    subprocess.run([str(VENV_BIN / "python"), "scripts/moto_seed.py", endpoint, "it@example.com"],
                   cwd=ROOT, check=True, capture_output=True)
    port = free_port()
    local = subprocess.Popen([str(VENV_BIN / "python"), "scripts/front_door_local.py", "--endpoint", endpoint,
                              "--port", str(port), "--dir", str(tmp_path / "fd"), "--sync"],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            if (tmp_path / "fd" / "ready").exists():
                break
            time.sleep(0.1)
        else:
            pytest.fail("the front door did not start")
        event = json.loads(block("event-joined"))
        event["occurred_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        (tmp_path / "event.json").write_text(json.dumps(event))
        (tmp_path / "sign.py").write_text(block("sign-webhook"))
        key = json.loads((tmp_path / "fd" / "keys.json").read_text())["webhook"]
        r = subprocess.run([str(VENV_BIN / "python"), "sign.py"], cwd=tmp_path, capture_output=True, text=True,
                           env={**aws_env, "WEBHOOK_KEY": key, "FRONT_DOOR_URL": f"http://127.0.0.1:{port}/"},
                           timeout=120)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout) == {"event_id": event["event_id"]}
        user = client("iam", aws_env).get_user(UserName=event["employee"]["username"])["User"]
        assert {"Key": "hr:employee-id", "Value": event["employee"]["employee_id"]} in user["Tags"]
        # The wrong key: 401, named.
        r = subprocess.run([str(VENV_BIN / "python"), "sign.py"], cwd=tmp_path, capture_output=True, text=True,
                           env={**aws_env, "WEBHOOK_KEY": "x" * 40, "FRONT_DOOR_URL": f"http://127.0.0.1:{port}/"},
                           timeout=120)
        assert r.returncode != 0 and "401" in r.stderr
    finally:
        local.terminate()
        local.wait(30)
