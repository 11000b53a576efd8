//! Which records a request selects, and where its pages start, computed without walking the
//! dataset.
//!
//! A request selects the ids in an inclusive id range whose time offset (`id * 37 % records`
//! seconds after the base time) falls in a half-open window. Pages are always in id order.
//! Counting the matches of a window over an id range is a modular-arithmetic count, done in
//! O(log records) with the classic `floor_sum`; finding the k-th match is a binary search
//! over that count. So even a narrow time window over a huge dataset costs a few
//! microseconds per record served, and the mock stays latency-bound, never CPU-bound.

use std::ops::Range;

use chrono::{DateTime, Utc};

use crate::dataset::{BASE_TIME_UNIX, TIME_STRIDE, time_offset};

/// The filters of `GET /records`; every bound is optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Filter {
    /// `from_id`: smallest id selected (inclusive).
    pub from_id: Option<u64>,
    /// `to_id`: largest id selected (inclusive).
    pub to_id: Option<u64>,
    /// `modified_since`: earliest `updated_at` selected (inclusive).
    pub modified_since: Option<DateTime<Utc>>,
    /// `modified_before`: `updated_at` must be strictly earlier.
    pub modified_before: Option<DateTime<Utc>>,
}

/// The records a [`Filter`] selects from a dataset of `records` records.
#[derive(Debug, Clone)]
pub(crate) struct Selection {
    records: u64,
    /// Smallest selected id; the selection is empty when `first > last`.
    first: u64,
    /// Largest selected id.
    last: u64,
    /// Selected time offsets, within `0..records`.
    offsets: Range<u64>,
}

impl Selection {
    pub(crate) fn new(records: u64, filter: &Filter) -> Self {
        let bound = |time: Option<DateTime<Utc>>, default| {
            time.map_or(default, |t| offset_at_or_after(records, t))
        };
        Self {
            records,
            first: filter.from_id.unwrap_or(1).max(1),
            last: filter.to_id.unwrap_or(records).min(records),
            offsets: bound(filter.modified_since, 0)..bound(filter.modified_before, records),
        }
    }

    fn is_empty(&self) -> bool {
        self.first > self.last || self.offsets.is_empty()
    }

    /// Whether record `id` is selected.
    pub(crate) fn contains(&self, id: u64) -> bool {
        (self.first..=self.last).contains(&id)
            && self.offsets.contains(&time_offset(self.records, id))
    }

    /// How many records are selected.
    pub(crate) fn count(&self) -> u64 {
        self.count_through(self.last)
    }

    /// The selected ids in order, starting at the first one `>= id`.
    pub(crate) fn ids_from(&self, id: u64) -> impl Iterator<Item = u64> + '_ {
        std::iter::successors(self.next_at_or_after(id), |&prev| {
            prev.checked_add(1)
                .and_then(|next| self.next_at_or_after(next))
        })
    }

    /// The selected ids in order, starting at the `offset`-th one (0-based).
    pub(crate) fn ids_from_offset(&self, offset: u64) -> impl Iterator<Item = u64> + '_ {
        // `u64::MAX` is past every id (ids stop at MAX_RECORDS), so the walk is empty.
        self.ids_from(self.nth(offset).unwrap_or(u64::MAX))
    }

    /// The smallest selected id `>= id`.
    fn next_at_or_after(&self, id: u64) -> Option<u64> {
        let id = id.max(self.first);
        if id > self.last || self.is_empty() {
            return None;
        }
        if self.contains(id) {
            return Some(id);
        }
        // `id` itself is not selected, so the matches through `id` all come before it and
        // the next match is the one with that index.
        self.nth(self.count_through(id))
    }

    /// The `k`-th selected id (0-based): a binary search for the smallest id with more than
    /// `k` matches through it.
    fn nth(&self, k: u64) -> Option<u64> {
        if k >= self.count() {
            return None;
        }
        let (mut lo, mut hi) = (self.first, self.last);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.count_through(mid) > k {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Some(lo)
    }

    /// How many selected ids are `<= id`.
    fn count_through(&self, id: u64) -> u64 {
        let last = id.min(self.last);
        if self.is_empty() || last < self.first {
            return 0;
        }
        let len = last - self.first + 1;
        if self.offsets.start == 0 && self.offsets.end == self.records {
            return len;
        }
        self.count_below(len, self.offsets.end) - self.count_below(len, self.offsets.start)
    }

    /// How many of the `len` ids from `first` on have a time offset `< x` (`x <= records`).
    ///
    /// With `r = 37 * i mod n`, `floor((37 i + n - x) / n) - floor(37 i / n)` is 1 exactly
    /// when `r >= x`, so summing it over the ids counts the offsets at or above `x`.
    fn count_below(&self, len: u64, x: u64) -> u64 {
        let n = u128::from(self.records);
        let stride = u128::from(TIME_STRIDE);
        // Shifting the numerators by a multiple of n leaves each difference unchanged.
        let start = stride * u128::from(self.first) % n;
        let len128 = u128::from(len);
        let at_or_above = floor_sum(len128, n, stride, start + n - u128::from(x))
            - floor_sum(len128, n, stride, start);
        // at_or_above <= len, so the difference fits in u64.
        len - at_or_above as u64
    }
}

