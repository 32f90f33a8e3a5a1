//! Planner tests: tables over fresh, half-done and finished users, and a small
//! simulated IAM + Secrets Manager on which every crash point is replayed.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::event::parse_body;
use crate::rules::Rules;

const URL: &str = "https://123456789012.signin.aws.amazon.com/console";

fn config(leaver: LeaverAction) -> Config {
    let mut c = Config::from_env(|k| match k {
        "SENDER_EMAIL" => Some("it@example.com".into()),
        "PERMISSIONS_BOUNDARY_ARN" => Some("arn:aws:iam::123456789012:policy/boundary".into()),
        _ => None,
    })
    .unwrap();
    c.rules = Rules::parse(
        r#"{"default":{"groups":["staff"],"console":true},
            "departments":{"engineering":{"groups":["developers","staff"],"console":true,"access_key":true},
                           "robots":{"groups":[],"console":false,"access_key":true}}}"#,
    )
    .unwrap();
    c.leaver_action = leaver;
    c
}

fn event(kind: &str, id: &str, at: &str, dept: &str) -> HrEvent {
    parse_body(&format!(
        r#"{{"event_id":"{id}","event_type":"employee.{kind}","occurred_at":"{at}",
            "employee":{{"employee_id":"E1","email":"jane.doe@example.com","department":"{dept}"}}}}"#
    ))
    .unwrap()
}

fn joined(id: &str, at: &str) -> HrEvent {
    event("joined", id, at, "engineering")
}
fn left(id: &str, at: &str) -> HrEvent {
    event("left", id, at, "engineering")
}

/// A tiny model of what AWS holds, with passwords and keys as numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct World {
    user: Option<UserInfo>,
    groups: BTreeSet<String>,
    policies: BTreeSet<String>,
    inline: BTreeSet<String>,
    profile: Option<u32>,
    keys: Vec<String>,
    mfa: Vec<String>,
    ssh: Vec<String>,
    virtual_devices: BTreeSet<String>,
    secret: Option<SimSecret>,
    mails: u32,
    next: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct SimSecret {
    scheduled: bool,
    password: Option<u32>,
    key: Option<String>,
    pending: bool,
    user_name: String,
}

impl World {
    fn state(&self) -> UserState {
        let Some(u) = &self.user else {
            return UserState::absent();
        };
        UserState {
            lookup: Lookup::Found(u.clone()),
            attachments: Attachments {
                groups: self.groups.clone(),
                attached_policies: self.policies.clone(),
                inline_policies: self.inline.clone(),
                login_profile: self.profile.is_some(),
                access_keys: self.keys.clone(),
                mfa_devices: self.mfa.clone(),
                ssh_keys: self.ssh.clone(),
                // What the reader finds among unassigned virtual devices.
                orphan_virtual_mfa: self
                    .virtual_devices
                    .iter()
                    .filter(|d| !self.mfa.contains(d))
                    .cloned()
                    .collect(),
                ..Attachments::default()
            },
            secret: match &self.secret {
                None => SecretState::Absent,
                Some(s) if s.scheduled => SecretState::Scheduled,
                Some(s) => SecretState::Present(SecretView {
                    readable: true,
                    user_name: Some(s.user_name.clone()),
                    signin_url: Some(URL.into()),
                    has_password: s.password.is_some(),
                    password_pending: s.pending,
                    access_key_id: s.key.clone(),
                    has_secret_key: s.key.is_some(),
                }),
            },
        }
    }

