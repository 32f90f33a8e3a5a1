//! EventBridge Scheduler adapter: the employee's one-time schedules in
//! `SCHEDULE_GROUP` (contract section 9).

use aws_sdk_scheduler::types::{
    ActionAfterCompletion, FlexibleTimeWindow, FlexibleTimeWindowMode, SqsParameters, Target,
};
use aws_sdk_scheduler::Client;

use super::{call, classify, AwsError, Budget, ErrorKind, Retry};
use crate::schedule::{Pending, Spec};

#[derive(Clone)]
pub struct Scheduler {
    client: Client,
    group: String,
}

macro_rules! op {
    ($budget:expr, $name:literal, $req:expr) => {
        call($budget, Retry::Safe, || async {
            $req.send().await.map_err(|e| classify($name, e))
        })
    };
}

fn build_err(op: &'static str) -> AwsError {
    AwsError::new(op, ErrorKind::Fatal, "request could not be built")
}

impl Scheduler {
    pub fn new(client: Client, group: String) -> Self {
        Scheduler { client, group }
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    /// The schedule under `name`, or `None`.
    pub async fn get(&self, name: &str, b: &Budget) -> Result<Option<Pending>, AwsError> {
        let out = match op!(
            b,
            "GetSchedule",
            self.client
                .get_schedule()
                .group_name(&self.group)
                .name(name)
        )
        .await
        {
            Ok(out) => out,
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let target = out.target();
        Ok(Some(Pending {
            name: name.to_owned(),
            expression: out.schedule_expression().unwrap_or_default().to_owned(),
            input: target
                .and_then(|t| t.input())
                .unwrap_or_default()
                .to_owned(),
            target_arn: target.map(|t| t.arn().to_owned()).unwrap_or_default(),
            role_arn: target.map(|t| t.role_arn().to_owned()).unwrap_or_default(),
            group_id: target
                .and_then(|t| t.sqs_parameters())
                .and_then(|p| p.message_group_id())
                .map(str::to_owned),
        }))
    }

    fn target(spec: &Spec) -> Result<Target, AwsError> {
        Target::builder()
            .arn(&spec.target_arn)
            .role_arn(&spec.role_arn)
            .input(&spec.input)
            .sqs_parameters(
                SqsParameters::builder()
                    .message_group_id(&spec.group_id)
                    .build(),
            )
            .build()
            .map_err(|_| build_err("CreateSchedule"))
    }

    fn window() -> Result<FlexibleTimeWindow, AwsError> {
        FlexibleTimeWindow::builder()
            .mode(FlexibleTimeWindowMode::Off)
            .build()
            .map_err(|_| build_err("CreateSchedule"))
    }

    /// Creates the schedule; one that exists under the name (a crash after
    /// creating it, or a concurrent run) is updated when it differs.
    pub async fn create(&self, spec: &Spec, b: &Budget) -> Result<&'static str, AwsError> {
        let (target, window) = (Self::target(spec)?, Self::window()?);
        let made = op!(
            b,
            "CreateSchedule",
            self.client
                .create_schedule()
                .group_name(&self.group)
                .name(&spec.name)
                .schedule_expression(spec.expression())
                .schedule_expression_timezone("UTC")
                .flexible_time_window(window.clone())
                .target(target.clone())
                .action_after_completion(ActionAfterCompletion::Delete)
        )
        .await;
        match made {
            Ok(_) => Ok("CreateSchedule"),
            Err(e) if e.code.as_deref() == Some("ConflictException") => {
                match self.get(&spec.name, b).await? {
                    Some(p) if spec.matches(&p) => Ok("CreateSchedule"),
                    _ => self.update(spec, b).await.map(|()| "UpdateSchedule"),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Replaces the schedule whole (UpdateSchedule takes every field).
    pub async fn update(&self, spec: &Spec, b: &Budget) -> Result<(), AwsError> {
        let (target, window) = (Self::target(spec)?, Self::window()?);
        op!(
            b,
            "UpdateSchedule",
            self.client
                .update_schedule()
                .group_name(&self.group)
                .name(&spec.name)
                .schedule_expression(spec.expression())
                .schedule_expression_timezone("UTC")
                .flexible_time_window(window.clone())
                .target(target.clone())
                .action_after_completion(ActionAfterCompletion::Delete)
        )
        .await
        .map(|_| ())
    }

    /// Deletes the schedule; one already gone (fired, or deleted by an earlier
    /// run) is fine.
    pub async fn delete(&self, name: &str, b: &Budget) -> Result<(), AwsError> {
        match op!(
            b,
            "DeleteSchedule",
            self.client
                .delete_schedule()
                .group_name(&self.group)
                .name(name)
        )
        .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Names of the schedules in the group whose name starts with `prefix`.
    pub async fn list(&self, prefix: &str, b: &Budget) -> Result<Vec<String>, AwsError> {
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = op!(
                b,
                "ListSchedules",
                self.client
                    .list_schedules()
                    .group_name(&self.group)
                    .name_prefix(prefix)
                    .set_next_token(token.clone())
            )
            .await?;
            names.extend(
                out.schedules()
                    .iter()
                    .filter_map(|s| s.name())
                    .filter(|n| n.starts_with(prefix))
                    .map(str::to_owned),
            );
            token = out.next_token().map(str::to_owned);
            if token.is_none() {
                return Ok(names);
            }
        }
    }
}
