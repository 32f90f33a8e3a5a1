//! Table tests of the lifecycle planner against a small model of IAM and the
//! secret: a crash after every step, then the next run, converges; IAM's limit
//! of two keys holds at every step.

use super::*;
use time::macros::datetime;

const T0: OffsetDateTime = datetime!(2026-01-01 00:00:00 UTC);
const LIMITS: Limits = Limits {
    key_max_age_days: 90,
    grace_days: 7,
    unused_days: 45,
};

fn day(n: i64) -> OffsetDateTime {
    T0 + Duration::days(n)
}

/// IAM, the secret and the mailbox of one user, as far as the steps touch them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct World {
    s: Subject,
    next: u32,
    mails: u32,
}

impl World {
    fn new() -> World {
        World {
            s: Subject {
                user: "jane.doe".into(),
                keys: vec![Key {
                    id: "K0".into(),
                    active: true,
                    created: T0,
                    last_used: None,
                }],
                login_profile: false,
                password_last_used: None,
                user_created: T0,
                stored_key: Some("K0".into()),
                previous_key: None,
                stored_password: false,
                mailed_for: None,
                email: Some("jane.doe@example.com".into()),
            },
            next: 1,
            mails: 0,
        }
    }

    /// Applies one step as AWS would; `made` is the run's memory of the key it
    /// created (its secret half exists only in CreateAccessKey's answer).
    fn apply(&mut self, step: &Step, made: &mut Option<String>, now: OffsetDateTime) {
        let s = &mut self.s;
        match step {
            Step::CreateKey => {
                assert!(s.keys.len() < 2, "IAM refuses a third key: {s:?}");
                let id = format!("K{}", self.next);
                self.next += 1;
                s.keys.push(Key {
                    id: id.clone(),
                    active: true,
                    created: now,
                    last_used: None,
                });
                *made = Some(id);
            }
            Step::StoreNewKey => {
                let id = made
                    .clone()
                    .expect("stored only in the run that created it");
                s.previous_key = s.stored_key.take();
                s.stored_key = Some(id);
            }
            Step::MailNewKey { .. } => self.mails += 1,
            Step::MarkMailed => s.mailed_for = s.stored_key.clone(),
            Step::DeactivateKey { id } => s
                .keys
                .iter_mut()
                .filter(|k| &k.id == id)
                .for_each(|k| k.active = false),
            Step::DeleteKey { id } => s.keys.retain(|k| &k.id != id),
            Step::DropPrevious => s.previous_key = None,
            Step::DeleteLoginProfile => s.login_profile = false,
            Step::DropPassword => s.stored_password = false,
        }
    }

    /// One run: plans, then applies up to `crash_after` steps (all if `None`).
    /// Returns how many steps ran.
    fn run(&mut self, now: OffsetDateTime, crash_after: Option<usize>) -> usize {
        let plan = plan(&self.s, &LIMITS, now);
        let mut made = None;
        let mut n = 0;
        for step in plan.steps() {
            if crash_after == Some(n) {
                return n;
            }
            self.apply(step, &mut made, now);
            assert!(self.s.keys.len() <= 2);
            n += 1;
        }
        n
    }

    /// Runs until nothing is left to do (at most a few runs).
    fn settle(&mut self, now: OffsetDateTime) {
        for _ in 0..4 {
            if plan(&self.s, &LIMITS, now).is_empty() {
                return;
            }
            self.run(now, None);
        }
        panic!("no convergence: {:?}", plan(&self.s, &LIMITS, now));
    }

    /// The contract's end state: every key the user has is in the secret, and
    /// the secret holds nothing the user does not have.
    fn consistent(&self) {
        let s = &self.s;
        for k in &s.keys {
            assert!(
                s.stored_key.as_deref() == Some(&k.id) || s.previous_key.as_deref() == Some(&k.id),
                "{k:?} not in the secret: {s:?}"
            );
        }
        for id in s.stored_key.iter().chain(&s.previous_key) {
            assert!(
                s.keys.iter().any(|k| &k.id == id),
                "secret holds {id}: {s:?}"
            );
        }
        assert!(!s.stored_password || s.login_profile);
    }
}

fn names(p: &Plan) -> Vec<String> {
    p.steps().map(ToString::to_string).collect()
}

