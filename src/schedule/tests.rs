use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::config::Config;
use crate::event::check_window;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-12-07 10:00:00 UTC);

fn cfg_with(pairs: &[(&str, &str)]) -> ScheduleConfig {
    let mut m: BTreeMap<&str, &str> = [
        ("SENDER_EMAIL", "it@example.com"),
        (
            "SCHEDULE_TARGET_ARN",
            "arn:aws:sqs:us-east-1:123456789012:hr.fifo",
        ),
        (
            "SCHEDULER_ROLE_ARN",
            "arn:aws:iam::123456789012:role/hr-scheduler",
        ),
    ]
    .into_iter()
    .collect();
    for (k, v) in pairs {
        m.insert(k, v);
    }
    Config::from_env(|k| m.get(k).map(|v| (*v).to_owned()))
        .unwrap()
        .schedule
}

fn cfg() -> ScheduleConfig {
    cfg_with(&[])
}

fn at(days: i64) -> OffsetDateTime {
    NOW + time::Duration::days(days)
}

fn ts(t: OffsetDateTime) -> String {
    format_utc(t)
}

/// An event of E1 by JSON; `dates` are extra employee fields.
fn event(id: &str, kind: &str, occurred: OffsetDateTime, dates: &[(&str, String)]) -> HrEvent {
    let mut emp = json!({"employee_id":"E1","email":"ann.lee@example.com","first_name":"Ann","department":"engineering"});
    for (k, v) in dates {
        emp[*k] = json!(v);
    }
    let body = json!({"event_id": id, "event_type": format!("employee.{kind}"), "occurred_at": ts(occurred), "employee": emp});
    parse_body(&body.to_string()).unwrap()
}

type Store = BTreeMap<String, Pending>;

fn pending_of(s: &Spec) -> Pending {
    Pending {
        name: s.name.clone(),
        expression: s.expression(),
        input: s.input.clone(),
        target_arn: s.target_arn.clone(),
        role_arn: s.role_arn.clone(),
        group_id: Some(s.group_id.clone()),
    }
}

fn set_of(store: &Store) -> PendingSet {
    PendingSet {
        start: store.get(&schedule_name(Kind::Start, "E1")).cloned(),
        end: store.get(&schedule_name(Kind::End, "E1")).cloned(),
    }
}

fn apply(store: &mut Store, step: &SchedStep) {
    match step {
        SchedStep::Create(s) | SchedStep::Update(s) => {
            store.insert(s.name.clone(), pending_of(s));
        }
        SchedStep::Delete { name } => {
            store.remove(name);
        }
    }
}

fn steps_of(d: &Decision) -> Vec<SchedStep> {
    match d {
        Decision::Proceed { steps, .. } | Decision::Scheduled { steps, .. } => steps.clone(),
        _ => Vec::new(),
    }
}

fn run(ev: &HrEvent, store: &mut Store, known: &Known) -> Decision {
    let d = decide(ev, NOW, &cfg(), &set_of(store), known);
    for s in steps_of(&d) {
        apply(store, &s);
    }
    d
}

fn kinds(store: &Store) -> BTreeSet<&'static str> {
    store
        .keys()
        .map(|n| match employee_of(n) {
            Some((k, _)) => k.as_str(),
            None => "?",
        })
        .collect()
}

fn input_of(p: &Pending) -> HrEvent {
    parse_body(&p.input).expect("a schedule's input is a valid event")
}

#[test]
fn names_are_deterministic_and_within_schedulers_rules() {
    assert_eq!(schedule_name(Kind::Start, "E1001"), "hr-start-E1001");
    assert_eq!(schedule_name(Kind::End, "E1001"), "hr-end-E1001");
    assert_eq!(employee_of("hr-end-E1001"), Some((Kind::End, "E1001")));
    for odd in ["emp:42/x", "a@b", &"9".repeat(60), "x+y=z"] {
        let n = schedule_name(Kind::Start, odd);
        assert!(crate::config::is_schedule_name(&n), "{n}");
        assert!(n.starts_with("hr-start-_"), "{n}");
        assert_eq!(n, schedule_name(Kind::Start, odd), "deterministic");
        assert_ne!(n, schedule_name(Kind::End, odd));
        assert_eq!(employee_of(&n), None, "hashed names need the input");
    }
    assert_ne!(
        schedule_name(Kind::Start, "a@b"),
        schedule_name(Kind::Start, "a@c")
    );
}

