"""Seeds a local moto server like a real account: groups the rules name, a
verified SES sender and a strict account password policy."""
import sys

import boto3

endpoint, sender = sys.argv[1], sys.argv[2]
kw = dict(endpoint_url=endpoint, region_name="us-east-1",
          aws_access_key_id="test", aws_secret_access_key="test")
iam = boto3.client("iam", **kw)
for group in ("developers", "staff", "sales"):
    iam.create_group(GroupName=group)
iam.update_account_password_policy(
    MinimumPasswordLength=20, RequireSymbols=True, RequireNumbers=True,
    RequireUppercaseCharacters=True, RequireLowercaseCharacters=True)
iam.create_account_alias(AccountAlias="acme-demo")
boto3.client("sesv2", **kw).create_email_identity(EmailIdentity=sender)
print(f"seeded {endpoint}: groups developers, staff, sales; sender {sender}; password policy; account alias acme-demo")