#[test]
fn a_young_key_and_a_used_password_need_nothing() {
    let mut w = World::new();
    w.s.keys[0].last_used = Some(day(80));
    assert!(plan(&w.s, &LIMITS, day(82)).is_empty());
    w.s.login_profile = true;
    w.s.stored_password = true;
    w.s.password_last_used = Some(day(40));
    assert!(plan(&w.s, &LIMITS, day(82)).is_empty());
}

#[test]
fn rotation_starts_at_max_age_minus_grace_and_ends_after_the_grace() {
    let mut w = World::new();
    w.s.keys[0].last_used = Some(day(82));
    // 83 days = 90 - 7: due.
    assert!(plan(&w.s, &LIMITS, day(83) - Duration::seconds(1)).is_empty());
    let p = plan(&w.s, &LIMITS, day(83));
    assert_eq!(
        names(&p),
        [
            "CreateAccessKey",
            "PutSecretValue:rotated",
            "SendEmail:new-key",
            "TagUser:hr:key-rotation"
        ]
    );
    w.run(day(83), None);
    assert_eq!(w.s.stored_key.as_deref(), Some("K1"));
    assert_eq!(w.s.previous_key.as_deref(), Some("K0"));
    assert_eq!(w.mails, 1);
    w.consistent();
    // Both active through the grace: nothing to do, the old key still works.
    assert!(plan(&w.s, &LIMITS, day(90) - Duration::seconds(1)).is_empty());
    // Grace over (7 days after the new key): deactivate, delete, drop.
    let p = plan(&w.s, &LIMITS, day(90));
    assert_eq!(
        names(&p),
        [
            "UpdateAccessKey:K0:Inactive",
            "DeleteAccessKey:K0",
            "PutSecretValue:previous-dropped"
        ]
    );
    w.run(day(90), None);
    assert_eq!(w.s.keys.len(), 1);
    assert_eq!(w.s.previous_key, None);
    w.consistent();
    assert!(plan(&w.s, &LIMITS, day(90)).is_empty());
}

/// A crash after every step of both runs (start, then end of the grace), then
/// the next run: the same end state, within two keys, the mail at least once.
#[test]
fn rotation_converges_after_a_crash_after_every_step() {
    let mut reference = World::new();
    reference.s.keys[0].last_used = Some(day(82));
    let mut clean = reference.clone();
    let first = clean.run(day(83), None);
    let second = clean.run(day(90), None);
    assert_eq!((first, second), (4, 3));
    for (when, steps) in [(day(83), first), (day(90), second)] {
        for k in 0..steps {
            let mut w = reference.clone();
            if when == day(90) {
                w.run(day(83), None);
            }
            assert_eq!(w.run(when, Some(k)), k);
            // The next scheduled run, a day later.
            let later = when + Duration::days(1);
            w.settle(later);
            if when == day(83) {
                w.settle(day(91));
            }
            w.consistent();
            assert_eq!(w.s.keys.len(), 1, "crash after step {k} at {when}: {w:?}");
            let kept = &w.s.keys[0];
            assert!(kept.active && kept.id != "K0", "{w:?}");
            assert_eq!(w.s.previous_key, None);
            assert_eq!(w.s.mailed_for.as_deref(), Some(kept.id.as_str()));
            assert!(
                (1..=2).contains(&w.mails),
                "mail sent {} times: {w:?}",
                w.mails
            );
        }
    }
}

#[test]
fn a_key_created_but_never_stored_is_deleted_before_a_new_one() {
    let mut w = World::new();
    w.s.keys[0].last_used = Some(day(82));
    // Crash right after CreateKey: K1 exists, the secret does not know it.
    w.run(day(83), Some(1));
    assert_eq!(w.s.keys.len(), 2);
    let p = plan(&w.s, &LIMITS, day(84));
    assert_eq!(
        names(&p)[..3],
        [
            "DeleteAccessKey:K1",
            "CreateAccessKey",
            "PutSecretValue:rotated"
        ]
    );
    w.run(day(84), None);
    assert_eq!(w.s.stored_key.as_deref(), Some("K2"));
    w.consistent();
}

