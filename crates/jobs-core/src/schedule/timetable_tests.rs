//! Next ticks across time zone changes, and the missed-tick rule, with `now` given.

use chrono::{DateTime, Utc};

use super::*;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .with_timezone(&Utc)
}

fn tt(cron: &str, tz: &str) -> Timetable {
    Timetable::parse(cron, tz).unwrap_or_else(|e| panic!("{cron} {tz}: {e:?}"))
}

/// The first `n` ticks after `from`.
fn ticks(t: &Timetable, from: &str, n: usize) -> Vec<String> {
    let mut at = utc(from);
    (0..n)
        .map(|_| {
            at = t.next_after(at).unwrap();
            at.to_rfc3339()
        })
        .collect()
}

#[test]
fn errors_name_the_field() {
    for bad in [
        "",
        "0 6 1,15 *",
        "61 * * * *",
        "0 6 32 * *",
        "every day",
        "* * * * * * 2030",
    ] {
        let e = Timetable::parse(bad, "UTC").unwrap_err();
        assert_eq!(e.field, "cron", "{bad:?}: {e:?}");
    }
    let long = "0 ".repeat(150);
    assert_eq!(Timetable::parse(&long, "UTC").unwrap_err().field, "cron");
    for bad in ["", "Europe/Pariss", "europe/paris", "+02:00", "CEST!"] {
        let e = Timetable::parse("0 6 * * *", bad).unwrap_err();
        assert_eq!(e.field, "timezone", "{bad:?}: {e:?}");
    }
    // Accepted: five fields, six with seconds, nicknames, names of days and months.
    for ok in [
        "0 6 1,15 * *",
        "*/10 * * * * *",
        "@daily",
        "0 9 * JAN-MAR MON-FRI",
    ] {
        tt(ok, "Europe/Paris");
    }
}

#[test]
fn sub_minute_expressions_are_recognized() {
    for (cron, sub_minute) in [
        ("* * * * * *", true),
        ("*/10 * * * * *", true),
        ("0,30 0 6 1 * *", true),
        ("0 * * * * *", false),
        ("15 */5 * * * *", false),
        ("* * * * *", false),
        ("0 6 1,15 * *", false),
    ] {
        assert_eq!(
            tt(cron, "UTC").fires_more_than_once_a_minute(),
            sub_minute,
            "{cron}"
        );
    }
}

#[test]
fn the_first_and_fifteenth_at_six_paris_time_in_winter_and_summer() {
    let t = tt("0 6 1,15 * *", "Europe/Paris");
    assert_eq!(
        ticks(&t, "2026-11-21T19:00:00Z", 3),
        [
            "2026-12-01T05:00:00+00:00", // CET, UTC+1
            "2026-12-15T05:00:00+00:00",
            "2027-01-01T05:00:00+00:00",
        ]
    );
    assert_eq!(
        ticks(&t, "2026-05-20T00:00:00Z", 1),
        ["2026-06-01T04:00:00+00:00"] // CEST, UTC+2
    );
    let next = t.next_after(utc("2026-11-21T19:00:00Z")).unwrap();
    assert_eq!(t.local(next).to_rfc3339(), "2026-12-01T06:00:00+01:00");
}

#[test]
fn a_local_time_that_does_not_exist_is_shifted_to_the_end_of_the_gap() {
    // Europe/Paris, 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00 UTC).
    let daily = tt("30 2 * * *", "Europe/Paris");
    assert_eq!(
        ticks(&daily, "2026-03-28T12:00:00Z", 2),
        [
            "2026-03-29T01:00:00+00:00", // 02:30 does not exist: 03:00 CEST
            "2026-03-30T00:30:00+00:00", // 02:30 CEST
        ]
    );
    // Four matching times in the gap (02:00 … 02:45) and 03:00 itself make one run.
    let quarterly = tt("*/15 * * * *", "Europe/Paris");
    assert_eq!(
        ticks(&quarterly, "2026-03-29T00:30:00Z", 3),
        [
            "2026-03-29T00:45:00+00:00", // 01:45 CET
            "2026-03-29T01:00:00+00:00", // 03:00 CEST
            "2026-03-29T01:15:00+00:00", // 03:15 CEST
        ]
    );
}

