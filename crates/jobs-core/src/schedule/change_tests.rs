//! The `next_run_at` rule of a change, and the checks creation and change share, with `now`
//! given.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::*;
use crate::id::TenantId;
use crate::schedule::ScheduleId;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .with_timezone(&Utc)
}

const NOW: &str = "2026-03-10T12:00:00Z";

/// Daily at 06:00 Paris time, next due on the 11th, created on the 1st.
fn stored() -> Schedule {
    let created = utc("2026-03-01T00:00:00Z");
    Schedule {
        id: ScheduleId::new(),
        tenant_id: TenantId::parse("dev").unwrap_or_else(|e| panic!("{e}")),
        name: "approved expenses".into(),
        cron: "0 6 * * *".into(),
        timezone: "Europe/Paris".into(),
        kind: JobKind::parse("export").unwrap_or_else(|e| panic!("{e}")),
        params: json!({"export": {"dataset": "expenses", "format": "csv"}}),
        enabled: true,
        next_run_at: Some(utc("2026-03-11T05:00:00Z")),
        last_run_at: Some(utc("2026-03-10T05:00:00Z")),
        last_job_id: None,
        skipped_ticks: 3,
        last_error: Some("dataset `expenses` is not configured".into()),
        created_at: created,
        updated_at: created,
    }
}

fn apply(s: &Schedule, change: ScheduleChange) -> Result<Schedule, Invalid> {
    s.changed(&change, false, utc(NOW))
}

fn ok(s: &Schedule, change: ScheduleChange) -> Schedule {
    apply(s, change.clone()).unwrap_or_else(|e| panic!("{change:?}: {e:?}"))
}

fn field(s: &Schedule, change: ScheduleChange) -> String {
    match apply(s, change.clone()) {
        Ok(changed) => panic!("{change:?} was accepted: {changed:?}"),
        Err(e) => e.field,
    }
}

#[test]
fn a_new_cron_moves_the_next_tick_to_its_first_tick_after_now() {
    let s = stored();
    let changed = ok(
        &s,
        ScheduleChange {
            cron: Some(" 30 18 * * * ".into()),
            ..Default::default()
        },
    );
    assert_eq!(changed.cron, "30 18 * * *");
    // 18:30 in Paris on the 10th (CET, UTC+1) is after 12:00 UTC: it is today's.
    assert_eq!(changed.next_run_at, Some(utc("2026-03-10T17:30:00Z")));
    assert_eq!(changed.timezone, s.timezone);
    assert_eq!(changed.name, s.name);
    assert_eq!(changed.skipped_ticks, s.skipped_ticks);
    assert_eq!(changed.last_error, s.last_error);
}

#[test]
fn a_new_time_zone_moves_the_next_tick_to_its_wall_clock() {
    let changed = ok(
        &stored(),
        ScheduleChange {
            timezone: Some("Asia/Tokyo".into()),
            ..Default::default()
        },
    );
    // 06:00 in Tokyo (UTC+9) is 21:00 UTC the day before: the first after now is the 11th.
    assert_eq!(changed.next_run_at, Some(utc("2026-03-10T21:00:00Z")));
    assert_eq!(changed.cron, "0 6 * * *");
}

#[test]
fn a_due_tick_of_the_old_timetable_is_dropped_when_the_timing_changes() {
    let mut s = stored();
    s.next_run_at = Some(utc("2026-03-10T05:00:00Z")); // due, not fired yet
    let changed = ok(
        &s,
        ScheduleChange {
            cron: Some("0 7 * * *".into()),
            ..Default::default()
        },
    );
    assert_eq!(changed.next_run_at, Some(utc("2026-03-11T06:00:00Z")));
    assert_eq!(changed.skipped_ticks, s.skipped_ticks);
}

#[test]
fn the_same_timing_sent_again_keeps_a_due_tick() {
    let mut s = stored();
    s.next_run_at = Some(utc("2026-03-10T05:00:00Z"));
    let changed = ok(
        &s,
        ScheduleChange {
            cron: Some("0 6 * * *".into()),
            timezone: Some("Europe/Paris".into()),
            name: Some("renamed".into()),
            ..Default::default()
        },
    );
    assert_eq!(changed.next_run_at, s.next_run_at);
    assert_eq!(changed.name, "renamed");
}

