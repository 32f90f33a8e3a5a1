//! EventBridge Scheduler answers moto does not give, through `aws-smithy-mocks`
//! (real wire-format error bodies): a create that meets an existing schedule (a
//! crash after creating it, or a concurrent run) becomes an update only when the
//! schedule differs; deleting a schedule that already fired is fine; throttling
//! is retried.

use aws_config::retry::RetryConfig;
use aws_sdk_scheduler::operation::get_schedule::GetScheduleOutput;
use aws_sdk_scheduler::types::{SqsParameters, Target};
use aws_sdk_scheduler::Client;
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use aws_smithy_runtime_api::http::{Response, StatusCode};
use aws_smithy_types::body::SdkBody;
use hr_iam_provisioner::aws::scheduler::Scheduler;
use hr_iam_provisioner::aws::{Budget, ErrorKind};
use hr_iam_provisioner::schedule::{Kind, Spec};
use time::macros::datetime;
use tokio::time::{Duration, Instant};

fn error(status: u16, kind: &str) -> Response {
    let mut r = Response::new(
        StatusCode::try_from(status).unwrap(),
        SdkBody::from(format!(r#"{{"Message":"{kind} from the mock"}}"#)),
    );
    r.headers_mut().insert("x-amzn-errortype", kind.to_owned());
    r
}

fn spec() -> Spec {
    Spec {
        name: "hr-end-E1".into(),
        kind: Kind::End,
        due: datetime!(2027-04-01 00:00 UTC),
        input: r#"{"event_id":"end-1","event_type":"employee.left"}"#.into(),
        target_arn: "arn:aws:sqs:us-east-1:123456789012:hr.fifo".into(),
        role_arn: "arn:aws:iam::123456789012:role/hr-scheduler".into(),
        group_id: "E1".into(),
    }
}

fn stored(input: &str) -> GetScheduleOutput {
    let s = spec();
    GetScheduleOutput::builder()
        .name(&s.name)
        .schedule_expression(s.expression())
        .target(
            Target::builder()
                .arn(&s.target_arn)
                .role_arn(&s.role_arn)
                .input(input)
                .sqs_parameters(SqsParameters::builder().message_group_id("E1").build())
                .build()
                .unwrap(),
        )
        .build()
}

fn budget() -> Budget {
    Budget {
        base: Duration::from_millis(1),
        cap: Duration::from_millis(2),
        throttle_cap: Duration::from_millis(2),
        ..Budget::until(Instant::now() + Duration::from_secs(10))
    }
}

#[tokio::test]
async fn create_meeting_a_different_schedule_updates_it() {
    let create =
        mock!(Client::create_schedule).then_http_response(|| error(409, "ConflictException"));
    let get = mock!(Client::get_schedule).then_output(|| stored(r#"{"event_id":"older"}"#));
    let update = mock!(Client::update_schedule).then_output(|| {
        aws_sdk_scheduler::operation::update_schedule::UpdateScheduleOutput::builder()
            .schedule_arn("arn")
            .build()
            .unwrap()
    });
    let client = mock_client!(
        aws_sdk_scheduler,
        RuleMode::MatchAny,
        [&create, &get, &update],
        |c| c.retry_config(RetryConfig::disabled())
    );
    let s = Scheduler::new(client, "hr-provisioner".into());
    assert_eq!(
        s.create(&spec(), &budget()).await.unwrap(),
        "UpdateSchedule"
    );
    assert_eq!(
        (create.num_calls(), get.num_calls(), update.num_calls()),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn create_meeting_the_same_schedule_changes_nothing() {
    let create =
        mock!(Client::create_schedule).then_http_response(|| error(409, "ConflictException"));
    let get = mock!(Client::get_schedule).then_output(|| stored(&spec().input));
    let update =
        mock!(Client::update_schedule).then_http_response(|| error(500, "InternalServerException"));
    let client = mock_client!(
        aws_sdk_scheduler,
        RuleMode::MatchAny,
        [&create, &get, &update],
        |c| c.retry_config(RetryConfig::disabled())
    );
    let s = Scheduler::new(client, "hr-provisioner".into());
    assert_eq!(
        s.create(&spec(), &budget()).await.unwrap(),
        "CreateSchedule"
    );
    assert_eq!(update.num_calls(), 0, "an identical schedule is left alone");
}

#[tokio::test]
async fn deleting_a_schedule_that_fired_is_fine_and_throttling_is_retried() {
    let delete = mock!(Client::delete_schedule)
        .sequence()
        .http_response(|| error(400, "ThrottlingException"))
        .http_response(|| error(404, "ResourceNotFoundException"))
        .build();
    let get =
        mock!(Client::get_schedule).then_http_response(|| error(404, "ResourceNotFoundException"));
    let client = mock_client!(
        aws_sdk_scheduler,
        RuleMode::MatchAny,
        [&delete, &get],
        |c| c.retry_config(RetryConfig::disabled())
    );
    let s = Scheduler::new(client, "hr-provisioner".into());
    s.delete("hr-end-E1", &budget()).await.unwrap();
    assert_eq!(delete.num_calls(), 2, "throttled once, then gone");
    assert_eq!(s.get("hr-end-E1", &budget()).await.unwrap(), None);
}

#[tokio::test]
async fn a_missing_group_is_an_error_not_an_empty_answer() {
    // AWS answers ResourceNotFoundException for the group on CreateSchedule (moto
    // fails with a 500): the record fails, it does not pass as scheduled.
    let create = mock!(Client::create_schedule)
        .then_http_response(|| error(404, "ResourceNotFoundException"));
    let client = mock_client!(aws_sdk_scheduler, RuleMode::MatchAny, [&create], |c| c
        .retry_config(RetryConfig::disabled()));
    let s = Scheduler::new(client, "missing-group".into());
    let e = s.create(&spec(), &budget()).await.unwrap_err();
    assert_eq!((e.op, e.kind), ("CreateSchedule", ErrorKind::NotFound));
}