    /// Applies one step as AWS would. `fresh_pw` / `fresh_key` hold what this run
    /// generated, like the applier's vault.
    fn apply(&mut self, step: &Step, run: &mut RunVault) {
        match step {
            Step::CreateUser { tags, .. } => {
                assert!(self.user.is_none(), "CreateUser on an existing user");
                self.user = Some(UserInfo {
                    name: "jane.doe".into(),
                    path: "/employees/".into(),
                    tags: tags.iter().cloned().collect(),
                    boundary_arn: None,
                });
            }
            Step::TagUser { tags } => {
                let u = self.user.as_mut().unwrap();
                for (k, v) in tags {
                    u.tags.insert(k.clone(), v.clone());
                }
            }
            Step::PutBoundary { arn } => {
                self.user.as_mut().unwrap().boundary_arn = Some(arn.clone())
            }
            Step::PutDenyAll => {
                self.inline.insert(DENY_ALL_POLICY.into());
            }
            Step::DeleteInlinePolicy { name } => assert!(self.inline.remove(name)),
            Step::AddToGroup { group } => {
                self.groups.insert(group.clone());
            }
            Step::RemoveFromGroup { group } => assert!(self.groups.remove(group)),
            Step::AttachPolicy { arn } => {
                self.policies.insert(arn.clone());
            }
            Step::DetachPolicy { arn } => assert!(self.policies.remove(arn)),
            Step::DeleteAccessKey { id } => {
                let before = self.keys.len();
                self.keys.retain(|k| k != id);
                assert_eq!(self.keys.len() + 1, before, "no such key");
            }
            Step::CreateAccessKey => {
                assert!(self.keys.len() < 2, "LimitExceeded: two keys already");
                self.next += 1;
                let id = format!("AKIA{}", self.next);
                self.keys.push(id.clone());
                run.key = Some(id);
            }
            Step::WriteSecret(w) => {
                match (w.how, &mut self.secret) {
                    (SecretHow::Create, Some(_)) => panic!("CreateSecret on an existing secret"),
                    (SecretHow::Put, None) => panic!("PutSecretValue on no secret"),
                    (SecretHow::Put, Some(s)) if s.scheduled => panic!("Put on a scheduled secret"),
                    _ => {}
                }
                let old = self.secret.clone().unwrap_or_default();
                let password = match w.password {
                    Cred::Keep => old.password,
                    Cred::Drop => None,
                    Cred::New => {
                        self.next += 1;
                        run.password = Some(self.next);
                        Some(self.next)
                    }
                };
                let key = match w.key {
                    Cred::Keep => old.key.clone(),
                    Cred::Drop => None,
                    Cred::New => Some(run.key.clone().expect("key created in this run")),
                };
                self.secret = Some(SimSecret {
                    scheduled: false,
                    password,
                    key,
                    pending: w.password_pending,
                    user_name: "jane.doe".into(),
                });
            }
            Step::CreateLoginProfile => {
                assert!(self.profile.is_none(), "EntityAlreadyExists: login profile");
                self.profile = Some(self.secret.as_ref().unwrap().password.unwrap());
            }
            Step::UpdateLoginProfile => {
                assert!(self.profile.is_some());
                self.profile = Some(self.secret.as_ref().unwrap().password.unwrap());
            }
            Step::DeleteLoginProfile => {
                assert!(self.profile.is_some());
                self.profile = None;
            }
            Step::DeactivateMfa { serial } => self.mfa.retain(|s| s != serial),
            Step::DeleteVirtualMfa { serial } => {
                assert!(!self.mfa.contains(serial), "DeleteConflict: still assigned");
                assert!(self.virtual_devices.remove(serial));
            }
            Step::DeleteSshKey { id } => self.ssh.retain(|s| s != id),
            Step::DeleteSigningCert { .. } | Step::DeleteServiceCredential { .. } => {}
            Step::ScheduleSecretDeletion { .. } => self.secret.as_mut().unwrap().scheduled = true,
            Step::SendWelcome => self.mails += 1,
            Step::DeleteUser => {
                assert!(
                    self.groups.is_empty() && self.policies.is_empty() && self.inline.is_empty()
                );
                assert!(self.profile.is_none() && self.keys.is_empty() && self.mfa.is_empty());
                self.user = None;
            }
        }
    }

    /// What a redelivery sees after a crash: SecretHow::Restore must come first.
    fn restore_if(&mut self, step: &Step) {
        if let Step::WriteSecret(w) = step {
            if matches!(w.how, SecretHow::Restore | SecretHow::CreateOrReplace) {
                if let Some(s) = &mut self.secret {
                    s.scheduled = false;
                }
            }
        }
    }

