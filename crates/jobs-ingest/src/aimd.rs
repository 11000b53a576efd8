//! The AIMD controller behind a source's concurrency limit, as a pure state machine: it
//! sees the outcome of each page request with explicit times (milliseconds since the
//! epoch) and keeps a window of permitted requests in flight. The state is stored in
//! Postgres (`offload.source_limits.state`) and changed under that row's lock
//! ([`super::governor`]), so every worker of every process feeds and obeys one limit.
//!
//! - **Additive increase** while the source answers well: each success adds
//!   `rate / limit`, so the limit grows by about `rate` per round trip (every permit is
//!   used once per round trip). Far below the level where trouble was last seen, `rate` is
//!   [`AimdParams::increase_per_rtt`]; close to it, [`AimdParams::probe_per_rtt`], much
//!   smaller, because on sources that slow everyone down when overloaded (as the mock
//!   source does, as real ones do) each overshoot costs far more than it finds.
//!   Only successes sent while the window was (nearly) full count: a limit that is not
//!   what holds requests back — items waiting out a `Retry-After`, the last partitions of a
//!   job — does not grow, or it would meet the source with a burst when they come back.
//! - **Multiplicative decrease** on a 429, a 5xx, a timeout or a smoothed latency more than
//!   [`AimdParams::latency_growth`] times the learned unloaded latency: the limit is
//!   multiplied by [`AimdParams::decrease`] (0.85: gentle, because the one-decrease-per-round-trip rule
//!   already keeps one overload from being answered twice). The latency is smoothed (TCP's SRTT, 1/8 per
//!   sample) so that one slow answer — a busy machine, a garbage collection at the source —
//!   does not cut the limit; an overloaded source slows every answer and trips it within a
//!   round trip. An overload cuts from the level its request was sent at and marks that
//!   level as the last trouble level (probed slowly, below); slowness only cuts the limit
//!   (a busy machine slows answers too), so the limit climbs straight back.
//! - **Probing backs off where it keeps failing**: each cut while probing (within a
//!   permit of the last trouble level, or above it, or the overload that first marks a
//!   level: the ramp's overshoot is a probe too) halves the probe rate again, down to
//!   1/[`MAX_PROBE_BACKOFF`] of it, so a source with a fixed limit is probed past it every
//!   few seconds at first and then rarely — each probe costs an overload. Growing past the
//!   last trouble level by more than a permit (the source took more) resets it.
//! - **At most one decrease per round trip**: a bad outcome of a request sent before the
//!   last decrease, or within one round trip after it (the round trip as it was then,
//!   overload included), is ignored: the first was sent under the old limit, which has
//!   already been cut for it (TCP's rule for one loss window), and the second met a source
//!   still busy with the old limit's requests. One exception: an overload answered by a
//!   cut for slowness, with no overload level marked yet. At a source that slows every
//!   request while it is overloaded, the slowed answers arrive before the 429 does, so
//!   the cut that answers them cannot mark the level. The 429 marks it then, and puts the
//!   limit where its own cut would have, so the limit does not climb straight back into
//!   the overload.
//!
//! The limit starts at 1 and stays within `1..=max`.

use serde::{Deserialize, Serialize};

/// How the controller reacts; `max` comes from the source's `max_concurrency`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AimdParams {
    pub max: u32,
    /// Growth per round trip below the last trouble level.
    pub increase_per_rtt: f64,
    /// Growth per round trip within one permit of the last trouble level, or above it.
    pub probe_per_rtt: f64,
    /// Factor applied to the limit on trouble.
    pub decrease: f64,
    /// A latency this many times the unloaded latency counts as trouble.
    pub latency_growth: f64,
}

impl AimdParams {
    pub fn new(max: u32) -> Self {
        Self {
            max: max.max(1),
            increase_per_rtt: 1.0,
            probe_per_rtt: 0.01,
            decrease: 0.85,
            latency_growth: 2.0,
        }
    }
}

/// What became of one page request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Signal {
    /// A 2xx answer, after `latency_ms`.
    Ok { latency_ms: f64 },
    /// A 429, a 5xx, a 408 or a timeout: the source is (or says it is) overloaded.
    Overloaded,
}