#[test]
fn dates_resolve_in_the_zone_at_day_boundaries() {
    let day = |s: &str| EffectiveDate::parse(s).unwrap();
    let utc = cfg();
    let berlin = cfg_with(&[("HR_TIME_ZONE", "Europe/Berlin")]);
    let cases: &[(&ScheduleConfig, &str, OffsetDateTime, OffsetDateTime)] = &[
        // UTC: a date-only end is the end of that day.
        (
            &utc,
            "2026-12-31",
            datetime!(2026-12-31 00:00 UTC),
            datetime!(2027-01-01 00:00 UTC),
        ),
        // Winter in Berlin (+01:00).
        (
            &berlin,
            "2026-12-01",
            datetime!(2026-11-30 23:00 UTC),
            datetime!(2026-12-01 23:00 UTC),
        ),
        // DST starts on 29 March 2026 (02:00 -> 03:00): the day has 23 hours.
        (
            &berlin,
            "2026-03-29",
            datetime!(2026-03-28 23:00 UTC),
            datetime!(2026-03-29 22:00 UTC),
        ),
        // DST ends on 25 October 2026: the day has 25 hours.
        (
            &berlin,
            "2026-10-25",
            datetime!(2026-10-24 22:00 UTC),
            datetime!(2026-10-25 23:00 UTC),
        ),
    ];
    for (c, d, start, end) in cases {
        assert_eq!(
            start_instant(&day(d), &c.time_zone),
            Some(*start),
            "start {d} in {}",
            c.time_zone_name
        );
        assert_eq!(
            end_instant(&day(d), &c.time_zone),
            Some(*end),
            "end {d} in {}",
            c.time_zone_name
        );
    }
    // Havana skips midnight when DST starts (8 March 2026, 00:00 -> 01:00): the
    // day starts at the first instant that exists, 01:00 -04:00.
    let havana = cfg_with(&[("HR_TIME_ZONE", "America/Havana")]);
    assert_eq!(
        start_instant(&day("2026-03-08"), &havana.time_zone),
        Some(datetime!(2026-03-08 05:00 UTC))
    );
    // An instant is taken as given, whatever the zone.
    let t = EffectiveDate::parse("2026-12-01T09:30:00+05:30").unwrap();
    assert_eq!(
        end_instant(&t, &berlin.time_zone),
        Some(datetime!(2026-12-01 04:00 UTC))
    );
    assert_eq!(t.as_text(), "2026-12-01T04:00:00Z");
    assert_eq!(day("2026-03-09").as_text(), "2026-03-09");
    for bad in [
        "2026-13-01",
        "2026-2-1",
        "01/12/2026",
        "2026-12-01T09:00",
        "tomorrow",
    ] {
        assert_eq!(EffectiveDate::parse(bad), None, "{bad}");
    }
}

#[test]
fn the_lead_is_counted_in_the_zones_calendar() {
    let berlin = cfg_with(&[("HR_TIME_ZONE", "Europe/Berlin")]);
    // Start Monday 30 March 00:00 CEST; P1D before is Sunday 29 March 00:00 CET,
    // 23 hours earlier (the night DST started).
    let start = datetime!(2026-03-29 22:00 UTC);
    assert_eq!(
        provision_at(start, &berlin),
        Some(datetime!(2026-03-28 23:00 UTC))
    );
    let half_day = cfg_with(&[("PROVISION_LEAD", "PT12H")]);
    assert_eq!(
        provision_at(start, &half_day),
        Some(datetime!(2026-03-29 10:00 UTC))
    );
    let none = cfg_with(&[("PROVISION_LEAD", "PT0S")]);
    assert_eq!(provision_at(start, &none), Some(start));
}