/// A second key made by hand: deleted first (nothing planted survives), so the
/// rotation never needs a third key.
#[test]
fn a_hand_made_second_key_is_deleted_first_within_two_keys() {
    let mut w = World::new();
    w.s.keys[0].last_used = Some(day(82));
    w.s.keys.push(Key {
        id: "HAND".into(),
        active: true,
        created: day(50),
        last_used: Some(day(82)),
    });
    let p = plan(&w.s, &LIMITS, day(83));
    assert_eq!(p.stages[0], vec![Step::DeleteKey { id: "HAND".into() }]);
    assert_eq!(p.stages[1], vec![Step::CreateKey]);
    w.run(day(83), None);
    assert!(w.s.keys.iter().all(|k| k.id != "HAND"));
    w.consistent();
    // Even when no rotation is due, a planted key goes.
    let mut w = World::new();
    w.s.keys[0].last_used = Some(day(10));
    w.s.keys.push(Key {
        id: "HAND".into(),
        active: false,
        created: day(5),
        last_used: None,
    });
    assert_eq!(
        names(&plan(&w.s, &LIMITS, day(11))),
        ["DeleteAccessKey:HAND"]
    );
}

#[test]
fn the_grace_is_counted_from_the_new_keys_creation() {
    let mut w = World::new();
    w.s.keys[0].last_used = Some(day(82));
    w.run(day(85), None);
    assert!(plan(&w.s, &LIMITS, day(92) - Duration::seconds(1)).is_empty());
    assert_eq!(plan(&w.s, &LIMITS, day(92)).stages.len(), 3);
    // An old key already deactivated by hand is only deleted.
    w.s.keys[0].active = false;
    assert_eq!(
        names(&plan(&w.s, &LIMITS, day(92))),
        ["DeleteAccessKey:K0", "PutSecretValue:previous-dropped"]
    );
    // Zero grace: the old key goes in the next run.
    let l = Limits {
        grace_days: 0,
        ..LIMITS
    };
    let mut w = World::new();
    w.s.keys[0].last_used = Some(day(89));
    assert_eq!(plan(&w.s, &l, day(90)).stages.len(), 4);
}

#[test]
fn no_mail_address_no_mail_but_the_rotation_still_runs() {
    let mut w = World::new();
    w.s.email = None;
    w.s.keys[0].last_used = Some(day(82));
    assert_eq!(
        names(&plan(&w.s, &LIMITS, day(83))),
        ["CreateAccessKey", "PutSecretValue:rotated"]
    );
}

#[test]
fn unused_thresholds_at_their_boundaries() {
    // Password: never used, counted from the user's creation.
    let mut w = World::new();
    w.s.keys.clear();
    w.s.stored_key = None;
    w.s.login_profile = true;
    w.s.stored_password = true;
    assert!(plan(&w.s, &LIMITS, day(45) - Duration::seconds(1)).is_empty());
    assert_eq!(
        names(&plan(&w.s, &LIMITS, day(45))),
        ["DeleteLoginProfile", "PutSecretValue:password-dropped"]
    );
    // Used: counted from the last use.
    w.s.password_last_used = Some(day(30));
    assert!(plan(&w.s, &LIMITS, day(75) - Duration::seconds(1)).is_empty());
    assert_eq!(plan(&w.s, &LIMITS, day(75)).stages.len(), 2);
    w.run(day(75), None);
    w.consistent();
    assert!(!w.s.login_profile && !w.s.stored_password);
    // Crash between the two: the secret follows on the next run.
    let mut w2 = World::new();
    w2.s.keys.clear();
    w2.s.stored_key = None;
    w2.s.login_profile = true;
    w2.s.stored_password = true;
    w2.run(day(45), Some(1));
    assert_eq!(
        names(&plan(&w2.s, &LIMITS, day(46))),
        ["PutSecretValue:password-dropped"]
    );
    // A key: its last use, else its creation; an unused key is deactivated,
    // never rotated (it stays in the secret; HR's next mover replaces it).
    let mut w = World::new();
    assert!(plan(&w.s, &LIMITS, day(45) - Duration::seconds(1)).is_empty());
    assert_eq!(
        names(&plan(&w.s, &LIMITS, day(45))),
        ["UpdateAccessKey:K0:Inactive"]
    );
    w.s.keys[0].last_used = Some(day(40));
    assert!(plan(&w.s, &LIMITS, day(85) - Duration::seconds(1))
        .iter_names()
        .all(|n| n != "UpdateAccessKey:K0:Inactive"));
    assert_eq!(
        names(&plan(&w.s, &LIMITS, day(85))),
        ["UpdateAccessKey:K0:Inactive"]
    );
    w.run(day(85), None);
    w.consistent();
    // Inactive: neither rotated nor touched again.
    assert!(plan(&w.s, &LIMITS, day(200)).is_empty());
}

impl Plan {
    fn iter_names(&self) -> impl Iterator<Item = String> + '_ {
        self.steps().map(ToString::to_string)
    }
}