    /// Runs `ev` to the end, or stops after `crash_after` steps. Returns the verdict.
    fn run(&mut self, ev: &HrEvent, cfg: &Config, crash_after: Option<usize>) -> Verdict {
        let rule = cfg.rules.for_department(ev.employee.department.as_deref());
        let cx = Context {
            config: cfg,
            rule,
            signin_url: URL,
        };
        let verdict = plan(ev, &cx, &self.state());
        if let Verdict::Apply(p) = &verdict {
            let mut vault = RunVault::default();
            for (i, step) in p.steps().enumerate() {
                if crash_after == Some(i) {
                    break;
                }
                self.restore_if(step);
                self.apply(step, &mut vault);
            }
        }
        verdict
    }

    fn check_joined(&self, rule_key: bool) {
        let u = self.user.as_ref().expect("user exists");
        assert_eq!(u.tag(TAG_STATUS), Some(STATUS_ACTIVE));
        assert!(self.inline.is_empty());
        let s = self.secret.as_ref().expect("secret exists");
        assert!(!s.scheduled && !s.pending);
        // The live password is the stored one.
        assert_eq!(self.profile, s.password);
        assert!(self.profile.is_some());
        // Every key the user has is the stored one, and vice versa.
        let stored: Vec<String> = s.key.iter().cloned().collect();
        assert_eq!(self.keys, stored);
        assert_eq!(self.keys.len(), usize::from(rule_key));
        assert_eq!(
            self.groups,
            ["developers", "staff"].map(String::from).into()
        );
    }

    fn check_retired(&self, cfg: &Config) {
        match cfg.leaver_action {
            LeaverAction::Delete => assert!(self.user.is_none()),
            LeaverAction::Disable => {
                let u = self.user.as_ref().unwrap();
                assert_eq!(u.tag(TAG_STATUS), Some(STATUS_RETIRED));
                assert_eq!(self.inline, [DENY_ALL_POLICY.to_owned()].into());
            }
        }
        assert!(self.groups.is_empty() && self.policies.is_empty());
        assert!(self.profile.is_none() && self.keys.is_empty() && self.mfa.is_empty());
        assert!(self.ssh.is_empty() && self.virtual_devices.is_empty());
        let s = self.secret.as_ref().unwrap();
        assert!(s.scheduled && s.password.is_none() && s.key.is_none());
    }
}

#[derive(Default)]
struct RunVault {
    password: Option<u32>,
    key: Option<String>,
}

fn steps(v: &Verdict) -> Vec<String> {
    match v {
        Verdict::Apply(p) => p.action_names(),
        other => panic!("expected a plan, got {other:?}"),
    }
}

fn found(tags: &[(&str, &str)], path: &str, name: &str) -> UserState {
    UserState {
        lookup: Lookup::Found(UserInfo {
            name: name.into(),
            path: path.into(),
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect::<BTreeMap<_, _>>(),
            boundary_arn: None,
        }),
        attachments: Attachments::default(),
        secret: SecretState::Absent,
    }
}

fn verdict(ev: &HrEvent, cfg: &Config, state: &UserState) -> Verdict {
    let rule = cfg.rules.for_department(ev.employee.department.as_deref());
    plan(
        ev,
        &Context {
            config: cfg,
            rule,
            signin_url: URL,
        },
        state,
    )
}

const T1: &str = "2026-11-22T09:00:00Z";
const T2: &str = "2026-11-23T09:00:00Z";
const T3: &str = "2026-11-24T09:00:00Z";

