//! When a schedule fires: a cron expression read on the wall clock of an IANA time zone.
//!
//! The expression is matched against *local* times (croner does the matching on naive
//! date-times); this module turns the matching local times into instants. Two rules decide
//! the cases where local time and instants do not line up one to one:
//!
//! - **A local time that does not exist** (the clock jumps forward, e.g. 02:30 on the
//!   spring change in Europe/Paris) is **shifted** to the first instant after the gap
//!   (03:00 CEST). The run is late, never lost; several matching times inside one gap
//!   (`*/15 * * * *` matches 02:00, 02:15, 02:30, 02:45) become that one run.
//! - **A local time that happens twice** (the clock goes back, e.g. 02:30 on the autumn
//!   change) **fires once**, at its first occurrence (02:30 CEST). The repeated hour fires
//!   nothing: each wall-clock time the expression names fires at most once.
//!
//! Missed ticks (the enqueuers were down) are resolved by [`Timetable::catch_up`]: fire
//! once, for the most recent due tick, and count the older ones as skipped.

use std::str::FromStr;

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use crate::invalid::Invalid;

/// Longest cron expression accepted.
const MAX_CRON_LEN: usize = 200;
/// Skipped ticks counted one by one per catch-up; past this the count stops (the tick to
/// fire is still found exactly, by bisection).
pub const MAX_COUNTED_SKIPS: u64 = 10_000;
/// Matching local times examined per [`Timetable::next_after`] call. Only local times that
/// map to instants at or before the starting point cost a step (the repeated hour of an
/// autumn change: 3,600 of them for a cron with a seconds field).
const MAX_STEPS: usize = 100_000;
/// The longest run of non-existent local times searched past (Pacific/Apia skipped a whole
/// day in 2011).
const MAX_GAP: Duration = Duration::hours(48);

/// A parsed cron expression and time zone.
#[derive(Clone, Debug)]
pub struct Timetable {
    cron: Cron,
    tz: Tz,
}

/// What to do with a schedule whose tick is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CatchUp {
    /// The tick to fire now: the most recent one at or before `now`.
    pub fire: DateTime<Utc>,
    /// Due ticks older than `fire`, not fired (counted up to [`MAX_COUNTED_SKIPS`]).
    pub skipped: u64,
    /// The first tick after `now`; `None` when the expression never matches again.
    pub next: Option<DateTime<Utc>>,
}

impl Timetable {
    /// Parses a cron expression (5 fields, or 6 with seconds first; `@daily` and the other
    /// nicknames) and an IANA time zone name. Errors name the field: `cron` or `timezone`.
    pub fn parse(cron: &str, timezone: &str) -> Result<Self, Invalid> {
        let invalid = |field: &str, message: String| Invalid {
            field: field.to_owned(),
            message,
        };
        if cron.trim().is_empty() || cron.len() > MAX_CRON_LEN {
            return Err(invalid(
                "cron",
                format!("must be a cron expression of 1 to {MAX_CRON_LEN} characters"),
            ));
        }
        let parsed = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(cron.trim())
            .map_err(|e| invalid("cron", format!("is not a valid cron expression: {e}")))?;
        let tz = Tz::from_str(timezone).map_err(|_| {
            invalid(
                "timezone",
                format!("{timezone:?} is not an IANA time zone name (such as \"Europe/Paris\" or \"UTC\")"),
            )
        })?;
        Ok(Self { cron: parsed, tz })
    }

    /// Whether the expression fires more than once in a minute (a seconds field with
    /// several values). Every minute that matches holds all of them, so one matching
    /// minute tells.
    pub fn fires_more_than_once_a_minute(&self) -> bool {
        let start = NaiveDateTime::default();
        let Ok(first) = self.cron.find_next_occurrence(&start, true) else {
            return false;
        };
        let minute_end = first.with_second(0).unwrap_or(first) + Duration::minutes(1);
        self.cron
            .find_next_occurrence(&first, false)
            .is_ok_and(|second| second < minute_end)
    }

    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// `t` on this timetable's wall clock.
    pub fn local(&self, t: DateTime<Utc>) -> DateTime<Tz> {
        t.with_timezone(&self.tz)
    }

    /// The first tick strictly after `after`, or `None` when the expression never matches
    /// again (`0 0 30 2 *`).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut local = after.with_timezone(&self.tz).naive_local();
        for _ in 0..MAX_STEPS {
            local = self.cron.find_next_occurrence(&local, false).ok()?;
            let instant = self.instant_of(local)?;
            // At or before `after`: a repeated local time whose first occurrence is behind
            // us, or a gap's shifted run already taken. Look further.
            if instant > after {
                return Some(instant);
            }
        }
        None
    }

    /// Resolves a due tick at `now`: the most recent tick at or before `now` fires, older
    /// due ticks are skipped, and the next tick is the first after `now`. `due` (the stored
    /// next tick) counts as a tick even when the expression changed since.
    pub fn catch_up(&self, due: DateTime<Utc>, now: DateTime<Utc>) -> CatchUp {
        let mut fire = due;
        let mut skipped = 0;
        loop {
            match self.next_after(fire) {
                Some(n) if n <= now && skipped < MAX_COUNTED_SKIPS => {
                    skipped += 1;
                    fire = n;
                }
                Some(n) if n <= now => {
                    fire = self.last_at_or_before(fire, now);
                    break;
                }
                _ => break,
            }
        }
        CatchUp {
            fire,
            skipped,
            next: self.next_after(fire.max(now)),
        }
    }

    /// The last tick at or before `now`, knowing `from` is one: bisection over whole
    /// seconds on "the next tick after p is at or before now", which holds for every p up
    /// to that last tick and for no p after it.
    fn last_at_or_before(&self, from: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
        let fits = |p: i64| {
            DateTime::from_timestamp(p, 0)
                .and_then(|p| self.next_after(p))
                .is_some_and(|n| n <= now)
        };
        let (mut lo, mut hi) = (from.timestamp(), now.timestamp());
        if !fits(lo) {
            return from;
        }
        // Invariant: fits(lo), and nothing above hi fits.
        while lo < hi {
            let mid = lo + (hi - lo + 1) / 2;
            if fits(mid) { lo = mid } else { hi = mid - 1 }
        }
        DateTime::from_timestamp(lo, 0)
            .and_then(|p| self.next_after(p))
            .unwrap_or(from)
    }

    /// The instant a matching local time fires at: itself; its first occurrence when it
    /// happens twice; the end of the gap when it does not exist.
    fn instant_of(&self, local: NaiveDateTime) -> Option<DateTime<Utc>> {
        match self.tz.from_local_datetime(&local) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Some(t.with_timezone(&Utc)),
            LocalResult::None => self.end_of_gap(local),
        }
    }

    /// The first instant after the gap holding `local`: minute steps to the first local
    /// time that exists, then second steps back over the last minute (offsets of old zones
    /// are not whole minutes).
    fn end_of_gap(&self, local: NaiveDateTime) -> Option<DateTime<Utc>> {
        let exists = |t: NaiveDateTime| match self.tz.from_local_datetime(&t) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Some(t),
            LocalResult::None => None,
        };
        let mut t = local;
        while exists(t).is_none() {
            t += Duration::minutes(1);
            if t - local > MAX_GAP {
                return None;
            }
        }
        let mut first = t;
        for s in 1..60 {
            let earlier = t - Duration::seconds(s);
            if earlier <= local || exists(earlier).is_none() {
                break;
            }
            first = earlier;
        }
        exists(first).map(|t| t.with_timezone(&Utc))
    }
}

#[cfg(test)]
#[path = "timetable_tests.rs"]
mod tests;