/// One request's outcome, stamped with when the request was sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Feedback {
    pub sent_at_ms: i64,
    /// The permits (the window) when it was sent, as the sender last saw them; 0 when
    /// unknown. An overload cuts from this level.
    pub window: u32,
    /// Permits in use when it was sent, as the sender last saw them; 0 when unknown. A
    /// success grows the limit only if the window was (nearly) full: otherwise the limit
    /// was not what held requests back, and growing it would only prepare an overload.
    pub in_use: u32,
    pub signal: Signal,
}

/// What [`Aimd::observe`] did to the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Increased,
    Decreased,
    /// Nothing (at the maximum, or trouble already answered by the last decrease).
    Unchanged,
}

/// The controller's state, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Aimd {
    /// The window: `floor(limit)` requests may be in flight.
    pub limit: f64,
    /// When the limit was last decreased.
    pub last_decrease_ms: Option<i64>,
    /// The level of the last overload (429, 5xx, timeout): where trouble was last seen.
    pub ceiling: Option<f64>,
    /// The source's latency when not overloaded, learned from successes: it follows lower
    /// samples at once and higher ones slowly, so a source that became slower for good is
    /// eventually no longer taken for an overloaded one.
    pub baseline_ms: Option<f64>,
    /// The smoothed latency of recent successes.
    #[serde(default)]
    pub smoothed_ms: Option<f64>,
    /// Trouble met by requests sent before this is the last decrease's: one round trip
    /// after it.
    #[serde(default)]
    pub quiet_until_ms: Option<i64>,
    /// Decreases in a row from the same level: the probe rate is divided by 2 to this.
    #[serde(default)]
    pub failed_probes: u32,
}

/// The probe rate is divided by at most this (2 to the power of the failed probes).
pub const MAX_PROBE_BACKOFF: u32 = 16;

/// How far a higher latency sample moves the baseline.
const BASELINE_DRIFT: f64 = 0.01;
/// How far a latency sample moves the smoothed latency.
const SMOOTHING: f64 = 0.125;

impl Default for Aimd {
    fn default() -> Self {
        Self::new()
    }
}

impl Aimd {
    /// A fresh source: one request at a time.
    pub fn new() -> Self {
        Self {
            limit: 1.0,
            last_decrease_ms: None,
            ceiling: None,
            baseline_ms: None,
            smoothed_ms: None,
            quiet_until_ms: None,
            failed_probes: 0,
        }
    }

    /// Requests that may be in flight now.
    pub fn permits(&self) -> u32 {
        (self.limit.floor() as u32).max(1)
    }

    /// Takes one request's outcome, observed at `now_ms`.
    pub fn observe(&mut self, p: &AimdParams, now_ms: i64, fb: Feedback) -> Change {
        let max = f64::from(p.max);
        // A lowered maximum (configuration change) applies at once.
        if self.limit > max {
            self.limit = max;
        }
        match fb.signal {
            Signal::Ok { latency_ms } => {
                let smoothed = self
                    .smoothed_ms
                    .map_or(latency_ms, |s| s + (latency_ms - s) * SMOOTHING);
                self.smoothed_ms = Some(smoothed);
                let grown = self
                    .baseline_ms
                    .is_some_and(|base| smoothed > base * p.latency_growth);
                self.learn_baseline(latency_ms);
                if grown {
                    // The smoothed latency is of many requests, not of this one's level.
                    let fb = Feedback { window: 0, ..fb };
                    self.decrease(p, now_ms, fb, smoothed.max(latency_ms))
                } else {
                    self.increase(p, max, fb)
                }
            }
            Signal::Overloaded => {
                let rtt = (now_ms.saturating_sub(fb.sent_at_ms)) as f64;
                self.decrease(p, now_ms, fb, rtt)
            }
        }
    }

    /// What the probe rate is divided by now.
    pub fn probe_backoff(&self) -> u32 {
        1 << self.failed_probes.min(MAX_PROBE_BACKOFF.ilog2())
    }

    fn learn_baseline(&mut self, latency_ms: f64) {
        self.baseline_ms = Some(match self.baseline_ms {
            Some(base) if latency_ms >= base => base + (latency_ms - base) * BASELINE_DRIFT,
            _ => latency_ms,
        });
    }

