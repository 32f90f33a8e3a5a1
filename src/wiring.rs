//! Builds the AWS clients. Region and credentials come from the environment (as
//! Lambda sets them); `AWS_ENDPOINT_URL` points every client at a local emulator.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

use crate::apply::Services;
use crate::aws::iam::Iam;
use crate::aws::kms::Kms;
use crate::aws::mail::Mailer;
use crate::aws::pace::{paced, Pacer};
use crate::aws::queue::Queue;
use crate::aws::scheduler::Scheduler;
use crate::aws::secrets::Secrets;
use crate::aws::OnFirstUse;
use crate::config::Config;

/// The roots every AWS endpoint chains to (Amazon Trust Services, and Starfield
/// Services G2 which cross-signs them), compiled in: the SDK's default client reads
/// and parses every native root of the machine (~150 here) when its first connector
/// is built, which made most of the cold start.
const AWS_ROOTS_PEM: &str = r"-----BEGIN CERTIFICATE-----
MIIDQTCCAimgAwIBAgITBmyfz5m/jAo54vB4ikPmljZbyjANBgkqhkiG9w0BAQsF
ADA5MQswCQYDVQQGEwJVUzEPMA0GA1UEChMGQW1hem9uMRkwFwYDVQQDExBBbWF6
b24gUm9vdCBDQSAxMB4XDTE1MDUyNjAwMDAwMFoXDTM4MDExNzAwMDAwMFowOTEL
MAkGA1UEBhMCVVMxDzANBgNVBAoTBkFtYXpvbjEZMBcGA1UEAxMQQW1hem9uIFJv
b3QgQ0EgMTCCASIwDQYJKoZIhvcNAQEBBQADggEPADCCAQoCggEBALJ4gHHKeNXj
ca9HgFB0fW7Y14h29Jlo91ghYPl0hAEvrAIthtOgQ3pOsqTQNroBvo3bSMgHFzZM
9O6II8c+6zf1tRn4SWiw3te5djgdYZ6k/oI2peVKVuRF4fn9tBb6dNqcmzU5L/qw
IFAGbHrQgLKm+a/sRxmPUDgH3KKHOVj4utWp+UhnMJbulHheb4mjUcAwhmahRWa6
VOujw5H5SNz/0egwLX0tdHA114gk957EWW67c4cX8jJGKLhD+rcdqsq08p8kDi1L
93FcXmn/6pUCyziKrlA4b9v7LWIbxcceVOF34GfID5yHI9Y/QCB/IIDEgEw+OyQm
jgSubJrIqg0CAwEAAaNCMEAwDwYDVR0TAQH/BAUwAwEB/zAOBgNVHQ8BAf8EBAMC
AYYwHQYDVR0OBBYEFIQYzIU07LwMlJQuCFmcx7IQTgoIMA0GCSqGSIb3DQEBCwUA
A4IBAQCY8jdaQZChGsV2USggNiMOruYou6r4lK5IpDB/G/wkjUu0yKGX9rbxenDI
U5PMCCjjmCXPI6T53iHTfIUJrU6adTrCC2qJeHZERxhlbI1Bjjt/msv0tadQ1wUs
N+gDS63pYaACbvXy8MWy7Vu33PqUXHeeE6V/Uq2V8viTO96LXFvKWlJbYK8U90vv
o/ufQJVtMVT8QtPHRh8jrdkPSHCa2XV4cdFyQzR1bldZwgJcJmApzyMZFo6IQ6XU
5MsI+yMRQ+hDKXJioaldXgjUkK642M4UwtBV8ob2xJNDd2ZhwLnoQdeXeGADbkpy
rqXRfboQnoZsG4q5WTP468SQvvG5
-----END CERTIFICATE-----
-----BEGIN CERTIFICATE-----
MIIFQTCCAymgAwIBAgITBmyf0pY1hp8KD+WGePhbJruKNzANBgkqhkiG9w0BAQwF
ADA5MQswCQYDVQQGEwJVUzEPMA0GA1UEChMGQW1hem9uMRkwFwYDVQQDExBBbWF6
b24gUm9vdCBDQSAyMB4XDTE1MDUyNjAwMDAwMFoXDTQwMDUyNjAwMDAwMFowOTEL
MAkGA1UEBhMCVVMxDzANBgNVBAoTBkFtYXpvbjEZMBcGA1UEAxMQQW1hem9uIFJv
b3QgQ0EgMjCCAiIwDQYJKoZIhvcNAQEBBQADggIPADCCAgoCggIBAK2Wny2cSkxK
gXlRmeyKy2tgURO8TW0G/LAIjd0ZEGrHJgw12MBvIITplLGbhQPDW9tK6Mj4kHbZ
W0/jTOgGNk3Mmqw9DJArktQGGWCsN0R5hYGCrVo34A3MnaZMUnbqQ523BNFQ9lXg
1dKmSYXpN+nKfq5clU1Imj+uIFptiJXZNLhSGkOQsL9sBbm2eLfq0OQ6PBJTYv9K
8nu+NQWpEjTj82R0Yiw9AElaKP4yRLuH3WUnAnE72kr3H9rN9yFVkE8P7K6C4Z9r
2UXTu/Bfh+08LDmG2j/e7HJV63mjrdvdfLC6HM783k81ds8P+HgfajZRRidhW+me
z/CiVX18JYpvL7TFz4QuK/0NURBs+18bvBt+xa47mAExkv8LV/SasrlX6avvDXbR
8O70zoan4G7ptGmh32n2M8ZpLpcTnqWHsFcQgTfJU7O7f/aS0ZzQGPSSbtqDT6Zj
mUyl+17vIWR6IF9sZIUVyzfpYgwLKhbcAS4y2j5L9Z469hdAlO+ekQiG+r5jqFoz
7Mt0Q5X5bGlSNscpb/xVA1wf+5+9R+vnSUeVC06JIglJ4PVhHvG/LopyboBZ/1c6
+XUyo05f7O0oYtlNc/LMgRdg7c3r3NunysV+Ar3yVAhU/bQtCSwXVEqY0VThUWcI
0u1ufm8/0i2BWSlmy5A5lREedCf+3euvAgMBAAGjQjBAMA8GA1UdEwEB/wQFMAMB
Af8wDgYDVR0PAQH/BAQDAgGGMB0GA1UdDgQWBBSwDPBMMPQFWAJI/TPlUq9LhONm
UjANBgkqhkiG9w0BAQwFAAOCAgEAqqiAjw54o+Ci1M3m9Zh6O+oAA7CXDpO8Wqj2
LIxyh6mx/H9z/WNxeKWHWc8w4Q0QshNabYL1auaAn6AFC2jkR2vHat+2/XcycuUY
+gn0oJMsXdKMdYV2ZZAMA3m3MSNjrXiDCYZohMr/+c8mmpJ5581LxedhpxfL86kS
k5Nrp+gvU5LEYFiwzAJRGFuFjWJZY7attN6a+yb3ACfAXVU3dJnJUH/jWS5E4ywl
7uxMMne0nxrpS10gxdr9HIcWxkPo1LsmmkVwXqkLN1PiRnsn/eBG8om3zEK2yygm
btmlyTrIQRNg91CMFa6ybRoVGld45pIq2WWQgj9sAq+uEjonljYE1x2igGOpm/Hl
urR8FLBOybEfdF849lHqm/osohHUqS0nGkWxr7JOcQ3AWEbWaQbLU8uz/mtBzUF+
fUwPfHJ5elnNXkoOrJupmHN5fLT0zLm4BwyydFy4x2+IoZCn9Kr5v2c69BoVYh63
n749sSmvZ6ES8lgQGVMDMBu4Gon2nL2XA46jCfMdiyHxtN/kHNGfZQIG6lzWE7OE
76KlXIx3KadowGuuQNKotOrN8I1LOJwZmhsoVLiJkO/KdYE+HvJkJMcYr07/R54H
9jVlpNMKVv/1F2Rs76giJUmTtt8AF9pYfl3uxRuw0dFfIRDH+fO6AgonB8Xx1sfT
4PsJYGw=
-----END CERTIFICATE-----
-----BEGIN CERTIFICATE-----
MIIBtjCCAVugAwIBAgITBmyf1XSXNmY/Owua2eiedgPySjAKBggqhkjOPQQDAjA5
MQswCQYDVQQGEwJVUzEPMA0GA1UEChMGQW1hem9uMRkwFwYDVQQDExBBbWF6b24g
Um9vdCBDQSAzMB4XDTE1MDUyNjAwMDAwMFoXDTQwMDUyNjAwMDAwMFowOTELMAkG
A1UEBhMCVVMxDzANBgNVBAoTBkFtYXpvbjEZMBcGA1UEAxMQQW1hem9uIFJvb3Qg
Q0EgMzBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABCmXp8ZBf8ANm+gBG1bG8lKl
ui2yEujSLtf6ycXYqm0fc4E7O5hrOXwzpcVOho6AF2hiRVd9RFgdszflZwjrZt6j
QjBAMA8GA1UdEwEB/wQFMAMBAf8wDgYDVR0PAQH/BAQDAgGGMB0GA1UdDgQWBBSr
ttvXBp43rDCGB5Fwx5zEGbF4wDAKBggqhkjOPQQDAgNJADBGAiEA4IWSoxe3jfkr
BqWTrBqYaGFy+uGh0PsceGCmQ5nFuMQCIQCcAu/xlJyzlvnrxir4tiz+OpAUFteM
YyRIHN8wfdVoOw==
-----END CERTIFICATE-----
-----BEGIN CERTIFICATE-----
MIIB8jCCAXigAwIBAgITBmyf18G7EEwpQ+Vxe3ssyBrBDjAKBggqhkjOPQQDAzA5
MQswCQYDVQQGEwJVUzEPMA0GA1UEChMGQW1hem9uMRkwFwYDVQQDExBBbWF6b24g
Um9vdCBDQSA0MB4XDTE1MDUyNjAwMDAwMFoXDTQwMDUyNjAwMDAwMFowOTELMAkG
A1UEBhMCVVMxDzANBgNVBAoTBkFtYXpvbjEZMBcGA1UEAxMQQW1hem9uIFJvb3Qg
Q0EgNDB2MBAGByqGSM49AgEGBSuBBAAiA2IABNKrijdPo1MN/sGKe0uoe0ZLY7Bi
9i0b2whxIdIA6GO9mif78DluXeo9pcmBqqNbIJhFXRbb/egQbeOc4OO9X4Ri83Bk
M6DLJC9wuoihKqB1+IGuYgbEgds5bimwHvouXKNCMEAwDwYDVR0TAQH/BAUwAwEB
/zAOBgNVHQ8BAf8EBAMCAYYwHQYDVR0OBBYEFNPsxzplbszh2naaVvuc84ZtV+WB
MAoGCCqGSM49BAMDA2gAMGUCMDqLIfG9fhGt0O9Yli/W651+kI0rz2ZVwyzjKKlw
CkcO8DdZEv8tmZQoTipPNU0zWgIxAOp1AE47xDqUEpHJWEadIRNyp4iciuRMStuW
1KyLa2tJElMzrdfkviT8tQp21KW8EA==
-----END CERTIFICATE-----
-----BEGIN CERTIFICATE-----
MIID7zCCAtegAwIBAgIBADANBgkqhkiG9w0BAQsFADCBmDELMAkGA1UEBhMCVVMx
EDAOBgNVBAgTB0FyaXpvbmExEzARBgNVBAcTClNjb3R0c2RhbGUxJTAjBgNVBAoT
HFN0YXJmaWVsZCBUZWNobm9sb2dpZXMsIEluYy4xOzA5BgNVBAMTMlN0YXJmaWVs
ZCBTZXJ2aWNlcyBSb290IENlcnRpZmljYXRlIEF1dGhvcml0eSAtIEcyMB4XDTA5
MDkwMTAwMDAwMFoXDTM3MTIzMTIzNTk1OVowgZgxCzAJBgNVBAYTAlVTMRAwDgYD
VQQIEwdBcml6b25hMRMwEQYDVQQHEwpTY290dHNkYWxlMSUwIwYDVQQKExxTdGFy
ZmllbGQgVGVjaG5vbG9naWVzLCBJbmMuMTswOQYDVQQDEzJTdGFyZmllbGQgU2Vy
dmljZXMgUm9vdCBDZXJ0aWZpY2F0ZSBBdXRob3JpdHkgLSBHMjCCASIwDQYJKoZI
hvcNAQEBBQADggEPADCCAQoCggEBANUMOsQq+U7i9b4Zl1+OiFOxHz/Lz58gE20p
OsgPfTz3a3Y4Y9k2YKibXlwAgLIvWX/2h/klQ4bnaRtSmpDhcePYLQ1Ob/bISdm2
8xpWriu2dBTrz/sm4xq6HZYuajtYlIlHVv8loJNwU4PahHQUw2eeBGg6345AWh1K
Ts9DkTvnVtYAcMtS7nt9rjrnvDH5RfbCYM8TWQIrgMw0R9+53pBlbQLPLJGmpufe
hRhJfGZOozptqbXuNC66DQO4M99H67FrjSXZm86B0UVGMpZwh94CDklDhbZsc7tk
6mFBrMnUVN+HL8cisibMn1lUaJ/8viovxFUcdUBgF4UCVTmLfwUCAwEAAaNCMEAw
DwYDVR0TAQH/BAUwAwEB/zAOBgNVHQ8BAf8EBAMCAQYwHQYDVR0OBBYEFJxfAN+q
AdcwKziIorhtSpzyEZGDMA0GCSqGSIb3DQEBCwUAA4IBAQBLNqaEd2ndOxmfZyMI
bw5hyf2E3F/YNoHN2BtBLZ9g3ccaaNnRbobhiCPPE95Dz+I0swSdHynVv/heyNXB
ve6SbzJ08pGCL72CQnqtKrcgfU28elUSwhXqvfdqlS5sdJ/PHLTyxQGjhdByPq1z
qwubdQxtRbeOlKyWN7Wg0I8VRw7j6IPdj/3vQQF3zCepYoUz8jcI73HPdwbeyBkd
iEDPfUYd/x7H4c7/I9vG+o1VTqkC50cRRj70/b17KSa7qWFiNyi2LSr2EIZkyXCn
0q23KXB56jzaYyWf/Wi3MOxw+3WKt21gZ7IeyLnp2KhvAotnDU0mV3HaIPzBSlCN
sSi6
-----END CERTIFICATE-----
";