#[test]
fn name_and_job_changes_keep_the_next_tick() {
    let s = stored();
    let kind = JobKind::parse("import").unwrap_or_else(|e| panic!("{e}"));
    let params = json!({"import": {"dataset": "expenses"}});
    let changed = ok(
        &s,
        ScheduleChange {
            name: Some("  monthly  ".into()),
            job: Some((kind.clone(), params.clone())),
            ..Default::default()
        },
    );
    assert_eq!(changed.name, "monthly");
    assert_eq!((&changed.kind, &changed.params), (&kind, &params));
    assert_eq!(changed.next_run_at, s.next_run_at);
    assert_eq!(ok(&s, ScheduleChange::default()), s);
}

#[test]
fn pausing_clears_the_next_tick_even_with_a_new_cron() {
    let s = stored();
    let paused = ok(
        &s,
        ScheduleChange {
            enabled: Some(false),
            cron: Some("0 7 * * *".into()),
            ..Default::default()
        },
    );
    assert!(!paused.enabled);
    assert_eq!(paused.next_run_at, None);
    assert_eq!(paused.cron, "0 7 * * *");
    // Changing a paused schedule's timing keeps it paused.
    let still = ok(
        &paused,
        ScheduleChange {
            timezone: Some("UTC".into()),
            ..Default::default()
        },
    );
    assert!(!still.enabled);
    assert_eq!(still.next_run_at, None);
}

#[test]
fn resuming_starts_from_the_first_tick_after_now_and_clears_the_error() {
    let mut s = stored();
    s.enabled = false;
    s.next_run_at = None;
    let resumed = ok(
        &s,
        ScheduleChange {
            enabled: Some(true),
            ..Default::default()
        },
    );
    assert!(resumed.enabled);
    assert_eq!(resumed.next_run_at, Some(utc("2026-03-11T05:00:00Z")));
    assert_eq!(resumed.last_error, None);
    // Resumed with a new time zone: the new timetable's first tick.
    let retimed = ok(
        &s,
        ScheduleChange {
            enabled: Some(true),
            timezone: Some("UTC".into()),
            ..Default::default()
        },
    );
    assert_eq!(retimed.next_run_at, Some(utc("2026-03-11T06:00:00Z")));
    // Enabling an enabled schedule changes nothing, and keeps its error.
    let enabled = stored();
    assert_eq!(
        ok(
            &enabled,
            ScheduleChange {
                enabled: Some(true),
                ..Default::default()
            }
        ),
        enabled
    );
}

#[test]
fn bad_changes_name_the_field() {
    let s = stored();
    let cron = |c: &str| ScheduleChange {
        cron: Some(c.into()),
        ..Default::default()
    };
    let name = |n: &str| ScheduleChange {
        name: Some(n.into()),
        ..Default::default()
    };
    assert_eq!(field(&s, cron("61 * * * *")), "cron");
    assert_eq!(field(&s, cron("")), "cron");
    assert_eq!(field(&s, cron("0 0 30 2 *")), "cron"); // never matches
    assert_eq!(field(&s, cron("*/10 * * * * *")), "cron"); // sub-minute
    assert_eq!(field(&s, name("   ")), "name");
    assert_eq!(field(&s, name(&"x".repeat(MAX_NAME_CHARS + 1))), "name");
    assert_eq!(field(&s, name("a\nb")), "name");
    assert_eq!(
        field(
            &s,
            ScheduleChange {
                timezone: Some("Europe/Pariss".into()),
                ..Default::default()
            }
        ),
        "timezone"
    );
    // A paused schedule cannot be given a timing it could not resume on.
    let mut paused = s.clone();
    paused.enabled = false;
    assert_eq!(field(&paused, cron("0 0 30 2 *")), "cron");
    // Sub-minute expressions pass where configuration allows them.
    let fast = s
        .changed(&cron("*/10 * * * * *"), true, utc(NOW))
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(fast.next_run_at, Some(utc("2026-03-10T12:00:10Z")));
    assert_eq!(
        checked_name(&"é".repeat(MAX_NAME_CHARS)).map(|n| n.len()),
        Ok(400)
    );
}