#[test]
fn a_joiner_starting_later_is_scheduled_with_its_input() {
    let ev = event(
        "j1",
        "joined",
        at(-20),
        &[("start_date", "2026-12-21".into())],
    );
    let mut store = Store::new();
    let d = run(&ev, &mut store, &Known::default());
    let due = datetime!(2026-12-20 00:00 UTC);
    assert!(
        matches!(&d, Decision::Scheduled { due_at, steps } if *due_at == due && steps.len() == 1),
        "{d:?}"
    );
    assert_eq!(steps_of(&d)[0].to_string(), "CreateSchedule:hr-start-E1");
    let p = &store["hr-start-E1"];
    assert_eq!(p.expression, "at(2026-12-20T00:00:00)");
    assert_eq!(p.group_id.as_deref(), Some("E1"));
    let delivered = input_of(p);
    assert_eq!(delivered.event_id, "j1");
    assert_eq!(delivered.event_type, EventType::Joined);
    assert_eq!(delivered.occurred_at, at(-20));
    let f = delivered.schedule.clone().unwrap();
    assert_eq!((f.due_at, f.by.event_id.as_str()), (due, "j1"));
    // Delivered when due, 20 days after HR entered it: young by its due time.
    assert!(check_window(&delivered, due + time::Duration::minutes(1), 14).is_ok());
    assert!(
        check_window(&ev, due, 14).is_err(),
        "the original is too old by then"
    );
    // Within the lead it acts now; a redelivery converges (nothing more).
    let soon = event(
        "j2",
        "joined",
        at(-1),
        &[("start_date", ts(at(1) - time::Duration::hours(1)))],
    );
    assert!(
        matches!(decide(&soon, NOW, &cfg(), &PendingSet::default(), &Known::default()),
        Decision::Proceed { ref steps, act_as: None } if steps.is_empty())
    );
    assert_eq!(
        steps_of(&decide(
            &ev,
            NOW,
            &cfg(),
            &set_of(&store),
            &Known::default()
        )),
        vec![]
    );
}

#[test]
fn an_end_date_schedules_a_leaver_built_from_the_record() {
    let ev = event("c1", "joined", at(-1), &[("end_date", "2027-03-31".into())]);
    let mut store = Store::new();
    let d = run(&ev, &mut store, &Known::default());
    assert!(
        matches!(&d, Decision::Proceed { act_as: None, .. }),
        "{d:?}"
    );
    assert_eq!(
        steps_of(&d)
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["CreateSchedule:hr-end-E1"]
    );
    let p = &store["hr-end-E1"];
    assert_eq!(p.expression, "at(2027-04-01T00:00:00)");
    let left = input_of(p);
    assert_eq!(left.event_type, EventType::Left);
    assert_eq!(left.occurred_at, datetime!(2027-04-01 00:00 UTC));
    assert!(
        left.event_id.starts_with("end-") && left.event_id.len() == 36,
        "{}",
        left.event_id
    );
    assert_eq!(left.user_name, "ann.lee");
    assert_eq!(left.schedule.unwrap().by.event_id, "c1");
    // The same record gives the same leaver id; another record another.
    assert_eq!(leaver_for(&ev, left.occurred_at).event_id, left.event_id);
    let other = event(
        "c2",
        "changed",
        at(-1),
        &[("end_date", "2027-03-31".into())],
    );
    assert_ne!(leaver_for(&other, left.occurred_at).event_id, left.event_id);
}

#[test]
fn without_target_and_role_a_record_needing_a_schedule_is_rejected() {
    let mut m: BTreeMap<&str, &str> = BTreeMap::new();
    m.insert("SENDER_EMAIL", "it@example.com");
    let bare = Config::from_env(|k| m.get(k).map(|v| (*v).to_owned()))
        .unwrap()
        .schedule;
    let ev = event("j1", "joined", at(-1), &[("start_date", ts(at(10)))]);
    let d = decide(&ev, NOW, &bare, &PendingSet::default(), &Known::default());
    assert!(
        matches!(&d, Decision::Rejected(why) if why.contains("SCHEDULE_TARGET_ARN") && why.contains("SCHEDULER_ROLE_ARN")),
        "{d:?}"
    );
    // A past date needs no schedule: the record acts now.
    let past = event(
        "j2",
        "joined",
        at(-1),
        &[("start_date", ts(at(-1))), ("end_date", ts(at(-1)))],
    );
    assert!(matches!(
        decide(&past, NOW, &bare, &PendingSet::default(), &Known::default()),
        Decision::Proceed { .. }
    ));
}

/// The records of the pair table: (name, event, whether E1 has a user after it).
fn records() -> Vec<(&'static str, HrEvent, bool)> {
    let t0 = at(-3);
    vec![
        (
            "joined start+20d",
            event("a1", "joined", t0, &[("start_date", ts(at(20)))]),
            false,
        ),
        (
            "joined start+20d end+100d",
            event(
                "a2",
                "joined",
                t0,
                &[("start_date", ts(at(20))), ("end_date", ts(at(100)))],
            ),
            false,
        ),
        (
            "changed end+30d",
            event("a3", "changed", t0, &[("end_date", "2027-01-06".into())]),
            true,
        ),
        (
            "left end+10d",
            event("a4", "left", t0, &[("end_date", ts(at(10)))]),
            true,
        ),
    ]
}