    fn increase(&mut self, p: &AimdParams, max: f64, fb: Feedback) -> Change {
        let idle = fb.in_use > 0 && fb.in_use + 1 < fb.window;
        if self.limit >= max || idle {
            return Change::Unchanged;
        }
        let rate = match self.ceiling {
            // Well above where trouble was: whatever caused it has gone; grow freely.
            Some(c) if self.limit > c + 1.0 => {
                self.ceiling = None;
                self.failed_probes = 0;
                p.increase_per_rtt
            }
            Some(c) if self.limit + 1.0 > c => p.probe_per_rtt / f64::from(self.probe_backoff()),
            _ => p.increase_per_rtt,
        };
        self.limit = (self.limit + rate / self.limit).min(max);
        Change::Increased
    }

    /// Cuts the limit for trouble met by a request sent at `sent_at_ms`; `rtt_ms` is the
    /// round trip as it is now (the troubled request's, or the smoothed latency).
    fn decrease(&mut self, p: &AimdParams, now_ms: i64, fb: Feedback, rtt_ms: f64) -> Change {
        // The level that met trouble is the one the request was sent at: the limit has
        // grown since, by up to a permit per round trip of the answer's delay. (A level
        // under half the limit is taken for a stale view, not for the level.)
        let sent_at_level = f64::from(fb.window);
        let level_known = fb.window > 0 && sent_at_level >= self.limit / 2.0;
        let quiet_until = self.quiet_until_ms.or(self.last_decrease_ms);
        if quiet_until.is_some_and(|t| fb.sent_at_ms < t) {
            // Answered by the last decrease. But if no overload level is marked, that
            // decrease was for slowness — at a source that slows everyone down when
            // overloaded, the answers served meanwhile come back before the 429 does — and
            // this overload is the mark it could not set: without it the limit would
            // climb straight back into the same overload.
            if fb.signal == Signal::Overloaded && level_known && self.ceiling.is_none() {
                self.ceiling = Some(sent_at_level);
                self.failed_probes = (self.failed_probes + 1).min(MAX_PROBE_BACKOFF.ilog2());
                self.limit = self.limit.min((sent_at_level * p.decrease).max(1.0));
                return Change::Decreased;
            }
            return Change::Unchanged;
        }
        if level_known {
            self.limit = self.limit.min(sent_at_level);
        }
        let rtt = rtt_ms.max(self.baseline_ms.unwrap_or(0.0)).ceil() as i64;
        // The overload that first marks a level is the ramp's overshoot: a probe too.
        let first_mark = fb.signal == Signal::Overloaded && self.ceiling.is_none();
        if first_mark || self.ceiling.is_some_and(|c| self.limit + 1.0 > c) {
            // Trouble while probing near (or past) the last overload: a failed probe. (At
            // sources that slow everyone down when overloaded, the slowness of the requests
            // already in flight often tells of it before the 429 does.)
            self.failed_probes = (self.failed_probes + 1).min(MAX_PROBE_BACKOFF.ilog2());
        }
        // An overload marks where the source's limit is. Slowness may be this machine's
        // as much as the source's: it cuts the limit but sets no mark, so the limit climbs
        // straight back.
        if fb.signal == Signal::Overloaded {
            self.ceiling = Some(self.limit);
        }
        self.limit = (self.limit * p.decrease).max(1.0);
        self.last_decrease_ms = Some(now_ms);
        self.quiet_until_ms = Some(now_ms.saturating_add(rtt));
        // Latency from before the cut says nothing about the new limit.
        self.smoothed_ms = self.baseline_ms;
        Change::Decreased
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(sent_at_ms: i64, latency_ms: f64) -> Feedback {
        Feedback {
            sent_at_ms,
            window: 0,
            in_use: 0,
            signal: Signal::Ok { latency_ms },
        }
    }

    fn overloaded(sent_at_ms: i64) -> Feedback {
        Feedback {
            sent_at_ms,
            window: 0,
            in_use: 0,
            signal: Signal::Overloaded,
        }
    }

    /// Feeds one round trip's worth of successes (one per permit) ending at `now`.
    fn round_trip(a: &mut Aimd, p: &AimdParams, now: i64) {
        for _ in 0..a.permits() {
            a.observe(p, now, ok(now - 20, 20.0));
        }
    }

    #[test]
    fn starts_at_one_and_grows_about_one_per_round_trip() {
        let p = AimdParams::new(100);
        let mut a = Aimd::new();
        assert_eq!(a.permits(), 1);
        let mut now = 0;
        for _ in 0..10 {
            now += 20;
            round_trip(&mut a, &p, now);
        }
        // Ten round trips of additive increase: about 1 + 10.
        assert!((9..=12).contains(&a.permits()), "{a:?}");
    }

    #[test]
    fn grows_only_while_the_window_is_used() {
        let p = AimdParams::new(100);
        let mut a = Aimd {
            limit: 10.0,
            ..Aimd::new()
        };
        let sent = |in_use| Feedback {
            window: 10,
            in_use,
            ..ok(0, 20.0)
        };
        for i in 0..100 {
            assert_eq!(a.observe(&p, 20 + i, sent(4)), Change::Unchanged);
        }
        assert_eq!(a.limit, 10.0);
        assert_eq!(a.observe(&p, 200, sent(9)), Change::Increased);
        assert_eq!(a.observe(&p, 200, sent(10)), Change::Increased);
    }

    #[test]
    fn never_exceeds_the_maximum() {
        let p = AimdParams::new(4);
        let mut a = Aimd::new();
        for i in 0..1000 {
            a.observe(&p, i, ok(i, 20.0));
        }
        assert_eq!(a.permits(), 4);
        assert_eq!(a.observe(&p, 1000, ok(1000, 20.0)), Change::Unchanged);
    }

    #[test]
    fn trouble_cuts_the_limit_multiplicatively_but_not_below_one() {
        let p = AimdParams::new(100);
        let mut a = Aimd {
            limit: 10.0,
            ..Aimd::new()
        };
        assert_eq!(a.observe(&p, 1000, overloaded(990)), Change::Decreased);
        assert_eq!(a.limit, 8.5);
        assert_eq!(a.ceiling, Some(10.0));
        assert_eq!(a.last_decrease_ms, Some(1000));
        let mut now = 1000;
        for _ in 0..20 {
            now += 100;
            a.observe(&p, now, overloaded(now - 10));
        }
        assert_eq!(a.permits(), 1);
        assert_eq!(a.limit, 1.0);
    }

    #[test]
    fn at_most_one_decrease_per_round_trip() {
        let p = AimdParams::new(100);
        let mut a = Aimd {
            limit: 10.0,
            ..Aimd::new()
        };
        // Ten requests sent at t=0 all come back 429 between t=50 and t=59.
        let changes: Vec<Change> = (0..10)
            .map(|i| a.observe(&p, 50 + i, overloaded(0)))
            .collect();
        assert_eq!(changes[0], Change::Decreased);
        assert!(changes[1..].iter().all(|c| *c == Change::Unchanged));
        assert_eq!(a.limit, 8.5);
        // Requests sent within one round trip of the cut (the troubled request's, 50 ms)
        // met the old load: they do not cut again; one sent after it does.
        assert_eq!(a.quiet_until_ms, Some(100));
        assert_eq!(a.observe(&p, 130, overloaded(99)), Change::Unchanged);
        assert_eq!(a.observe(&p, 160, overloaded(100)), Change::Decreased);
        assert!((a.limit - 7.225).abs() < 1e-9, "{a:?}");
        assert_eq!(a.quiet_until_ms, Some(220));
    }

    #[test]
    fn latency_growth_counts_as_trouble() {
        let p = AimdParams::new(100);
        let mut a = Aimd {
            limit: 10.0,
            ..Aimd::new()
        };
        a.observe(&p, 20, ok(0, 20.0));
        assert_eq!(a.baseline_ms, Some(20.0));
        // One slow answer is noise.
        assert_eq!(a.observe(&p, 100, ok(30, 70.0)), Change::Increased);
        a.observe(&p, 120, ok(100, 20.0));
        // Every answer slow for a while is overload: within a few answers.
        let before = a.limit;
        let decreased_after = (0..20)
            .position(|i| a.observe(&p, 200 + i, ok(130, 70.0)) == Change::Decreased)
            .unwrap();
        assert!(decreased_after < 8, "{decreased_after}");
        assert!(a.limit < before);
        // A little slower than the baseline is fine.
        for i in 0..20 {
            assert_eq!(a.observe(&p, 300 + i, ok(250, 30.0)), Change::Increased);
        }
    }

    #[test]
    fn a_source_that_became_slower_for_good_is_learned() {
        let p = AimdParams::new(100);
        let mut a = Aimd::new();
        a.observe(&p, 20, ok(0, 20.0));
        let mut now = 100;
        let mut decreases = 0;
        for _ in 0..2000 {
            now += 100;
            if a.observe(&p, now, ok(now - 60, 60.0)) == Change::Decreased {
                decreases += 1;
            }
        }
        assert!(a.baseline_ms.is_some_and(|b| b > 30.0), "{a:?}");
        assert!(decreases < 200, "{decreases}");
        assert_eq!(
            a.observe(&p, now + 100, ok(now + 40, 60.0)),
            Change::Increased
        );
    }

    #[test]
    fn probes_slowly_near_where_trouble_was() {
        let p = AimdParams::new(100);
        let mut a = Aimd {
            limit: 13.0,
            ..Aimd::new()
        };
        a.observe(&p, 1000, overloaded(990));
        assert!((a.limit - 11.05).abs() < 1e-9);
        // Back to 12 quickly: about two round trips.
        let mut now = 1000;
        let mut trips = 0;
        while a.limit + 1.0 <= 13.0 {
            now += 20;
            round_trip(&mut a, &p, now);
            trips += 1;
        }
        assert!(trips <= 3, "{trips} round trips to get back near 13");
        // Then the last permit takes many round trips.
        let mut probe_trips = 0;
        while a.permits() < 13 {
            now += 20;
            round_trip(&mut a, &p, now);
            probe_trips += 1;
        }
        assert!(probe_trips >= 20, "{probe_trips}");
    }

    #[test]
    fn trouble_is_answered_from_the_level_it_was_sent_at() {
        let p = AimdParams::new(100);
        // The limit grew to 16 while the answer to a request sent at a window of 13 was
        // on its way: the cut starts from 13, and 13 is where trouble was.
        let mut a = Aimd {
            limit: 16.0,
            ..Aimd::new()
        };
        let fb = Feedback {
            window: 13,
            ..overloaded(900)
        };
        assert_eq!(a.observe(&p, 1000, fb), Change::Decreased);
        assert!((a.limit - 11.05).abs() < 1e-9, "{a:?}");
        assert_eq!(a.ceiling, Some(13.0));
        // A level above the limit (another process's view, stale) changes nothing more.
        let mut b = Aimd {
            limit: 10.0,
            ..Aimd::new()
        };
        let fb = Feedback {
            window: 30,
            ..overloaded(900)
        };
        b.observe(&p, 1000, fb);
        assert_eq!((b.limit, b.ceiling), (8.5, Some(10.0)));
    }

    #[test]
    fn slowness_does_not_lower_the_trouble_mark() {
        let p = AimdParams::new(100);
        let mut a = Aimd {
            limit: 12.0,
            ceiling: Some(13.0),
            baseline_ms: Some(20.0),
            smoothed_ms: Some(20.0),
            ..Aimd::new()
        };
        let slow = (0..20).find(|i| a.observe(&p, 1000 + i, ok(990, 90.0)) == Change::Decreased);
        assert!(slow.is_some(), "{a:?}");
        assert_eq!(a.ceiling, Some(13.0));
        // Back to 12 within a few round trips, not at the probing pace.
        let mut now = 1100;
        for _ in 0..4 {
            now += 20;
            round_trip(&mut a, &p, now);
        }
        assert_eq!(a.permits(), 12, "{a:?}");
    }

    #[test]
    fn an_overload_behind_a_slowness_cut_still_marks_its_level() {
        // The source went over its limit at a window of 13; the answers it served
        // meanwhile come back slow before the 429 does, and cut the limit for slowness.
        let p = AimdParams::new(100);
        let mut a = Aimd {
            limit: 14.0,
            baseline_ms: Some(20.0),
            smoothed_ms: Some(20.0),
            ..Aimd::new()
        };
        let slow = (0..20).find(|i| a.observe(&p, 1000 + i, ok(930, 70.0)) == Change::Decreased);
        assert!(slow.is_some() && a.ceiling.is_none(), "{a:?}");
        assert!(a.limit > 11.5, "{a:?}");
        // The 429, sent before that cut: no second cut from the same round trip, but the
        // level is marked and the limit put where that overload alone would have.
        let throttled = Feedback {
            window: 13,
            ..overloaded(950)
        };
        assert_eq!(a.observe(&p, 1025, throttled), Change::Decreased);
        assert_eq!(a.ceiling, Some(13.0));
        assert!((a.limit - 11.05).abs() < 1e-9, "{a:?}");
        // Further 429s of that round trip change nothing, even from lower windows.
        for window in [13, 12] {
            let fb = Feedback {
                window,
                ..overloaded(960)
            };
            assert_eq!(a.observe(&p, 1030, fb), Change::Unchanged);
        }
        assert_eq!(a.ceiling, Some(13.0));
    }

    #[test]
    fn probes_past_a_fixed_limit_less_and_less_often() {
        let p = AimdParams::new(100);
        let mut a = Aimd {
            limit: 13.0,
            ..Aimd::new()
        };
        let mut now = 1000;
        a.observe(&p, now, overloaded(now - 20));
        // Round trips from each failed probe to the next one.
        let mut gaps = Vec::new();
        for _ in 0..6 {
            let mut trips = 0u32;
            while a.permits() < 13 {
                now += 20;
                round_trip(&mut a, &p, now);
                trips += 1;
            }
            gaps.push(trips);
            now += 20;
            assert_eq!(a.observe(&p, now, overloaded(now - 20)), Change::Decreased);
        }
        // The first overload marked the level and counts as a failed probe: the first
        // gap is already twice the probe pace (about 100 round trips per permit).
        assert!((180..=240).contains(&gaps[0]), "{gaps:?}");
        assert!(
            gaps.windows(2).take(3).all(|w| w[1] > w[0] * 3 / 2),
            "{gaps:?}"
        );
        assert_eq!(a.probe_backoff(), MAX_PROBE_BACKOFF);
        assert!(gaps[5] <= gaps[3] * 11 / 10, "capped: {gaps:?}");
        // A source that takes more again: once past the old level, growth is quick.
        while a.limit <= 14.5 {
            now += 20;
            round_trip(&mut a, &p, now);
        }
        assert_eq!(a.failed_probes, 0);
        let before = a.limit;
        for _ in 0..5 {
            now += 20;
            round_trip(&mut a, &p, now);
        }
        assert!(a.limit > before + 4.0, "{a:?}");
    }

    #[test]
    fn settles_under_a_hard_limit_without_sustained_trouble() {
        // A source that takes 12 requests at once and answers 429 above: the window
        // oscillates just under and at 12, and trouble is rare.
        let p = AimdParams::new(64);
        let mut a = Aimd::new();
        let (mut now, mut troubles, mut trips) = (0i64, 0u32, 0u32);
        let mut permits_seen = Vec::new();
        while trips < 2000 {
            let sent = now;
            now += 20;
            let n = a.permits();
            for i in 0..n {
                if i >= 12 {
                    troubles += 1;
                    a.observe(&p, now, overloaded(sent));
                } else {
                    a.observe(&p, now, ok(sent, 20.0));
                }
            }
            permits_seen.push(a.permits());
            trips += 1;
        }
        let late = &permits_seen[500..];
        let mean = late.iter().map(|&n| f64::from(n)).sum::<f64>() / late.len() as f64;
        assert!((10.5..=12.5).contains(&mean), "mean permits {mean}");
        assert!(late.iter().all(|&n| (9..=13).contains(&n)), "{late:?}");
        // Fewer than one troubled request per 20 round trips.
        assert!(troubles < trips / 20, "{troubles} troubled requests");
    }

    #[test]
    fn the_state_round_trips_as_json() {
        let a = Aimd {
            limit: 3.5,
            last_decrease_ms: Some(5),
            ceiling: Some(4.0),
            baseline_ms: Some(20.0),
            smoothed_ms: Some(21.0),
            quiet_until_ms: Some(25),
            failed_probes: 2,
        };
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(serde_json::from_value::<Aimd>(json).unwrap(), a);
    }
}