/// One HTTPS client shared by the three SDK clients (it also speaks plain http, for
/// an emulator's `AWS_ENDPOINT_URL`). `HR_NATIVE_ROOTS=1` trusts the machine's
/// native roots instead (e.g. behind a TLS-inspecting proxy).
pub fn http_client() -> SharedHttpClient {
    let native = std::env::var_os("HR_NATIVE_ROOTS").is_some_and(|v| v == "1");
    let store = if native {
        TrustStore::default()
    } else {
        TrustStore::empty().with_pem_certificate(AWS_ROOTS_PEM.as_bytes())
    };
    let ctx = TlsContext::builder()
        .with_trust_store(store)
        .build()
        .expect("the compiled-in root certificates are valid"); // ok: constant input, checked by every test run
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .tls_context(ctx)
        .build_https()
}

/// SDK retries are off: [`crate::aws::call`] is the one retry policy, so that its
/// budget is the whole budget. Pacing is ours too ([`crate::aws::pace`], in front
/// of each client's connector), so the connector waits for its slot before it sends:
/// a hung answer is caught by the read timeout (time to the answer's head), not an
/// attempt timeout that would also count the wait for the instance's turn.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client())
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .read_timeout(Duration::from_secs(10))
                .build(),
        )
        .load()
        .await
}