/// What E1's user says before the first record of a pair: an older joiner, or
/// no user at all.
fn before(user: bool) -> Known {
    Known {
        applied: user.then(|| EventKey::new(at(-10), EventType::Joined, "a0")),
        user_exists: user,
    }
}

#[test]
fn every_pair_of_pending_schedule_and_newer_record_leaves_what_the_newer_implies() {
    let t1 = at(-1);
    // (record, expected schedule kinds after it: with no user / with a user)
    let newer: Vec<(&str, HrEvent, &[&str], &[&str])> = vec![
        ("joined now", event("b1", "joined", t1, &[]), &[], &[]),
        (
            "joined start moved",
            event("b2", "joined", t1, &[("start_date", ts(at(25)))]),
            &["start"],
            &["start"],
        ),
        // With no user, a mover takes the pending start over (a record without
        // one deletes the start: nothing pending when there was none).
        (
            "changed no dates",
            event("b3", "changed", t1, &[]),
            &["start"],
            &[],
        ),
        (
            "changed end moved",
            event("b4", "changed", t1, &[("end_date", ts(at(40)))]),
            &["end", "start"],
            &["end"],
        ),
        ("left now", event("b5", "left", t1, &[]), &[], &[]),
        (
            "left end+15d",
            event("b6", "left", t1, &[("end_date", ts(at(15)))]),
            &[],
            &["end"],
        ),
    ];
    for (a_name, a, user) in records() {
        let mut store = Store::new();
        run(&a, &mut store, &before(user));
        assert!(!store.is_empty(), "{a_name} leaves a schedule");
        for (b_name, b, no_user, with_user) in &newer {
            let known = Known {
                applied: user.then(|| a.key()),
                user_exists: user,
            };
            let mut s = store.clone();
            let d = run(b, &mut s, &known);
            let mut want: BTreeSet<&str> = if user {
                with_user.iter().copied().collect()
            } else {
                no_user.iter().copied().collect()
            };
            // A mover with no pending start has nothing to take over.
            if !user && b_name.starts_with("changed") && !store.contains_key("hr-start-E1") {
                want.remove("start");
            }
            assert_eq!(kinds(&s), want, "{a_name} then {b_name}: {d:?}");
            for p in s.values() {
                let by = input_of(p).schedule.unwrap().by.event_id;
                assert_eq!(
                    by, b.event_id,
                    "{a_name} then {b_name}: {} is the newer record's",
                    p.name
                );
            }
            // Redelivered, the newer record changes nothing more.
            let again = decide(b, NOW, &cfg(), &set_of(&s), &known);
            assert_eq!(
                steps_of(&again),
                vec![],
                "{a_name} then {b_name}, redelivered"
            );
            // The older record, redelivered after it, is stale wherever a pending
            // schedule or the user remembers the newer one (the planner reports a
            // record older than the user's last event: no schedule step here).
            let acted = matches!(d, Decision::Proceed { .. });
            let creates = acted && (b.event_type == EventType::Joined);
            let known_b = Known {
                applied: if acted && (user || creates) {
                    Some(b.key())
                } else {
                    known.applied.clone()
                },
                user_exists: user || creates,
            };
            let old = decide(&a, NOW, &cfg(), &set_of(&s), &known_b);
            if known_b.applied.as_ref().is_some_and(|k| *k > a.key()) {
                assert_eq!(
                    old,
                    Decision::Proceed {
                        steps: vec![],
                        act_as: None
                    },
                    "{a_name} after {b_name}"
                );
            } else if !s.is_empty() {
                assert!(
                    matches!(old, Decision::Stale(_)),
                    "{a_name} after {b_name}: {old:?}"
                );
            }
        }
    }
}

