//! What a schedule may hold, and how it changes (`PATCH /v1/schedules/{id}`).
//!
//! [`checked_name`] and [`checked_timing`] are the checks creation and change share, so a
//! schedule cannot be changed into one that could not have been created. [`Schedule::changed`]
//! applies a [`ScheduleChange`] to the schedule as it is stored, and is where the rule for
//! `next_run_at` lives:
//!
//! - **Paused** (`enabled` false after the change): no next tick (`next_run_at = None`),
//!   whatever else changed. A new cron or time zone is still checked, so resuming later
//!   cannot fail on it.
//! - **Timing changed** (the cron expression or the time zone differs from the stored one)
//!   and enabled: the next tick is the first tick of the *new* timetable strictly after
//!   now. A tick of the old timetable that was due and not yet fired is dropped, not fired
//!   late and not counted as skipped: it belongs to a timetable the schedule no longer has.
//!   Sending the stored value again is not a change, so a client that sends back the whole
//!   schedule does not lose a due tick.
//! - **Resumed** (`enabled` false → true) with the timing unchanged: the first tick after
//!   now, exactly as `POST …/resume` does (ticks that fell while paused are neither run nor
//!   counted), and the last error is cleared.
//! - **Otherwise** (name or job changed, or nothing): `next_run_at` stays as it was. The
//!   next tick fires with the new name and job.
//!
//! The store applies a change to the row locked for the change's transaction
//! ([`super::ScheduleStore::update`]), so an enqueuer firing the schedule at the same
//! instant sees either the whole old schedule or the whole new one.

use chrono::{DateTime, Utc};

use super::{Schedule, Timetable};
use crate::invalid::Invalid;
use crate::kind::JobKind;

/// Longest schedule name, in characters.
pub const MAX_NAME_CHARS: usize = 200;

fn invalid(field: &str, message: impl Into<String>) -> Invalid {
    Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// A schedule's name, trimmed: 1 to [`MAX_NAME_CHARS`] characters, no control characters.
pub fn checked_name(name: &str) -> Result<String, Invalid> {
    let name = name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(invalid(
            "name",
            format!("must be 1 to {MAX_NAME_CHARS} characters, without control characters"),
        ));
    }
    Ok(name.to_owned())
}

/// A cron expression and time zone a schedule may hold, with the first tick after `now`.
/// Refused (naming `cron` or `timezone`): what [`Timetable::parse`] refuses, an expression
/// that fires more than once a minute unless `allow_sub_minute`, and one that never matches
/// a time after `now`.
pub fn checked_timing(
    cron: &str,
    timezone: &str,
    allow_sub_minute: bool,
    now: DateTime<Utc>,
) -> Result<(Timetable, DateTime<Utc>), Invalid> {
    let timetable = Timetable::parse(cron, timezone)?;
    if !allow_sub_minute && timetable.fires_more_than_once_a_minute() {
        return Err(invalid(
            "cron",
            "fires more than once a minute; the seconds field may hold one value \
             (schedules.allow_sub_minute)",
        ));
    }
    let first = timetable.next_after(now).ok_or_else(|| {
        invalid(
            "cron",
            "never matches a time to come (such as the 30th of February)",
        )
    })?;
    Ok((timetable, first))
}

/// A change asked for: `None` leaves a field as it is. The job request is validated
/// already (by the API, as `POST /v1/jobs` validates it); the rest is checked by
/// [`Schedule::changed`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScheduleChange {
    pub name: Option<String>,
    pub cron: Option<String>,
    pub timezone: Option<String>,
    /// The job kind and its stored parameters.
    pub job: Option<(JobKind, serde_json::Value)>,
    pub enabled: Option<bool>,
}

impl Schedule {
    /// This schedule with `change` applied at `now`, following the `next_run_at` rule of
    /// the module docs. Errors name the field (`name`, `cron`, `timezone`).
    pub fn changed(
        &self,
        change: &ScheduleChange,
        allow_sub_minute: bool,
        now: DateTime<Utc>,
    ) -> Result<Schedule, Invalid> {
        let mut next = self.clone();
        if let Some(name) = &change.name {
            next.name = checked_name(name)?;
        }
        if let Some(cron) = &change.cron {
            next.cron = cron.trim().to_owned();
        }
        if let Some(timezone) = &change.timezone {
            next.timezone = timezone.clone();
        }
        if let Some((kind, params)) = &change.job {
            next.kind = kind.clone();
            next.params = params.clone();
        }
        next.enabled = change.enabled.unwrap_or(self.enabled);
        let retimed = next.cron != self.cron || next.timezone != self.timezone;
        let first = if retimed {
            Some(checked_timing(&next.cron, &next.timezone, allow_sub_minute, now)?.1)
        } else {
            None
        };
        let resumed = next.enabled && !self.enabled;
        next.next_run_at = match (next.enabled, first) {
            (false, _) => None,
            (true, Some(first)) => Some(first),
            (true, None) if resumed => self.timetable()?.next_after(now),
            (true, None) => self.next_run_at,
        };
        if resumed {
            next.last_error = None;
        }
        Ok(next)
    }
}

#[cfg(test)]
#[path = "change_tests.rs"]
mod tests;