#[test]
fn fresh_joiner_plan_is_minimal_and_ordered() {
    let cfg = config(LeaverAction::Disable);
    let v = verdict(&joined("j1", T1), &cfg, &UserState::absent());
    let Verdict::Apply(p) = &v else {
        panic!("{v:?}")
    };
    let names: Vec<Vec<String>> = p
        .stages
        .iter()
        .map(|s| s.iter().map(ToString::to_string).collect())
        .collect();
    assert_eq!(
        names,
        vec![
            vec!["CreateUser".to_owned()],
            vec![
                "AddUserToGroup:developers".to_owned(),
                "AddUserToGroup:staff".to_owned(),
                "CreateAccessKey".to_owned()
            ],
            vec!["CreateSecret".to_owned()],
            vec!["CreateLoginProfile".to_owned()],
            vec!["SendEmail".to_owned()],
            vec!["TagUser".to_owned()],
        ]
    );
    let Step::CreateUser { tags, boundary_arn } = &p.stages[0][0] else {
        panic!()
    };
    assert_eq!(
        boundary_arn.as_deref(),
        Some("arn:aws:iam::123456789012:policy/boundary")
    );
    let tags: BTreeMap<_, _> = tags.iter().cloned().collect();
    for (k, v) in [
        (TAG_EMPLOYEE_ID, "E1"),
        (TAG_MANAGED_BY, MANAGED_BY),
        (TAG_STATUS, STATUS_ACTIVE),
        (TAG_LAST_EVENT_AT, T1),
        (TAG_LAST_EVENT_ID, "j1"),
        ("hr:department", "engineering"),
        ("hr:email", "jane.doe@example.com"),
    ] {
        assert_eq!(tags.get(k).map(String::as_str), Some(v), "{k}");
    }
}

#[test]
fn console_only_and_key_only_rules() {
    let cfg = config(LeaverAction::Disable);
    let sales = event("joined", "j", T1, "sales");
    assert_eq!(
        steps(&verdict(&sales, &cfg, &UserState::absent())),
        [
            "CreateUser",
            "AddUserToGroup:staff",
            "CreateSecret",
            "CreateLoginProfile",
            "SendEmail",
            "TagUser"
        ]
    );
    let robot = event("joined", "j", T1, "robots");
    assert_eq!(
        steps(&verdict(&robot, &cfg, &UserState::absent())),
        [
            "CreateUser",
            "CreateAccessKey",
            "CreateSecret",
            "SendEmail",
            "TagUser"
        ]
    );
}

#[test]
fn guards_reject_users_that_are_not_ours() {
    let cfg = config(LeaverAction::Disable);
    let ours = [(TAG_MANAGED_BY, MANAGED_BY), (TAG_EMPLOYEE_ID, "E1")];
    let cases = [
        (
            "unmanaged",
            found(&[(TAG_EMPLOYEE_ID, "E1")], "/employees/", "jane.doe"),
            "not tagged",
        ),
        (
            "other employee",
            found(
                &[(TAG_MANAGED_BY, MANAGED_BY), (TAG_EMPLOYEE_ID, "E2")],
                "/employees/",
                "jane.doe",
            ),
            "belongs to employee E2",
        ),
        (
            "outside path",
            found(&ours, "/admins/", "jane.doe"),
            "outside USER_PATH",
        ),
        (
            "no employee tag",
            found(&[(TAG_MANAGED_BY, MANAGED_BY)], "/employees/", "jane.doe"),
            "no hr:employee-id",
        ),
        (
            "case clash found",
            found(&ours, "/employees/", "Jane.Doe"),
            "case-insensitively",
        ),
    ];
    for ev in [joined("j", T1), left("l", T1)] {
        for (what, state, want) in &cases {
            match verdict(&ev, &cfg, state) {
                Verdict::Rejected(why) => assert!(why.contains(want), "{what}: {why}"),
                other => panic!("{what}: {other:?}"),
            }
        }
        let clash = UserState {
            lookup: Lookup::Clash {
                existing: "Jane.Doe".into(),
            },
            ..UserState::absent()
        };
        assert!(
            matches!(verdict(&ev, &cfg, &clash), Verdict::Rejected(w) if w.contains("Jane.Doe"))
        );
    }
}

#[test]
fn leaver_for_missing_user_is_unchanged() {
    let cfg = config(LeaverAction::Disable);
    assert!(matches!(
        verdict(&left("l", T1), &cfg, &UserState::absent()),
        Verdict::Unchanged(_)
    ));
}