/// The pace floor of each service's client-side rate limiter, per instance:
/// `RATE_FLOOR_PER_SECOND` (calls per second the account can always give the
/// function, per service; default 10) divided by `MAX_INSTANCES` (the event source
/// mapping's MaximumConcurrency; default 1). Set both from the stack.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pacing {
    pub floor_per_instance: f64,
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing {
            floor_per_instance: DEFAULT_RATE_FLOOR,
        }
    }
}

pub const DEFAULT_RATE_FLOOR: f64 = 10.0;

impl Pacing {
    /// Reads the two variables; `Err` names the one that is invalid.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Pacing, String> {
        let floor = match var("RATE_FLOOR_PER_SECOND").as_deref() {
            None | Some("") => DEFAULT_RATE_FLOOR,
            Some(v) => match v.parse::<f64>() {
                Ok(f) if f.is_finite() && (0.1..=10_000.0).contains(&f) => f,
                _ => {
                    return Err(format!(
                        "RATE_FLOOR_PER_SECOND must be a number from 0.1 to 10000, got {v:?}"
                    ))
                }
            },
        };
        let instances = match var("MAX_INSTANCES").as_deref() {
            None | Some("") => 1,
            Some(v) => match v.parse::<u32>() {
                Ok(n) if (1..=1000).contains(&n) => n,
                _ => {
                    return Err(format!(
                        "MAX_INSTANCES must be a whole number from 1 to 1000, got {v:?}"
                    ))
                }
            },
        };
        Ok(Pacing {
            floor_per_instance: floor / f64::from(instances),
        })
    }
}

