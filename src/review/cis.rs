//! The baseline: the CIS AWS Foundations Benchmark's IAM user controls that the
//! audit checks, with the AWS Security Hub control that checks the same thing.
//!
//! Numbers are those of CIS AWS Foundations Benchmark v7.0.0 (section 2,
//! Identity and Access Management) where that version has the control. v7.0.0
//! dropped "one active access key", so that one carries its v6.0.0 number.

use serde::Serialize;

use super::model::{Report, UserRow};

/// One benchmark control.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct Control {
    /// The CIS recommendation number, e.g. `2.11`.
    pub cis: &'static str,
    /// Security Hub controls that check the same (empty: none does).
    pub security_hub: &'static [&'static str],
    pub title: &'static str,
}

pub const CIS_MFA: Control = Control {
    cis: "2.9",
    security_hub: &["IAM.5"],
    title: "MFA is enabled for all IAM users that have a console password",
};
pub const CIS_UNUSED: Control = Control {
    cis: "2.11",
    security_hub: &["IAM.22", "IAM.8"],
    title: "Credentials unused for 45 days or more are disabled",
};
pub const CIS_ONE_KEY: Control = Control {
    cis: "2.12 (v6.0.0)",
    security_hub: &[],
    title: "Only one active access key for any single IAM user",
};
pub const CIS_KEY_ROTATION: Control = Control {
    cis: "2.12",
    security_hub: &["IAM.3"],
    title: "Access keys are rotated every 90 days or less",
};
pub const CIS_GROUPS_ONLY: Control = Control {
    cis: "2.13",
    security_hub: &["IAM.2"],
    title: "IAM users receive permissions only through groups",
};
pub const CIS_FULL_ADMIN: Control = Control {
    cis: "2.14",
    security_hub: &["IAM.1"],
    title: "IAM policies that allow full \"*:*\" administrative privileges are not attached",
};

/// Every control of the baseline, in benchmark order.
pub const BASELINE: [&Control; 6] = [
    &CIS_MFA,
    &CIS_UNUSED,
    &CIS_ONE_KEY,
    &CIS_KEY_ROTATION,
    &CIS_GROUPS_ONLY,
    &CIS_FULL_ADMIN,
];

impl Control {
    /// `CIS 2.11`, then the Security Hub ids: how a finding names it.
    pub fn ids(&self) -> Vec<String> {
        std::iter::once(format!("CIS {}", self.cis))
            .chain(self.security_hub.iter().map(|s| (*s).to_owned()))
            .collect()
    }
}

/// One line of the baseline summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ControlRow {
    pub control: String,
    pub security_hub: Vec<String>,
    pub title: String,
    pub users_passing: usize,
    pub users_failing: usize,
    /// The failing users, sorted.
    pub failing: Vec<String>,
}

fn fails(u: &UserRow, c: &Control) -> bool {
    u.findings.iter().any(|code| code.controls().contains(&c))
}

/// Every managed user counted once per control: failing when one of its
/// findings maps to the control, else passing.
pub fn baseline(report: &Report) -> Vec<ControlRow> {
    BASELINE
        .iter()
        .map(|c| {
            let failing: Vec<String> = report
                .users
                .iter()
                .filter(|u| fails(u, c))
                .map(|u| u.user_name.clone())
                .collect();
            ControlRow {
                control: format!("CIS {}", c.cis),
                security_hub: c.security_hub.iter().map(|s| (*s).to_owned()).collect(),
                title: c.title.to_owned(),
                users_passing: report.users.len() - failing.len(),
                users_failing: failing.len(),
                failing,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::review::model::Code;

    #[test]
    fn every_baseline_control_has_a_finding_and_ids_read_well() {
        for c in BASELINE {
            assert!(
                Code::ALL.iter().any(|code| code.controls().contains(&c)),
                "no finding maps to CIS {}",
                c.cis
            );
        }
        assert_eq!(CIS_UNUSED.ids(), ["CIS 2.11", "IAM.22", "IAM.8"]);
        assert_eq!(Code::KeyAge.controls(), [&CIS_KEY_ROTATION]);
        assert!(Code::OrphanSecret.controls().is_empty());
    }

    #[test]
    fn the_baseline_counts_each_user_once_per_control() {
        let mut r = Report::default();
        for (name, codes) in [
            ("a", vec![Code::NoMfa, Code::UnusedCredential]),
            ("b", vec![Code::NoMfa]),
            ("c", vec![Code::ExtraGrant]),
        ] {
            r.users.push(UserRow {
                user_name: name.into(),
                findings: codes,
                ..UserRow::default()
            });
        }
        let b = baseline(&r);
        assert_eq!(b.len(), BASELINE.len());
        let mfa = &b[0];
        assert_eq!(mfa.control, "CIS 2.9");
        assert_eq!((mfa.users_passing, mfa.users_failing), (1, 2));
        assert_eq!(mfa.failing, ["a", "b"]);
        let unused = &b[1];
        assert_eq!((unused.users_passing, unused.users_failing), (2, 1));
        assert_eq!(unused.security_hub, ["IAM.22", "IAM.8"]);
        assert!(b[5].failing.is_empty() && b[5].users_passing == 3);
    }
}