#[test]
fn duplicate_joiner_is_unchanged_and_stale_events_change_nothing() {
    let cfg = config(LeaverAction::Disable);
    let mut w = World::default();
    assert!(matches!(
        w.run(&joined("j1", T2), &cfg, None),
        Verdict::Apply(_)
    ));
    w.check_joined(true);
    let after = w.clone();
    assert!(matches!(
        w.run(&joined("j1", T2), &cfg, None),
        Verdict::Unchanged(_)
    ));
    assert!(matches!(
        w.run(&joined("j0", T1), &cfg, None),
        Verdict::Stale(_)
    ));
    assert!(matches!(
        w.run(&left("l0", T1), &cfg, None),
        Verdict::Stale(_)
    ));
    assert_eq!(w, after);
    assert_eq!(w.mails, 1);
}

#[test]
fn equal_timestamps_are_ordered_by_event_id() {
    let cfg = config(LeaverAction::Disable);
    let mut w = World::default();
    w.run(&joined("b", T1), &cfg, None);
    assert!(matches!(
        w.run(&left("a", T1), &cfg, None),
        Verdict::Stale(_)
    ));
    assert!(matches!(
        w.run(&left("c", T1), &cfg, None),
        Verdict::Apply(_)
    ));
}

/// The crash test of contract section 5, on the model: for every k, stop after the
/// k-th step, then redeliver to completion; the end state is the undisturbed one.
#[test]
fn joiner_converges_after_a_crash_at_every_step() {
    let cfg = config(LeaverAction::Disable);
    let ev = joined("j1", T1);
    let mut clean = World::default();
    let n = steps(&clean.run(&ev, &cfg, None)).len();
    clean.check_joined(true);
    for k in 0..n {
        let mut w = World::default();
        w.run(&ev, &cfg, Some(k));
        let v = w.run(&ev, &cfg, None);
        w.check_joined(true);
        assert!(
            w.mails == 1 || (w.mails == 2 && k == n - 1),
            "k={k}: {} mails",
            w.mails
        );
        // A third delivery has nothing left to do.
        assert!(
            matches!(w.run(&ev, &cfg, None), Verdict::Unchanged(_)),
            "k={k}: {v:?}"
        );
        // Two crashes in a row converge too.
        let mut w2 = World::default();
        w2.run(&ev, &cfg, Some(k));
        w2.run(&ev, &cfg, Some(k / 2 + 1));
        w2.run(&ev, &cfg, None);
        w2.check_joined(true);
    }
}

#[test]
fn orphan_key_and_unstored_password_are_replaced() {
    let cfg = config(LeaverAction::Disable);
    let ev = joined("j1", T1);
    let mut w = World::default();
    w.run(&ev, &cfg, None);
    // A key made by hand (or by a run that crashed before storing it).
    w.keys.push("AKIAORPHAN".into());
    let p = steps(&w.run(&joined("j2", T2), &cfg, None));
    assert!(
        p.contains(&"DeleteAccessKey:AKIAORPHAN".to_owned()),
        "{p:?}"
    );
    w.check_joined(true);
    // A password that no secret holds: reset, through a pending write.
    w.secret.as_mut().unwrap().password = None;
    let p = steps(&w.run(&joined("j3", T3), &cfg, None));
    assert_eq!(
        p.iter().filter(|s| s.as_str() == "PutSecretValue").count(),
        2,
        "store pending, apply, clear: {p:?}"
    );
    assert!(p.contains(&"UpdateLoginProfile".to_owned()));
    w.check_joined(true);
}

#[test]
fn password_reset_converges_after_a_crash_at_every_step() {
    let cfg = config(LeaverAction::Disable);
    let mut base = World::default();
    base.run(&joined("j1", T1), &cfg, None);
    base.secret.as_mut().unwrap().password = None;
    let ev = joined("j2", T2);
    let n = steps(&base.clone().run(&ev, &cfg, None)).len();
    for k in 0..n {
        let mut w = base.clone();
        w.run(&ev, &cfg, Some(k));
        w.run(&ev, &cfg, None);
        w.check_joined(true);
    }
}

