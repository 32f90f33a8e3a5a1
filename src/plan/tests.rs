//! Planner tests: tables over fresh, half-done and finished users, and a small
//! simulated IAM + Secrets Manager on which every crash point is replayed.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::event::parse_body;
use crate::rules::Rules;

const URL: &str = "https://123456789012.signin.aws.amazon.com/console";

/// The time of processing in these tests: after every event they send.
fn now() -> OffsetDateTime {
    parse_rfc3339("2026-12-01T00:00:00Z").unwrap()
}

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
    tags: BTreeMap<String, String>,
    /// The version labelled AWSPREVIOUS holds a credential.
    previous_has_credentials: bool,
}

impl World {
    fn state(&self) -> UserState {
        let secret_meta = self.secret.as_ref().map(|s| SecretMeta {
            tags: s.tags.clone(),
            scheduled: s.scheduled,
            previous_version: s.previous_has_credentials.then(|| "v-previous".to_owned()),
            ..SecretMeta::default()
        });
        let Some(u) = &self.user else {
            return UserState {
                secret: match &self.secret {
                    None => SecretState::Absent,
                    Some(s) if s.scheduled => SecretState::Scheduled,
                    Some(_) => SecretState::Present(SecretView::default()),
                },
                secret_meta,
                ..UserState::absent()
            };
        };
        UserState {
            secret_meta,
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
                    previous_access_key_id: None,
                }),
            },
        }
    }

    /// Applies one step as AWS would. `fresh_pw` / `fresh_key` hold what this run
    /// generated, like the applier's vault.
    fn apply(&mut self, step: &Step, run: &mut RunVault) {
        match step {
            Step::CreateUser { tags, boundary_arn } => {
                assert!(self.user.is_none(), "CreateUser on an existing user");
                self.next += 1;
                self.user = Some(UserInfo {
                    name: "jane.doe".into(),
                    user_id: format!("AIDA{}", self.next),
                    path: "/employees/".into(),
                    tags: tags.iter().cloned().collect(),
                    boundary_arn: boundary_arn.clone(),
                });
            }
            Step::TagUser { tags } => {
                let u = self.user.as_mut().unwrap();
                for (k, v) in tags {
                    u.tags.insert(k.clone(), v.clone());
                }
            }
            Step::UntagUser { keys } => {
                let u = self.user.as_mut().unwrap();
                for k in keys {
                    u.tags.remove(k);
                }
            }
            Step::TagSecret { tags } => {
                let s = self.secret.as_mut().unwrap();
                assert!(
                    !s.scheduled,
                    "tags of a secret pending deletion cannot change"
                );
                s.tags.extend(tags.iter().cloned());
            }
            Step::UntagSecret { keys } => {
                let s = self.secret.as_mut().unwrap();
                assert!(
                    !s.scheduled,
                    "tags of a secret pending deletion cannot change"
                );
                for k in keys {
                    s.tags.remove(k);
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
                let (ev, cfg) = run.ctx.as_ref().unwrap();
                let mut tags = old.tags.clone();
                tags.remove(TAG_ACCESS_KEY_ID);
                let user_id = self
                    .user
                    .as_ref()
                    .map(|u| u.user_id.clone())
                    .unwrap_or_default();
                tags.extend(secret_tags(
                    ev,
                    "jane.doe",
                    &user_id,
                    secret_status(ev, cfg),
                    key.as_deref().map(|k| (k, "2026-01-01T00:00:00Z")),
                ));
                let previous_has_credentials =
                    self.secret.is_some() && (old.password.is_some() || old.key.is_some());
                self.secret = Some(SimSecret {
                    scheduled: false,
                    password,
                    key,
                    pending: w.password_pending,
                    user_name: "jane.doe".into(),
                    tags,
                    previous_has_credentials,
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
            Step::ClearPreviousSecretVersion { .. } => {
                let s = self.secret.as_mut().unwrap();
                assert!(!s.scheduled, "a secret pending deletion cannot change");
                s.previous_has_credentials = false;
            }
            Step::ScheduleSecretDeletion { .. } => self.secret.as_mut().unwrap().scheduled = true,
            Step::SendWelcome { .. } => self.mails += 1,
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
            if w.how == SecretHow::Restore {
                if let Some(s) = &mut self.secret {
                    s.scheduled = false;
                }
            }
        }
    }

    /// Runs `ev` to the end, or stops after `crash_after` steps. Returns the verdict.
    fn run(&mut self, ev: &HrEvent, cfg: &Config, crash_after: Option<usize>) -> Verdict {
        let rule = cfg.rules.for_department(ev.employee.department.as_deref());
        let granted = Granted::of(cfg.rules.all());
        let cx = Context {
            config: cfg,
            rule,
            granted: &granted,
            signin_url: URL,
            now: now(),
            kms_key: None,
        };
        let verdict = plan(ev, &cx, &self.state());
        if let Verdict::Apply(p) = &verdict {
            let mut vault = RunVault {
                ctx: Some((ev.clone(), cfg.clone())),
                ..RunVault::default()
            };
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
        // The emptied secret keeps no earlier version with a credential in reach.
        if let Some(s) = &self.secret {
            assert!(
                !s.previous_has_credentials,
                "AWSPREVIOUS still holds credentials"
            );
        }
        let s = self.secret.as_ref().unwrap();
        assert!(s.scheduled && s.password.is_none() && s.key.is_none());
    }
}

#[derive(Default)]
struct RunVault {
    password: Option<u32>,
    key: Option<String>,
    ctx: Option<(HrEvent, Config)>,
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
            user_id: "AIDAEXAMPLE".into(),
            path: path.into(),
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect::<BTreeMap<_, _>>(),
            boundary_arn: None,
        }),
        attachments: Attachments::default(),
        secret: SecretState::Absent,
        secret_meta: None,
    }
}

fn verdict(ev: &HrEvent, cfg: &Config, state: &UserState) -> Verdict {
    let rule = cfg.rules.for_department(ev.employee.department.as_deref());
    plan(
        ev,
        &Context {
            config: cfg,
            rule,
            granted: &Granted::of(cfg.rules.all()),
            signin_url: URL,
            now: now(),
            kms_key: None,
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
fn equal_timestamps_rank_the_leaver_last_then_order_by_event_id() {
    let cfg = config(LeaverAction::Disable);
    // A leaver dated like the joiner: whatever its id, it is applied.
    for leaver_id in ["a", "c"] {
        let mut w = World::default();
        w.run(&joined("b", T1), &cfg, None);
        assert!(
            matches!(w.run(&left(leaver_id, T1), &cfg, None), Verdict::Apply(_)),
            "{leaver_id}"
        );
        w.check_retired(&cfg);
        // The joiner redelivered after it is history.
        assert!(matches!(
            w.run(&joined("b", T1), &cfg, None),
            Verdict::Stale(_)
        ));
    }
    // Two movers of one instant: the id breaks the tie.
    let mut w = World::default();
    w.run(&joined("j", T1), &cfg, None);
    w.run(&changed("m-b", T2, "engineering"), &cfg, None);
    assert!(matches!(
        w.run(&changed("m-a", T2, "engineering"), &cfg, None),
        Verdict::Stale(_)
    ));
    assert!(!matches!(
        w.run(&changed("m-c", T2, "engineering"), &cfg, None),
        Verdict::Stale(_)
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
    // Someone took the boundary off the retired user meanwhile.
    w.user.as_mut().unwrap().boundary_arn = None;
    let v = w.run(&joined("j2", T3), &cfg, None);
    let Verdict::Apply(plan) = &v else {
        panic!("{v:?}")
    };
    // The boundary is back before any grant.
    assert!(plan.stages[0].contains(&Step::PutBoundary {
        arn: "arn:aws:iam::123456789012:policy/boundary".into()
    }));
    let p = steps(&v);
    assert_eq!(p[0], "TagUser");
    assert!(p.contains(&format!("DeleteUserPolicy:{DENY_ALL_POLICY}")));
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

// ---- Hardening and movers ----

fn mover_config() -> Config {
    let mut c = config(LeaverAction::Disable);
    c.rules = Rules::parse(
        r#"{"default":{"groups":["staff"],"console":true},
            "departments":{
              "engineering":{"groups":["developers","staff"],"console":true,"access_key":true},
              "sales":{"groups":["sales"],"console":true,"access_key":false},
              "robots":{"groups":["bots"],"console":false,"access_key":true},
              "vendors":{"groups":[],"console":false,"access_key":false}}}"#,
    )
    .unwrap();
    c
}

fn changed(id: &str, at: &str, dept: &str) -> HrEvent {
    event("changed", id, at, dept)
}

fn rule_groups(cfg: &Config, dept: &str) -> BTreeSet<String> {
    cfg.rules
        .for_department(Some(dept))
        .groups
        .iter()
        .cloned()
        .collect()
}

/// Every transition between four rules covering each combination of console and
/// key, with a hand-granted group, and a crash after every step then redelivery:
/// the user ends exactly on the new rule, hand grants kept, the secret holding
/// exactly the live credentials, and a mail only when console access is new.
#[test]
fn movers_converge_between_every_pair_of_rules_with_crashes_everywhere() {
    let cfg = mover_config();
    let depts = ["engineering", "sales", "robots", "vendors"];
    for from in depts {
        for to in depts {
            let mut base = World::default();
            base.run(&event("joined", "j1", T1, from), &cfg, None);
            base.groups.insert("hand-made".into());
            let mails_before = base.mails;
            let mv = changed("c1", T2, to);
            let total = match base.clone().run(&mv, &cfg, None) {
                Verdict::Apply(p) => p.steps().count(),
                _ => 0,
            };
            for crash in (0..total).map(Some).chain([None]) {
                let mut w = base.clone();
                w.run(&mv, &cfg, crash);
                w.run(&mv, &cfg, None);
                let rule = cfg.rules.for_department(Some(to));
                let mut want = rule_groups(&cfg, to);
                want.insert("hand-made".into());
                assert_eq!(w.groups, want, "{from}->{to} crash {crash:?}");
                let s = w.secret.as_ref().unwrap();
                assert_eq!(w.profile.is_some(), rule.console, "{from}->{to} {crash:?}");
                assert_eq!(w.profile, s.password, "{from}->{to} {crash:?}");
                assert_eq!(w.keys.len(), usize::from(rule.access_key), "{from}->{to}");
                assert_eq!(w.keys, s.key.iter().cloned().collect::<Vec<_>>());
                assert_eq!(
                    s.tags.get(TAG_ACCESS_KEY_ID),
                    s.key.as_ref(),
                    "{from}->{to}"
                );
                assert_eq!(
                    s.tags.get(TAG_LAST_EVENT_ID).map(String::as_str),
                    Some("c1")
                );
                let u = w.user.as_ref().unwrap();
                assert_eq!(u.tag("hr:department"), Some(to));
                assert_eq!(u.tag(TAG_LAST_EVENT_ID), Some("c1"));
                let had_console = cfg.rules.for_department(Some(from)).console;
                let new_mail = u32::from(rule.console && !had_console);
                assert!(
                    w.mails - mails_before >= new_mail && w.mails - mails_before <= new_mail + 1,
                    "{from}->{to} crash {crash:?}: {} mails",
                    w.mails - mails_before
                );
                if crash.is_none() {
                    assert_eq!(w.mails - mails_before, new_mail, "{from}->{to}");
                }
                // A redelivery of the finished move changes nothing.
                assert!(
                    matches!(w.run(&mv, &cfg, None), Verdict::Unchanged(_)),
                    "{from}->{to}"
                );
            }
        }
    }
}

#[test]
fn repeated_joined_with_a_new_event_id_converges_without_a_second_mail() {
    let cfg = config(LeaverAction::Disable);
    let mut w = World::default();
    w.run(&joined("j1", T1), &cfg, None);
    assert_eq!(w.mails, 1);
    let v = w.run(&joined("j2", T2), &cfg, None);
    assert_eq!(w.mails, 1, "{v:?}");
    assert_eq!(w.user.as_ref().unwrap().tag(TAG_LAST_EVENT_ID), Some("j2"));
}

#[test]
fn changed_for_a_missing_or_retired_user() {
    let cfg = mover_config();
    let v = verdict(&changed("c1", T2, "sales"), &cfg, &UserState::absent());
    assert!(
        matches!(v, Verdict::Failed(ref why) if why.contains("joined")),
        "{v:?}"
    );
    let mut w = World::default();
    w.run(&joined("j1", T1), &cfg, None);
    w.run(&left("l1", T2), &cfg, None);
    let v = w.run(&changed("c1", T3, "sales"), &cfg, None);
    assert!(
        matches!(v, Verdict::Unchanged(ref why) if why.contains("retired")),
        "{v:?}"
    );
}

#[test]
fn a_deleted_users_tombstone_makes_older_events_stale() {
    let cfg = config(LeaverAction::Delete);
    let mut w = World::default();
    w.run(&joined("j1", T1), &cfg, None);
    w.run(&left("l1", T3), &cfg, None);
    assert!(w.user.is_none());
    let s = w.secret.as_ref().unwrap();
    assert!(s.scheduled);
    assert_eq!(
        s.tags.get(TAG_STATUS).map(String::as_str),
        Some(STATUS_DELETED)
    );
    assert_eq!(
        s.tags.get(TAG_LAST_EVENT_ID).map(String::as_str),
        Some("l1")
    );
    assert!(!s.tags.contains_key(TAG_ACCESS_KEY_ID));
    // The redriven older joiner recreates nothing.
    let v = w.run(&joined("j1", T1), &cfg, None);
    assert!(matches!(v, Verdict::Stale(_)), "{v:?}");
    let v = w.run(&joined("j0", T2), &cfg, None);
    assert!(matches!(v, Verdict::Stale(_)), "{v:?}");
    assert!(w.user.is_none());
    // A newer joiner rehires.
    let v = w.run(&joined("j3", "2026-11-25T09:00:00Z"), &cfg, None);
    assert!(matches!(v, Verdict::Apply(_)), "{v:?}");
    w.check_joined(true);
}

fn foreign(meta: SecretMeta) -> UserState {
    UserState {
        secret: SecretState::Present(SecretView::default()),
        secret_meta: Some(meta),
        ..UserState::absent()
    }
}

fn our_meta() -> SecretMeta {
    SecretMeta {
        tags: [
            (TAG_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
            (TAG_EMPLOYEE_ID.to_owned(), "E1".to_owned()),
        ]
        .into(),
        ..SecretMeta::default()
    }
}

#[test]
fn a_squatted_secret_rejects_the_joiner_with_nothing_changed() {
    let cfg = config(LeaverAction::Disable);
    let mut untagged = our_meta();
    untagged.tags.clear();
    let mut other = our_meta();
    other.tags.insert(TAG_EMPLOYEE_ID.into(), "E2".into());
    let mut key = our_meta();
    key.kms_key_id = Some("arn:aws:kms:us-east-1:999999999999:key/evil".into());
    let mut policy = our_meta();
    policy.has_policy = true;
    for (meta, want) in [
        (untagged, "not created by the provisioner"),
        (other, "employee E2"),
        (key, "KMS key"),
        (policy, "resource policy"),
    ] {
        let v = verdict(&joined("j1", T1), &cfg, &foreign(meta.clone()));
        assert!(
            matches!(&v, Verdict::Rejected(why) if why.contains(want)),
            "{v:?}"
        );
        let v = verdict(&changed("c1", T1, "sales"), &cfg, &foreign(meta));
        assert!(!matches!(v, Verdict::Apply(_)), "{v:?}");
    }
    // Our own secret is fine.
    assert!(matches!(
        verdict(&joined("j1", T1), &cfg, &foreign(our_meta())),
        Verdict::Apply(_)
    ));
}

#[test]
fn a_leaver_with_a_foreign_secret_is_cut_off_and_fails_leaving_the_secret_alone() {
    let cfg = config(LeaverAction::Disable);
    let mut w = World::default();
    w.run(&joined("j1", T1), &cfg, None);
    let mut state = w.state();
    let mut meta = our_meta();
    meta.has_policy = true;
    state.secret_meta = Some(meta);
    let v = verdict(&left("l1", T2), &cfg, &state);
    let Verdict::Apply(p) = &v else {
        panic!("{v:?}")
    };
    let names = p.action_names();
    assert!(names.contains(&"PutUserPolicy:hr-provisioner-deny-all".to_owned()));
    assert!(names.contains(&"DeleteLoginProfile".to_owned()));
    assert!(
        !names
            .iter()
            .any(|n| n.contains("Secret") || n.contains("Resource")),
        "{names:?}"
    );
    assert!(p
        .fail_after
        .as_deref()
        .is_some_and(|w| w.contains("resource policy")));
}

#[test]
fn a_leaver_is_cut_off_from_the_first_read_alone() {
    let mut cfg = config(LeaverAction::Disable);
    let mut w = World::default();
    w.run(&joined("j1", T1), &cfg, None);
    let mut state = w.state();
    state.attachments = Attachments {
        partial: true,
        ..Attachments::default()
    };
    let v = verdict(&left("l1", T2), &cfg, &state);
    let Verdict::ReadMore(p) = &v else {
        panic!("{v:?}")
    };
    assert_eq!(
        p.action_names(),
        ["TagUser", "PutUserPolicy:hr-provisioner-deny-all"]
    );
    // With the stack's managed deny-all, no inline policy at all.
    cfg.deny_policy_arn = Some("arn:aws:iam::123456789012:policy/deny".into());
    let v = verdict(&left("l1", T2), &cfg, &state);
    let Verdict::ReadMore(p) = &v else {
        panic!("{v:?}")
    };
    assert_eq!(
        p.action_names(),
        [
            "TagUser",
            "AttachUserPolicy:arn:aws:iam::123456789012:policy/deny"
        ]
    );
    // Already cut off: nothing before the reads.
    state
        .attachments
        .attached_policies
        .insert("arn:aws:iam::123456789012:policy/deny".into());
    if let Lookup::Found(u) = &mut state.lookup {
        u.tags.extend(desired_tags(&left("l1", T2), STATUS_RETIRED));
    }
    assert_eq!(
        verdict(&left("l1", T2), &cfg, &state),
        Verdict::ReadMore(Plan::default())
    );
}

#[test]
fn managed_deny_all_is_used_for_leavers_and_removed_on_rehire_and_delete() {
    let arn = "arn:aws:iam::123456789012:policy/deny";
    for action in [LeaverAction::Disable, LeaverAction::Delete] {
        let mut cfg = config(action);
        cfg.deny_policy_arn = Some(arn.into());
        let mut w = World::default();
        w.run(&joined("j1", T1), &cfg, None);
        let v = w.run(&left("l1", T2), &cfg, None);
        let names = steps(&v);
        assert!(
            names.contains(&format!("AttachUserPolicy:{arn}")),
            "{names:?}"
        );
        assert!(
            !names.iter().any(|n| n.starts_with("PutUserPolicy")),
            "{names:?}"
        );
        if action == LeaverAction::Disable {
            assert_eq!(w.policies, [arn.to_owned()].into());
            w.run(&joined("j2", T3), &cfg, None);
            assert!(w.policies.is_empty(), "{:?}", w.policies);
            w.check_joined(true);
        } else {
            assert!(w.user.is_none());
        }
    }
}

#[test]
fn copied_template_grants_are_part_of_the_rule_and_removed_on_a_move() {
    let cfg = mover_config();
    let mut eng = cfg.rules.for_department(Some("engineering")).clone();
    eng.groups.push("from-template".into());
    eng.managed_policies
        .push("arn:aws:iam::aws:policy/ReadOnlyAccess".into());
    let all: Vec<Rule> = cfg.rules.all().cloned().chain([eng.clone()]).collect();
    let granted = Granted::of(&all);
    let mut w = World::default();
    let ev = event("joined", "j1", T1, "engineering");
    let cx = Context {
        config: &cfg,
        rule: &eng,
        granted: &granted,
        signin_url: URL,
        now: now(),
        kms_key: None,
    };
    let Verdict::Apply(p) = plan(&ev, &cx, &w.state()) else {
        panic!()
    };
    let mut vault = RunVault {
        ctx: Some((ev.clone(), cfg.clone())),
        ..RunVault::default()
    };
    for s in p.steps() {
        w.apply(s, &mut vault);
    }
    assert!(w.groups.contains("from-template"));
    assert!(w
        .policies
        .contains("arn:aws:iam::aws:policy/ReadOnlyAccess"));
    let mv = changed("c1", T2, "sales");
    let sales = cfg.rules.for_department(Some("sales"));
    let cx = Context { rule: sales, ..cx };
    let Verdict::Apply(p) = plan(&mv, &cx, &w.state()) else {
        panic!()
    };
    let names = p.action_names();
    assert!(
        names.contains(&"RemoveUserFromGroup:from-template".to_owned()),
        "{names:?}"
    );
    assert!(names.contains(&"DetachUserPolicy:arn:aws:iam::aws:policy/ReadOnlyAccess".to_owned()));
}

#[test]
fn kms_keys_compare_by_id_arn_or_alias() {
    let arn = "arn:aws:kms:us-east-1:123456789012:key/1234abcd";
    assert!(same_kms_key(Some("1234abcd"), Some(arn)));
    assert!(same_kms_key(Some(arn), Some(arn)));
    assert!(same_kms_key(None, None));
    assert!(same_kms_key(None, Some("alias/aws/secretsmanager")));
    assert!(!same_kms_key(None, Some(arn)));
    assert!(!same_kms_key(Some("1234abcd"), None));
    assert!(!same_kms_key(
        Some("1234abcd"),
        Some("arn:aws:kms:us-east-1:1:key/other")
    ));
    // Aliases are resolved before the comparison: one left unresolved (it names
    // no key we may describe) matches nothing, not even its own spelling.
    assert!(!same_kms_key(
        Some("alias/hr"),
        Some("arn:aws:kms:us-east-1:1:alias/hr")
    ));
    assert!(!same_kms_key(Some("alias/hr"), Some("alias/hr")));
    assert!(!same_kms_key(Some("alias/hr"), Some("alias/other")));
    assert!(same_kms_key(
        Some("arn:aws:kms:us-east-1:1:alias/aws/secretsmanager"),
        None
    ));
}

#[test]
fn tags_follow_iams_real_pattern() {
    assert!(tag_safe("Zoë Müller"));
    assert!(tag_safe("jane.doe@example.com"));
    assert!(tag_safe("R&D".replace('&', "and").as_str()));
    // Combining marks and symbols IAM refuses are left out of tags, never sent.
    assert!(!tag_safe("Zoe\u{0308}"));
    assert!(!tag_safe("R&D"));
    assert!(!tag_safe("a#b"));
    assert!(!tag_safe(""));
    assert!(!tag_safe(&"a".repeat(257)));
    let ev = parse_body(
        r#"{"event_id":"e","event_type":"employee.joined","occurred_at":"2026-11-22T09:00:00Z",
            "employee":{"employee_id":"E1","email":"a@b.co","department":"R&D"}}"#,
    )
    .unwrap();
    assert!(!desired_tags(&ev, STATUS_ACTIVE)
        .iter()
        .any(|(k, _)| k == TAG_DEPARTMENT));
}

// ---- Offboarding is never silently skipped (issue 16) ----

fn reason(v: &Verdict) -> &str {
    match v {
        Verdict::Failed(r) | Verdict::Stale(r) | Verdict::Rejected(r) | Verdict::Unchanged(r) => r,
        Verdict::Apply(p) | Verdict::ReadMore(p) => p.fail_after.as_deref().unwrap_or(""),
    }
}

#[test]
fn a_stale_leaver_against_an_active_user_fails_unless_its_newer_event_is_a_rehire() {
    let cfg = config(LeaverAction::Disable);
    // Active after a newer mover: the leaver is not a quiet success.
    let mut w = World::default();
    w.run(&joined("j1", T1), &cfg, None);
    w.run(&changed("c1", T3, "engineering"), &cfg, None);
    let before = w.clone();
    let v = w.run(&left("l1", T2), &cfg, None);
    assert!(matches!(v, Verdict::Failed(_)), "{v:?}");
    assert!(reason(&v).starts_with(STALE_LEAVER_ON_ACTIVE_USER), "{v:?}");
    assert_eq!(w, before, "nothing changed");
    // The cut-off read sees the same.
    let mut cut = w.state();
    cut.attachments = Attachments {
        partial: true,
        ..Attachments::default()
    };
    assert!(matches!(
        verdict(&left("l1", T2), &cfg, &cut),
        Verdict::Failed(_)
    ));
    // Active after a newer joiner (a rehire): the old leaver is history.
    let mut w = World::default();
    w.run(&joined("j1", T1), &cfg, None);
    w.run(&left("l1", T2), &cfg, None);
    w.run(&joined("j2", T3), &cfg, None);
    assert!(matches!(
        w.run(&left("l1", T2), &cfg, None),
        Verdict::Stale(_)
    ));
    // Retired by a newer leaver: stale, quietly (WARN in the log).
    w.run(&left("l3", "2026-11-25T09:00:00Z"), &cfg, None);
    assert!(matches!(
        w.run(&left("l1", T2), &cfg, None),
        Verdict::Stale(_)
    ));
    // A user of an older version (no hr:last-event-type) that is active: failed.
    let state = found(
        &[
            (TAG_EMPLOYEE_ID, "E1"),
            (TAG_MANAGED_BY, MANAGED_BY),
            (TAG_STATUS, STATUS_ACTIVE),
            (TAG_LAST_EVENT_AT, T3),
            (TAG_LAST_EVENT_ID, "x"),
        ],
        "/employees/",
        "jane.doe",
    );
    assert!(matches!(
        verdict(&left("l1", T2), &cfg, &state),
        Verdict::Failed(_)
    ));
}

#[test]
fn forged_state_tags_fail_loudly_and_never_protect_from_offboarding() {
    let cfg = config(LeaverAction::Disable);
    let mut w = World::default();
    w.run(&joined("j1", T1), &cfg, None);
    // An insider tags the user a year ahead: every event would be stale.
    w.user
        .as_mut()
        .unwrap()
        .tags
        .insert(TAG_LAST_EVENT_AT.into(), "2027-12-01T00:00:00Z".into());
    let before = w.clone();
    let v = w.run(&changed("c1", T2, "sales"), &cfg, None);
    assert!(
        matches!(v, Verdict::Failed(_)) && reason(&v).starts_with(TAMPERED),
        "{v:?}"
    );
    assert_eq!(w, before, "a tampered mover changes nothing");
    // The leaver's cut-off comes first, from IAM alone, and the record still fails.
    let mut cut = w.state();
    cut.attachments = Attachments {
        partial: true,
        ..Attachments::default()
    };
    cut.secret_meta = None;
    cut.secret = SecretState::Absent;
    let v = verdict(&left("l1", T2), &cfg, &cut);
    let Verdict::ReadMore(p) = &v else {
        panic!("{v:?}")
    };
    assert_eq!(
        p.action_names(),
        ["TagUser", "PutUserPolicy:hr-provisioner-deny-all"]
    );
    assert!(reason(&v).starts_with(TAMPERED));
    // The whole leaver on the full read: applied, and failed for a person to look.
    let v = w.run(&left("l1", T2), &cfg, None);
    let Verdict::Apply(p) = &v else {
        panic!("{v:?}")
    };
    assert!(p
        .fail_after
        .as_deref()
        .is_some_and(|r| r.starts_with(TAMPERED)));
    w.check_retired(&cfg);

    // Within the skew it is no forgery; beyond it, it is.
    let mut u = w.user.clone().unwrap();
    for (minutes, forged) in [(4, false), (6, true)] {
        let at = crate::event::format_utc(now() + time::Duration::minutes(minutes));
        u.tags.insert(TAG_LAST_EVENT_AT.into(), at);
        assert_eq!(
            tampering(now(), &u, None).is_some(),
            forged,
            "{minutes} min"
        );
    }
}

#[test]
fn a_secret_ahead_of_its_user_is_tampering_but_a_crash_leaves_it_behind() {
    let cfg = config(LeaverAction::Disable);
    let mut w = World::default();
    w.run(&joined("j1", T1), &cfg, None);
    // The user's tags are rolled back to replay an old event: the secret is ahead.
    let rolled = w.clone();
    let mut w2 = rolled.clone();
    w2.user
        .as_mut()
        .unwrap()
        .tags
        .insert(TAG_LAST_EVENT_AT.into(), "2026-11-01T00:00:00Z".into());
    let v = w2.run(&joined("j0", "2026-11-10T00:00:00Z"), &cfg, None);
    assert!(reason(&v).starts_with(TAMPERED), "{v:?}");
    // Every crash point of a mover leaves the user ahead of (or equal to) the
    // secret, never behind: no false alarm on redelivery.
    let ev = changed("c1", T2, "robots");
    let n = steps(&w.clone().run(&ev, &cfg, None)).len();
    for k in 0..n {
        let mut c = w.clone();
        c.run(&ev, &cfg, Some(k));
        let u = c.user.clone().unwrap();
        let meta = c.state().secret_meta;
        assert_eq!(tampering(now(), &u, meta.as_ref()), None, "k={k}");
        assert!(
            !matches!(c.run(&ev, &cfg, None), Verdict::Failed(_)),
            "k={k}"
        );
    }
}

#[test]
fn the_boundary_is_restored_before_any_grant_and_planted_credentials_go() {
    let cfg = config(LeaverAction::Disable);
    let mut w = World::default();
    w.run(&joined("j1", T1), &cfg, None);
    w.user.as_mut().unwrap().boundary_arn = Some("arn:aws:iam::123456789012:policy/wide".into());
    // Someone took a group away: the mover grants it again.
    w.groups.remove("developers");
    let mut state = w.state();
    state.attachments.ssh_keys = vec!["APKAPLANTED".into()];
    state.attachments.signing_certs = vec!["CERTPLANTED".into()];
    state.attachments.service_credentials = vec!["ACCAPLANTED".into()];
    state.attachments.access_keys.push("AKIAHANDMADE".into());
    let v = verdict(&changed("c1", T2, "engineering"), &cfg, &state);
    let Verdict::Apply(p) = &v else {
        panic!("{v:?}")
    };
    let boundary = p
        .stages
        .iter()
        .position(|s| s.iter().any(|st| matches!(st, Step::PutBoundary { .. })))
        .expect("boundary restored");
    let first_grant = p
        .stages
        .iter()
        .position(|s| s.iter().any(|st| matches!(st, Step::AddToGroup { .. })))
        .expect("a grant");
    assert!(boundary < first_grant, "{:?}", p.stages);
    let names = p.action_names();
    for planted in [
        "DeleteSSHPublicKey:APKAPLANTED",
        "DeleteSigningCertificate:CERTPLANTED",
        "DeleteServiceSpecificCredential:ACCAPLANTED",
        "DeleteAccessKey:AKIAHANDMADE",
    ] {
        assert!(names.contains(&planted.to_owned()), "{planted}: {names:?}");
    }
    // A repeated joiner adopts the user the same way.
    let v = verdict(&joined("j1", T1), &cfg, &state);
    assert!(steps(&v).contains(&"DeleteSSHPublicKey:APKAPLANTED".to_owned()));
}

#[test]
fn fido_keys_are_deactivated_not_deleted_and_the_secret_keeps_no_previous_credentials() {
    assert!(is_virtual_mfa("arn:aws:iam::123456789012:mfa/jane.doe"));
    assert!(!is_virtual_mfa(
        "arn:aws:iam::123456789012:u2f/user/jane.doe/default-ABCD"
    ));
    assert!(!is_virtual_mfa("GAHT12345678"));
    for action in [LeaverAction::Disable, LeaverAction::Delete] {
        let cfg = config(action);
        let mut w = World::default();
        w.run(&joined("j1", T1), &cfg, None);
        let fido = "arn:aws:iam::123456789012:u2f/user/jane.doe/default-ABCD".to_owned();
        w.mfa.push(fido.clone());
        let p = steps(&w.clone().run(&left("l1", T2), &cfg, None));
        assert!(p.contains(&format!("DeactivateMFADevice:{fido}")));
        assert!(!p.contains(&format!("DeleteVirtualMFADevice:{fido}")));
        let clear = p
            .iter()
            .position(|s| s == "UpdateSecretVersionStage:AWSPREVIOUS")
            .unwrap();
        let write = p.iter().position(|s| s == "PutSecretValue").unwrap();
        let delete = p.iter().position(|s| s == "DeleteSecret").unwrap();
        assert!(write < clear && clear < delete, "{p:?}");
        // Crash after every step, then redelivery: retired, and no earlier version
        // of the secret holds a credential.
        for k in 0..p.len() {
            let mut c = w.clone();
            c.run(&left("l1", T2), &cfg, Some(k));
            c.run(&left("l1", T2), &cfg, None);
            c.check_retired(&cfg);
        }
    }
}

#[test]
fn a_leaver_whose_user_vanished_behind_a_live_secret_fails() {
    let cfg = config(LeaverAction::Disable);
    let mut meta = our_meta();
    meta.tags.insert(TAG_STATUS.into(), STATUS_ACTIVE.into());
    let state = UserState {
        secret_meta: Some(meta.clone()),
        secret: SecretState::Present(SecretView::default()),
        ..UserState::absent()
    };
    assert!(matches!(
        verdict(&left("l9", T3), &cfg, &state),
        Verdict::Failed(_)
    ));
    // A tombstone (deleted by the function) or no secret at all: unchanged.
    meta.tags.insert(TAG_STATUS.into(), STATUS_DELETED.into());
    meta.scheduled = true;
    let tomb = UserState {
        secret_meta: Some(meta),
        secret: SecretState::Scheduled,
        ..UserState::absent()
    };
    assert!(matches!(
        verdict(&left("l9", T3), &cfg, &tomb),
        Verdict::Unchanged(_)
    ));
    assert!(matches!(
        verdict(&left("l9", T3), &cfg, &UserState::absent()),
        Verdict::Unchanged(_)
    ));
}

#[test]
fn secrets_record_the_user_id_and_the_event_type() {
    let cfg = config(LeaverAction::Disable);
    let mut w = World::default();
    w.run(&joined("j1", T1), &cfg, None);
    let u = w.user.clone().unwrap();
    let s = w.secret.clone().unwrap();
    assert_eq!(s.tags.get(TAG_USER_ID), Some(&u.user_id));
    assert_eq!(u.tag(TAG_LAST_EVENT_TYPE), Some("joined"));
    assert_eq!(
        s.tags.get(TAG_LAST_EVENT_TYPE).map(String::as_str),
        Some("joined")
    );
    w.run(&left("l1", T2), &cfg, None);
    assert_eq!(w.user.unwrap().tag(TAG_LAST_EVENT_TYPE), Some("left"));
}

/// Section 11 (credential lifecycle): during a rotation's grace the secret holds
/// the old key too, and a mover keeps it; a stored key deactivated as unused is
/// replaced by a new one, never kept.
#[test]
fn a_mover_keeps_a_rotations_previous_key_and_replaces_an_inactive_one() {
    let cfg = config(LeaverAction::Disable);
    let mut w = World::default();
    w.run(&joined("j1", T1), &cfg, None);
    let stored = w.keys[0].clone();
    let mut state = w.state();
    state.attachments.access_keys.push("OLDKEY".into());
    if let SecretState::Present(v) = &mut state.secret {
        v.previous_access_key_id = Some("OLDKEY".into());
    }
    let v = verdict(&changed("c1", T2, "engineering"), &cfg, &state);
    let names = match &v {
        Verdict::Apply(p) => p.action_names(),
        Verdict::Unchanged(_) => vec![],
        other => panic!("{other:?}"),
    };
    assert!(
        names.iter().all(|n| !n.starts_with("DeleteAccessKey")),
        "{names:?}"
    );
    // A previous key the secret does not name is an orphan, as before.
    let mut state = w.state();
    state.attachments.access_keys.push("OLDKEY".into());
    let v = verdict(&changed("c1", T2, "engineering"), &cfg, &state);
    let Verdict::Apply(p) = &v else {
        panic!("{v:?}")
    };
    assert!(p
        .action_names()
        .contains(&"DeleteAccessKey:OLDKEY".to_owned()));
    // The stored key inactive (disabled as unused): deleted and replaced.
    let mut state = w.state();
    state.attachments.inactive_keys.insert(stored.clone());
    let v = verdict(&changed("c1", T2, "engineering"), &cfg, &state);
    let Verdict::Apply(p) = &v else {
        panic!("{v:?}")
    };
    let names = p.action_names();
    let del = names
        .iter()
        .position(|n| *n == format!("DeleteAccessKey:{stored}"));
    let create = names.iter().position(|n| n == "CreateAccessKey");
    assert!(
        del.is_some() && create.is_some() && del < create,
        "{names:?}"
    );
}