/// The smallest time offset (whole seconds after the base time, clamped to
/// `0..=records`) whose time is at or after `t`.
fn offset_at_or_after(records: u64, t: DateTime<Utc>) -> u64 {
    // `timestamp` rounds down and the nanoseconds are non-negative: this is the ceiling.
    let seconds = t.timestamp() - BASE_TIME_UNIX + i64::from(t.timestamp_subsec_nanos() > 0);
    u64::try_from(seconds).map_or(0, |s| s.min(records))
}

/// `sum(floor((a * i + b) / m) for i in 0..n)` in O(log m) steps (the AtCoder Library's
/// `floor_sum_unsigned`). Within `MAX_RECORDS` no intermediate exceeds 2^90.
fn floor_sum(mut n: u128, mut m: u128, mut a: u128, mut b: u128) -> u128 {
    let mut sum = 0;
    loop {
        if a >= m {
            sum += n * n.saturating_sub(1) / 2 * (a / m);
            a %= m;
        }
        if b >= m {
            sum += n * (b / m);
            b %= m;
        }
        let y_max = a * n + b;
        if y_max < m {
            return sum;
        }
        n = y_max / m;
        b = y_max % m;
        std::mem::swap(&mut m, &mut a);
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;
    use crate::MAX_RECORDS;
    use crate::dataset::base_time;

    fn at(seconds: i64) -> DateTime<Utc> {
        base_time() + TimeDelta::seconds(seconds)
    }

    fn filter(ids: (u64, u64), window: (i64, i64)) -> Filter {
        Filter {
            from_id: Some(ids.0),
            to_id: Some(ids.1),
            modified_since: Some(at(window.0)),
            modified_before: Some(at(window.1)),
        }
    }

    fn brute_force(records: u64, filter: &Filter) -> Vec<u64> {
        (1..=records)
            .filter(|&id| {
                let t = crate::dataset::updated_at(records, id);
                filter.from_id.is_none_or(|from| id >= from)
                    && filter.to_id.is_none_or(|to| id <= to)
                    && filter.modified_since.is_none_or(|since| t >= since)
                    && filter.modified_before.is_none_or(|before| t < before)
            })
            .collect()
    }

    #[test]
    fn floor_sum_matches_the_definition() {
        for (n, m, a, b) in [
            (0, 5, 3, 1),
            (10, 7, 3, 2),
            (100, 37, 37, 0),
            (57, 1000, 37, 999),
        ] {
            let direct: u128 = (0..n).map(|i| (a * i + b) / m).sum();
            assert_eq!(floor_sum(n, m, a, b), direct, "n={n} m={m} a={a} b={b}");
        }
    }

    #[test]
    fn counts_and_walks_agree_with_brute_force() {
        // Sizes below, at and at multiples of the stride, where offsets collide.
        for records in [1, 2, 36, 37, 74, 100, 1_000, 1_001] {
            let n = records as i64;
            let filters = [
                Filter::default(),
                filter((1, records), (0, n)),
                filter((3, records / 2 + 1), (0, n)),
                filter((1, records), (n / 4, n / 2 + 1)),
                filter((records / 3, records - records / 5), (n / 5, n / 3)),
                filter((records / 2, records), (-10, 1)),
                filter((5, 4), (0, n)),
                filter((1, records), (n / 2, n / 2)),
            ];
            for filter in &filters {
                let expected = brute_force(records, filter);
                let selection = Selection::new(records, filter);
                assert_eq!(
                    selection.count(),
                    expected.len() as u64,
                    "{records} {filter:?}"
                );
                assert_eq!(selection.ids_from(0).collect::<Vec<_>>(), expected);
                for (k, id) in expected.iter().enumerate() {
                    assert_eq!(selection.ids_from_offset(k as u64).next(), Some(*id));
                    assert!(selection.contains(*id));
                }
                assert_eq!(
                    selection.ids_from_offset(expected.len() as u64).next(),
                    None
                );
                if let Some(&mid) = expected.get(expected.len() / 2) {
                    let after: Vec<_> = expected.iter().copied().filter(|&id| id > mid).collect();
                    assert_eq!(selection.ids_from(mid + 1).collect::<Vec<_>>(), after);
                }
            }
        }
    }

    #[test]
    fn a_narrow_window_over_a_huge_dataset_is_cheap_and_exact() {
        // 37 is coprime with 2^40, so each offset belongs to exactly one id.
        let filter = Filter {
            modified_since: Some(at(1_000_000)),
            modified_before: Some(at(1_000_010)),
            ..Filter::default()
        };
        let selection = Selection::new(MAX_RECORDS, &filter);
        assert_eq!(selection.count(), 10);
        let ids: Vec<u64> = selection.ids_from(0).collect();
        assert_eq!(ids.len(), 10);
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
        for id in ids {
            let offset = time_offset(MAX_RECORDS, id);
            assert!((1_000_000..1_000_010).contains(&offset), "{id} -> {offset}");
        }
    }

    #[test]
    fn window_bounds_round_fractional_times_up() {
        let half = TimeDelta::milliseconds(500);
        assert_eq!(offset_at_or_after(100, at(5)), 5);
        assert_eq!(offset_at_or_after(100, at(5) + half), 6);
        assert_eq!(offset_at_or_after(100, at(5) - half), 5);
        assert_eq!(offset_at_or_after(100, at(-3)), 0);
        assert_eq!(offset_at_or_after(100, at(1_000)), 100);
    }

    #[test]
    fn empty_datasets_select_nothing() {
        let selection = Selection::new(0, &Filter::default());
        assert_eq!(selection.count(), 0);
        assert_eq!(selection.ids_from(0).next(), None);
    }
}