#[test]
fn leaver_then_rehire_with_crashes_everywhere() {
    for action in [LeaverAction::Disable, LeaverAction::Delete] {
        let cfg = config(action);
        let mut joined_world = World::default();
        joined_world.run(&joined("j1", T1), &cfg, None);
        // Give the user one of everything a leaver must remove.
        joined_world
            .policies
            .insert("arn:aws:iam::aws:policy/ReadOnlyAccess".into());
        joined_world.inline.insert("extra".into());
        joined_world
            .mfa
            .push("arn:aws:iam::123456789012:mfa/jane.doe".into());
        joined_world
            .virtual_devices
            .insert("arn:aws:iam::123456789012:mfa/jane.doe".into());
        joined_world.mfa.push("GAHT12345678".into());
        joined_world.ssh.push("APKA1".into());

        let ev = left("l1", T2);
        let n = steps(&joined_world.clone().run(&ev, &cfg, None)).len();
        for k in 0..=n {
            let mut w = joined_world.clone();
            w.run(&ev, &cfg, Some(k));
            w.run(&ev, &cfg, None);
            w.check_retired(&cfg);
            // Duplicate left: nothing to do; stale joiner: nothing either.
            let dup = w.run(&ev, &cfg, None);
            assert!(
                matches!(dup, Verdict::Unchanged(_)),
                "{action:?} k={k}: {dup:?}"
            );
            assert!(matches!(
                w.run(&joined("j0", T1), &cfg, None),
                Verdict::Stale(_) | Verdict::Apply(_)
            ));
        }

        // Rehire after a complete retirement, with a crash at each step.
        let mut retired = joined_world.clone();
        retired.run(&ev, &cfg, None);
        let rehire = joined("j3", T3);
        let m = steps(&retired.clone().run(&rehire, &cfg, None)).len();
        for k in 0..=m {
            let mut w = retired.clone();
            w.run(&rehire, &cfg, Some(k));
            w.run(&rehire, &cfg, None);
            w.check_joined(true);
            assert!(w.mails >= 2, "a rehire sends a new mail");
            // Fresh credentials: not the ones of the first life.
            assert_ne!(w.profile, joined_world.profile);
            assert_ne!(w.keys, joined_world.keys);
            // A stale left after the rehire changes nothing.
            let before = w.clone();
            assert!(matches!(
                w.run(&left("l1", T2), &cfg, None),
                Verdict::Stale(_)
            ));
            assert_eq!(w, before);
        }
    }
}

#[test]
fn rehire_removes_the_deny_policy_and_restores_the_secret() {
    let cfg = config(LeaverAction::Disable);
    let mut w = World::default();
    w.run(&joined("j1", T1), &cfg, None);
    w.run(&left("l1", T2), &cfg, None);
    let p = steps(&w.run(&joined("j2", T3), &cfg, None));
    assert_eq!(p[0], "TagUser");
    assert!(p.contains(&format!("DeleteUserPolicy:{DENY_ALL_POLICY}")));
    assert!(p.contains(&"PutUserPermissionsBoundary".to_owned()));
    assert!(p.contains(&"RestoreSecret+PutSecretValue".to_owned()));
    assert!(p.contains(&"SendEmail".to_owned()));
}

#[test]
fn leaver_disable_plan_puts_deny_first() {
    let cfg = config(LeaverAction::Disable);
    let mut w = World::default();
    w.run(&joined("j1", T1), &cfg, None);
    let p = steps(&w.run(&left("l1", T2), &cfg, None));
    assert_eq!(p[0], "TagUser");
    assert_eq!(p[1], format!("PutUserPolicy:{DENY_ALL_POLICY}"));
    assert_eq!(p.last().unwrap(), "DeleteSecret");
    assert!(!p.contains(&"DeleteUser".to_owned()));
}