#[test]
fn a_crash_after_any_step_then_redelivery_converges() {
    let t1 = at(-1);
    let newer = [
        event(
            "b2",
            "joined",
            t1,
            &[("start_date", ts(at(25))), ("end_date", ts(at(50)))],
        ),
        event("b4", "changed", t1, &[("end_date", ts(at(40)))]),
        event("b5", "left", t1, &[]),
        event("b6", "left", t1, &[("end_date", ts(at(15)))]),
    ];
    let mut checked = 0;
    for (a_name, a, user) in records() {
        let mut base = Store::new();
        run(&a, &mut base, &before(user));
        for b in &newer {
            let known = Known {
                applied: user.then(|| a.key()),
                user_exists: user,
            };
            let mut done = base.clone();
            let steps = steps_of(&run(b, &mut done, &known));
            for k in 0..=steps.len() {
                let mut s = base.clone();
                for step in &steps[..k] {
                    apply(&mut s, step);
                }
                run(b, &mut s, &known);
                assert_eq!(
                    s, done,
                    "{a_name} then {}: crash after {k} of {steps:?}",
                    b.event_id
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 16, "{checked}");
}

#[test]
fn a_hire_rescinded_before_its_start_deletes_the_start_and_creates_nothing() {
    let (_, joined, _) = records().remove(1);
    let mut store = Store::new();
    run(&joined, &mut store, &Known::default());
    assert_eq!(kinds(&store), ["end", "start"].into_iter().collect());
    let left = event("l1", "left", at(-1), &[]);
    let d = run(&left, &mut store, &Known::default());
    assert!(
        matches!(&d, Decision::Proceed { act_as: None, .. }),
        "{d:?}"
    );
    assert_eq!(
        steps_of(&d)
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["DeleteSchedule:hr-start-E1", "DeleteSchedule:hr-end-E1"]
    );
    assert!(store.is_empty());
}

#[test]
fn a_delivered_schedule_acts_only_while_it_is_the_newest() {
    let ev = event("j1", "joined", at(-20), &[("start_date", ts(at(5)))]);
    let mut store = Store::new();
    run(&ev, &mut store, &Known::default());
    let fired = input_of(&store["hr-start-E1"]);
    let due = fired.schedule.as_ref().unwrap().due_at;
    let then = due + time::Duration::seconds(30);
    // Due: it acts, and its own schedule (if Scheduler has not deleted it yet)
    // goes.
    let d = decide(&fired, then, &cfg(), &set_of(&store), &Known::default());
    assert_eq!(
        d,
        Decision::Proceed {
            steps: vec![SchedStep::Delete {
                name: "hr-start-E1".into()
            }],
            act_as: None
        }
    );
    let d = decide(
        &fired,
        then,
        &cfg(),
        &PendingSet::default(),
        &Known::default(),
    );
    assert_eq!(
        d,
        Decision::Proceed {
            steps: vec![],
            act_as: None
        }
    );
    // Replaced since (a moved start): the pending one will deliver instead.
    let moved = event("j2", "joined", at(-2), &[("start_date", ts(at(8)))]);
    let mut replaced = store.clone();
    run(&moved, &mut replaced, &Known::default());
    assert!(
        matches!(decide(&fired, then, &cfg(), &set_of(&replaced), &Known::default()), Decision::Stale(why) if why.contains("replaced"))
    );
    // A newer event was applied to the user after the record that scheduled it.
    let newer = Known {
        applied: Some(EventKey::new(at(-2), EventType::Left, "l9")),
        user_exists: true,
    };
    assert!(matches!(
        decide(&fired, then, &cfg(), &PendingSet::default(), &newer),
        Decision::Stale(_)
    ));
    // A scheduled leaver whose record is the user's last event acts, although its
    // occurred_at (the end) is later than anything applied.
    let c = event("c1", "changed", at(-3), &[("end_date", ts(at(2)))]);
    let mut s = Store::new();
    let known = Known {
        applied: Some(c.key()),
        user_exists: true,
    };
    run(&c, &mut s, &known);
    let leaver = input_of(&s["hr-end-E1"]);
    let d = decide(
        &leaver,
        at(2) + time::Duration::seconds(5),
        &cfg(),
        &set_of(&s),
        &known,
    );
    assert!(matches!(d, Decision::Proceed { .. }), "{d:?}");
}

#[test]
fn a_scheduled_input_is_validated() {
    let ev = event("j1", "joined", at(-1), &[("start_date", ts(at(5)))]);
    let mut store = Store::new();
    run(&ev, &mut store, &Known::default());
    let input: Value = serde_json::from_str(&store["hr-start-E1"].input).unwrap();
    for (field, bad) in [
        ("due_at", json!("soon")),
        ("by_event_type", json!("employee.fired")),
        ("by_event_id", json!("a b")),
        ("extra", json!(1)),
    ] {
        let mut v = input.clone();
        v["schedule"][field] = bad;
        assert!(parse_body(&v.to_string()).is_err(), "{field}");
    }
    // Due in the future: refused, like a timestamp from the future.
    let fired = input_of(&store["hr-start-E1"]);
    assert!(check_window(&fired, NOW, 14)
        .unwrap_err()
        .contains("due_at"));
}
