//! hr-iam-provisioner: HR joiner and leaver events on SQS become IAM users whose
//! credentials live only in Secrets Manager.
//!
//! The flow of one record: [`event`] parses, [`aws::read`] reads what AWS holds,
//! [`plan`] (pure) decides the missing steps, [`apply`] makes them, [`audit`] logs
//! one line. [`batch`] runs the records of an invocation.

pub mod apply;
pub mod audit;
pub mod aws;
pub mod batch;
pub mod config;
pub mod dates;
pub mod event;
pub mod frontdoor;
pub mod lifecycle;
pub mod logging;
pub mod password;
pub mod plan;
pub mod review;
pub mod rules;
pub mod schedule;
pub mod service;
pub mod state;
pub mod wiring;