/// `emulator`: the endpoint is a local emulator, which may lack an API and does not
/// refuse a user name that differs from an existing one only in case.
pub fn services(sdk: &SdkConfig, config: &Config, emulator: bool) -> Services {
    services_with(sdk, config, emulator, emulator, Pacing::default())
}

/// As [`services`], choosing the case-clash check apart: `case_scan` lists the
/// account for a case-insensitive holder of every name GetUser does not find;
/// without it, CreateUser's own refusal (EntityAlreadyExists) is relied on. Each
/// client gets its own pacer (one per service, shared by every record).
pub fn services_with(
    sdk: &SdkConfig,
    config: &Config,
    emulator: bool,
    case_scan: bool,
    pacing: Pacing,
) -> Services {
    if emulator {
        // An emulator's code-less 500 means "not implemented" or a fault of its own
        // (tried a few times), not a front end's error page.
        crate::aws::set_emulator_endpoint();
    }
    let base = sdk.http_client().unwrap_or_else(http_client);
    let floor = pacing.floor_per_instance;
    let iam = aws_sdk_iam::config::Builder::from(sdk)
        .http_client(paced(base.clone(), Pacer::new("iam", floor)))
        .build();
    let sm = aws_sdk_secretsmanager::config::Builder::from(sdk)
        .http_client(paced(base.clone(), Pacer::new("secretsmanager", floor)))
        .build();
    let ses = aws_sdk_sesv2::config::Builder::from(sdk)
        .http_client(paced(base.clone(), Pacer::new("sesv2", floor)))
        .build();
    // Called at most once per customer alias and container: no pacer, and built
    // only then.
    let kms = {
        let (sdk, base) = (sdk.clone(), base.clone());
        OnFirstUse::later(move || {
            let conf = aws_sdk_kms::config::Builder::from(&sdk)
                .http_client(base.clone())
                .build();
            aws_sdk_kms::Client::from_conf(conf)
        })
    };
    // Effective dates need the scheduler only where schedules can be made.
    let scheduler = config.schedule.target().map(|_| {
        let conf = aws_sdk_scheduler::config::Builder::from(sdk)
            .http_client(paced(base, Pacer::new("scheduler", floor)))
            .build();
        Scheduler::new(
            aws_sdk_scheduler::Client::from_conf(conf),
            config.schedule.group.clone(),
        )
    });
    Services {
        iam: Iam::new(aws_sdk_iam::Client::from_conf(iam), emulator).with_case_scan(case_scan),
        secrets: Secrets::new(
            aws_sdk_secretsmanager::Client::from_conf(sm),
            config.kms_key_id.clone(),
        ),
        mailer: Mailer::new(
            aws_sdk_sesv2::Client::from_conf(ses),
            config.sender_email.clone(),
        ),
        kms: Kms::on_first_use(kms),
        scheduler,
    }
}