#[test]
fn a_local_time_that_happens_twice_fires_once_at_its_first_occurrence() {
    // Europe/Paris, 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:00-02:59 happen twice.
    let daily = tt("30 2 * * *", "Europe/Paris");
    assert_eq!(
        ticks(&daily, "2026-10-24T12:00:00Z", 2),
        [
            "2026-10-25T00:30:00+00:00", // 02:30 CEST; not again at 02:30 CET (01:30 UTC)
            "2026-10-26T01:30:00+00:00", // 02:30 CET
        ]
    );
    let half_hourly = tt("*/30 * * * *", "Europe/Paris");
    assert_eq!(
        ticks(&half_hourly, "2026-10-24T23:00:00Z", 4),
        [
            "2026-10-24T23:30:00+00:00", // 01:30 CEST
            "2026-10-25T00:00:00+00:00", // 02:00 CEST
            "2026-10-25T00:30:00+00:00", // 02:30 CEST
            "2026-10-25T02:00:00+00:00", // 03:00 CET: the repeated 02:00 and 02:30 are not run
        ]
    );
    // Starting inside the repeated hour (02:10 CET, its second pass).
    assert_eq!(
        ticks(
            &tt("*/15 * * * *", "Europe/Paris"),
            "2026-10-25T01:10:00Z",
            1
        ),
        ["2026-10-25T02:00:00+00:00"]
    );
    // Every second: the 3,599 repeated seconds are stepped over.
    assert_eq!(
        ticks(
            &tt("* * * * * *", "Europe/Paris"),
            "2026-10-25T01:00:00Z",
            1
        ),
        ["2026-10-25T02:00:00+00:00"]
    );
}

#[test]
fn a_skipped_day_is_a_gap_too() {
    // Pacific/Apia skipped 2011-12-30 (UTC-10 to UTC+14 at midnight).
    let t = tt("0 6 * * *", "Pacific/Apia");
    assert_eq!(
        ticks(&t, "2011-12-29T16:00:00Z", 2),
        [
            "2011-12-30T10:00:00+00:00", // 30th 06:00 never happened: 31st 00:00
            "2011-12-30T16:00:00+00:00", // 31st 06:00 (+14)
        ]
    );
}

#[test]
fn an_expression_that_never_matches_has_no_next_tick() {
    assert_eq!(
        tt("0 0 30 2 *", "UTC").next_after(utc("2026-01-01T00:00:00Z")),
        None
    );
}

#[test]
fn missed_ticks_fire_once_for_the_most_recent_and_count_the_rest() {
    let hourly = tt("0 * * * *", "UTC");
    // Down from 09:30 to 13:20: the 10, 11, 12 and 13 o'clock ticks were missed.
    assert_eq!(
        hourly.catch_up(utc("2026-01-01T10:00:00Z"), utc("2026-01-01T13:20:00Z")),
        CatchUp {
            fire: utc("2026-01-01T13:00:00Z"),
            skipped: 3,
            next: Some(utc("2026-01-01T14:00:00Z")),
        }
    );
    // On time (or a little late): nothing skipped.
    for now in ["2026-01-01T10:00:00Z", "2026-01-01T10:59:59Z"] {
        assert_eq!(
            hourly.catch_up(utc("2026-01-01T10:00:00Z"), utc(now)),
            CatchUp {
                fire: utc("2026-01-01T10:00:00Z"),
                skipped: 0,
                next: Some(utc("2026-01-01T11:00:00Z")),
            },
            "{now}"
        );
    }
    // A stored tick that is not on the expression's grid (the expression was changed)
    // still counts as one.
    assert_eq!(
        hourly.catch_up(utc("2026-01-01T09:45:00Z"), utc("2026-01-01T10:30:00Z")),
        CatchUp {
            fire: utc("2026-01-01T10:00:00Z"),
            skipped: 1,
            next: Some(utc("2026-01-01T11:00:00Z")),
        }
    );
}

#[test]
fn the_repeated_hour_is_not_a_run_of_missed_ticks() {
    let t = tt("*/30 * * * *", "Europe/Paris");
    assert_eq!(
        t.catch_up(utc("2026-10-25T00:30:00Z"), utc("2026-10-25T01:45:00Z")),
        CatchUp {
            fire: utc("2026-10-25T00:30:00Z"),
            skipped: 0,
            next: Some(utc("2026-10-25T02:00:00Z")),
        }
    );
}

#[test]
fn a_long_outage_stops_counting_but_still_fires_the_latest_tick() {
    let every_second = tt("* * * * * *", "UTC");
    let now = utc("2026-01-02T00:00:00Z");
    let c = every_second.catch_up(utc("2026-01-01T00:00:00Z"), now);
    assert_eq!(c.skipped, MAX_COUNTED_SKIPS);
    assert_eq!(c.fire, now);
    assert_eq!(c.next, Some(utc("2026-01-02T00:00:01Z")));

    // The bisection finds the exact last tick of a sparser expression too.
    let minutely = tt("7 * * * * *", "UTC");
    let c = minutely.catch_up(utc("2026-01-01T00:00:07Z"), utc("2026-02-01T12:34:56Z"));
    assert_eq!(c.skipped, MAX_COUNTED_SKIPS);
    assert_eq!(c.fire, utc("2026-02-01T12:34:07Z"));
    assert_eq!(c.next, Some(utc("2026-02-01T12:35:07Z")));
}
