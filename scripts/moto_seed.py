"""A local moto server set up like a real account, for the demo and runs by hand.

    moto_seed.py ENDPOINT SENDER
        Seeds a moto server (waiting up to 30 s for it to answer): the groups the demo's rules name (developers,
        staff, sales), a verified SES sender, a strict account password policy and
        an account alias (the mail's sign-in URL is derived from it).

    moto_seed.py --serve PORT
        Runs moto on 127.0.0.1:PORT answering one request at a time (moto_server
        answers several at once). The function runs the steps of one stage
        concurrently and lists them in its audit line as they complete; answered
        one at a time, in the order the function sends them, they complete in the
        same order on every run, so the demo's output does not change from run to
        run. Stops on SIGTERM or Ctrl-C.
"""
import signal
import sys
import time
import urllib.request

import boto3


def serve(port):
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication, MotoRequestHandler, create_backend_app)
    from werkzeug.serving import run_simple

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    # threaded=False: one request at a time; werkzeug then speaks HTTP/1.0, so a
    # client's idle keep-alive connection never holds the server.
    run_simple("127.0.0.1", port, app, threaded=False, request_handler=MotoRequestHandler)


def wait_for(endpoint):
    for _ in range(300):
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1)
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"no moto server answers at {endpoint}")


def seed(endpoint, sender):
    wait_for(endpoint)
    kw = dict(endpoint_url=endpoint, region_name="us-east-1",
              aws_access_key_id="test", aws_secret_access_key="test")
    iam = boto3.client("iam", **kw)
    for group in ("developers", "staff", "sales"):
        iam.create_group(GroupName=group)
    iam.update_account_password_policy(
        MinimumPasswordLength=20, RequireSymbols=True, RequireNumbers=True,
        RequireUppercaseCharacters=True, RequireLowercaseCharacters=True)
    iam.create_account_alias(AccountAlias="acme-demo")
    # The stack creates the schedule group of effective dates; the function never does.
    boto3.client("scheduler", **kw).create_schedule_group(Name="hr-provisioner")
    boto3.client("sesv2", **kw).create_email_identity(EmailIdentity=sender)
    print(f"seeded {endpoint}: groups developers, staff, sales; sender {sender}; "
          "password policy; account alias acme-demo; schedule group hr-provisioner")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]))
    elif len(sys.argv) == 3:
        seed(sys.argv[1], sys.argv[2])
    else:
        sys.exit(__doc__)