/// The provisioner's services, and the HR queue's client (it releases records
/// handed back untouched: src/aws/queue.rs).
pub async fn provisioner_services_from_env(config: &Config) -> (Services, Queue) {
    let sdk = sdk_config().await;
    let services = services_from(&sdk, config);
    let queue = Queue::on_first_use(OnFirstUse::later(move || {
        let conf = aws_sdk_sqs::config::Builder::from(&sdk)
            .http_client(sdk.http_client().unwrap_or_else(http_client))
            .build();
        aws_sdk_sqs::Client::from_conf(conf)
    }));
    (services, queue)
}

pub async fn services_from_env(config: &Config) -> Services {
    services_from(&sdk_config().await, config)
}

fn services_from(sdk: &SdkConfig, config: &Config) -> Services {
    // Only an emulator endpoint may lack an API; real AWS never does.
    let emulator = std::env::var_os("AWS_ENDPOINT_URL").is_some()
        || std::env::var_os("AWS_ENDPOINT_URL_IAM").is_some();
    let case_scan = case_scan_from(std::env::var("HR_IAM_CASE_CHECK").ok().as_deref(), emulator);
    let pacing = match Pacing::from_env(|k| std::env::var(k).ok()) {
        Ok(p) => p,
        Err(e) => {
            // As for every other setting: one clear message, and never half-run.
            tracing::error!("{e}");
            std::process::exit(2);
        }
    };
    services_with(sdk, config, emulator, case_scan, pacing)
}

