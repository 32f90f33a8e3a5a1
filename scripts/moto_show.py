"""Prints what a local moto server holds for the given users: the user, groups,
tags, credentials by id, the secret's name and keys (never its values), and the
mails sent."""
import json
import sys
import urllib.request

import boto3

endpoint, users = sys.argv[1], sys.argv[2:]
kw = dict(endpoint_url=endpoint, region_name="us-east-1",
          aws_access_key_id="test", aws_secret_access_key="test")
iam = boto3.client("iam", **kw)
sm = boto3.client("secretsmanager", **kw)
for name in users:
    print(f"--- IAM user {name}")
    try:
        user = iam.get_user(UserName=name)["User"]
    except iam.exceptions.NoSuchEntityException:
        print("    (no such user)")
        continue
    print(f"    path:   {user['Path']}")
    for tag in sorted(user.get("Tags", []), key=lambda t: t["Key"]):
        print(f"    tag:    {tag['Key']} = {tag['Value']}")
    groups = [g["GroupName"] for g in iam.list_groups_for_user(UserName=name)["Groups"]]
    print(f"    groups: {', '.join(groups) or '(none)'}")
    print(f"    inline policies: {iam.list_user_policies(UserName=name)['PolicyNames'] or '(none)'}")
    try:
        iam.get_login_profile(UserName=name)
        print("    console login profile: yes")
    except iam.exceptions.NoSuchEntityException:
        print("    console login profile: no")
    keys = [k["AccessKeyId"] for k in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]]
    print(f"    access keys: {', '.join(keys) or '(none)'}")
    secret_name = f"hr-provisioner/{name}"
    try:
        desc = sm.describe_secret(SecretId=secret_name)
        state = f"scheduled for deletion on {desc['DeletedDate']}" if desc.get("DeletedDate") else "active"
        fields = []
        if not desc.get("DeletedDate"):
            fields = sorted(json.loads(sm.get_secret_value(SecretId=secret_name)["SecretString"]))
        print(f"    secret: {secret_name} ({state}); fields: {', '.join(fields)} (values not shown)")
    except sm.exceptions.ResourceNotFoundException:
        print(f"    secret: {secret_name} (none)")
with urllib.request.urlopen(f"{endpoint}/moto-api/data.json") as r:
    mails = json.load(r).get("ses", {}).get("Message", [])
print(f"--- mails sent: {len(mails)}")
for m in mails:
    print(f"    to {', '.join(m['destinations'].get('ToAddresses', []))} from {m['source']}: {m['subject']}")
    print(f"    body: {m['body'][:400]}")