/// `HR_IAM_CASE_CHECK` (tests and benches only): `scan` lists the account before
/// creating a user, `create` relies on CreateUser's refusal. Unset: `scan` against
/// an emulator endpoint, `create` against AWS. Anything else: the default, with a
/// warning.
pub fn case_scan_from(value: Option<&str>, emulator: bool) -> bool {
    match value {
        None | Some("") => emulator,
        Some("scan") => true,
        Some("create") => false,
        Some(other) => {
            tracing::warn!(
                value = other,
                "HR_IAM_CASE_CHECK is neither `scan` nor `create`; using the default"
            );
            emulator
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{case_scan_from, Pacing};

    #[test]
    fn pacing_floor_is_the_account_floor_shared_by_the_instances() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert_eq!(Pacing::from_env(env(&[])).unwrap().floor_per_instance, 10.0);
        assert_eq!(
            Pacing::from_env(env(&[("MAX_INSTANCES", "20")]))
                .unwrap()
                .floor_per_instance,
            0.5
        );
        assert_eq!(
            Pacing::from_env(env(&[
                ("RATE_FLOOR_PER_SECOND", "50"),
                ("MAX_INSTANCES", "5")
            ]))
            .unwrap()
            .floor_per_instance,
            10.0
        );
        assert!(Pacing::from_env(env(&[("MAX_INSTANCES", "0")]))
            .unwrap_err()
            .contains("MAX_INSTANCES"));
        assert!(Pacing::from_env(env(&[("RATE_FLOOR_PER_SECOND", "fast")]))
            .unwrap_err()
            .contains("RATE_FLOOR_PER_SECOND"));
    }

    #[test]
    fn case_scan_defaults_to_emulators_only() {
        assert!(case_scan_from(None, true));
        assert!(!case_scan_from(None, false));
        assert!(!case_scan_from(Some("create"), true));
        assert!(case_scan_from(Some("scan"), false));
        assert!(!case_scan_from(Some("bogus"), false));
    }
}
