//! RouteLLM's router metrics over per-prompt outcomes of a weak and a strong model.
//!
//! A router gives every prompt a score: the higher, the more it needs the strong model.
//! Sending the top `s` share of prompts to the strong model traces quality against the
//! share of strong calls. PGR at a point is (quality − weak) / (strong − weak); APGR is the
//! area under that curve over shares 0–1 (0.5 for random routing); CPT(x) is the smallest
//! share of strong calls whose PGR reaches x.
//!
//! Equal scores form one group: within it the curve is the straight line that random tie
//! breaking gives on average, so a router that cannot tell prompts apart scores exactly as
//! random does rather than by the luck of row order.
//!
//! [`bootstrap_apgr`] says how much of a difference between routers is luck: it resamples
//! the rows with replacement and scores every router on the same resample, so the spread
//! of a difference keeps the routers' correlation (a paired bootstrap).

use crate::splitmix::SplitMix64;

/// Quality against the share of strong calls; starts at (0, weak quality), ends at (1, strong quality).
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    pub points: Vec<(f64, f64)>,
    pub weak_quality: f64,
    pub strong_quality: f64,
}

/// `scores[i]` ranks prompt `i`; `weak[i]` and `strong[i]` are its two outcomes.
pub fn curve(scores: &[f64], weak: &[f64], strong: &[f64]) -> Curve {
    let n = scores.len().min(weak.len()).min(strong.len());
    if n == 0 {
        return Curve { points: vec![(0.0, 0.0), (1.0, 0.0)], weak_quality: 0.0, strong_quality: 0.0 };
    }
    let mut order: Vec<usize> = (0..n).collect();
    // Highest need first; NaN scores last; index order breaks exact ties deterministically.
    order.sort_by(|&a, &b| {
        let (sa, sb) = (scores[a], scores[b]);
        sb.partial_cmp(&sa).unwrap_or_else(|| sa.is_nan().cmp(&sb.is_nan())).then(a.cmp(&b))
    });
    let weak_total: f64 = weak[..n].iter().sum();
    let strong_total: f64 = strong[..n].iter().sum();
    let mut quality_sum = weak_total;
    let mut points = vec![(0.0, weak_total / n as f64)];
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j < n && scores[order[j]].to_bits() == scores[order[i]].to_bits() {
            j += 1;
        }
        for &k in &order[i..j] {
            quality_sum += strong[k] - weak[k];
        }
        points.push((j as f64 / n as f64, quality_sum / n as f64));
        i = j;
    }
    Curve { points, weak_quality: weak_total / n as f64, strong_quality: strong_total / n as f64 }
}

impl Curve {
    fn gap(&self) -> f64 {
        self.strong_quality - self.weak_quality
    }

    /// Area under PGR over strong-call shares 0–1; `None` when both models score the same.
    pub fn apgr(&self) -> Option<f64> {
        if self.gap().abs() < 1e-12 {
            return None;
        }
        let area: f64 = self.points.windows(2).map(|w| (w[1].0 - w[0].0) * (w[0].1 + w[1].1) / 2.0).sum();
        Some((area - self.weak_quality) / self.gap())
    }

    /// Smallest share of strong calls at which PGR reaches `x` (0–1), linearly interpolated.
    pub fn cpt(&self, x: f64) -> Option<f64> {
        if self.gap().abs() < 1e-12 {
            return None;
        }
        let target = self.weak_quality + x * self.gap();
        let reached = |q: f64| if self.gap() > 0.0 { q >= target - 1e-12 } else { q <= target + 1e-12 };
        if reached(self.points[0].1) {
            return Some(0.0);
        }
        for w in self.points.windows(2) {
            let ((s0, q0), (s1, q1)) = (w[0], w[1]);
            if reached(q1) {
                let t = if (q1 - q0).abs() < 1e-15 { 1.0 } else { (target - q0) / (q1 - q0) };
                return Some(s0 + t.clamp(0.0, 1.0) * (s1 - s0));
            }
        }
        None
    }

    /// Quality at a given share of strong calls, on the curve.
    pub fn quality_at(&self, share: f64) -> f64 {
        for w in self.points.windows(2) {
            let ((s0, q0), (s1, q1)) = (w[0], w[1]);
            if share <= s1 {
                let t = if s1 - s0 < 1e-15 { 1.0 } else { (share - s0) / (s1 - s0) };
                return q0 + t.clamp(0.0, 1.0) * (q1 - q0);
            }
        }
        self.strong_quality
    }
}

/// One router's ranking, prepared once for many resamples: rows in curve order and where
/// each group of equal scores ends.
struct Ranking {
    order: Vec<usize>,
    group_ends: Vec<usize>,
}

impl Ranking {
    fn new(scores: &[f64], n: usize) -> Ranking {
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| {
            let (sa, sb) = (scores[a], scores[b]);
            sb.partial_cmp(&sa).unwrap_or_else(|| sa.is_nan().cmp(&sb.is_nan())).then(a.cmp(&b))
        });
        let mut group_ends = Vec::new();
        for i in 1..=n {
            if i == n || scores[order[i]].to_bits() != scores[order[i - 1]].to_bits() {
                group_ends.push(i);
            }
        }
        Ranking { order, group_ends }
    }

    /// APGR over the rows drawn `counts[i]` times each, as [`curve`] would compute it on
    /// the resampled rows (copies of a row tie with it, so they share its group).
    fn apgr(&self, counts: &[u32], weak: &[f64], strong: &[f64], totals: (f64, f64, f64)) -> Option<f64> {
        let (n, weak_sum, strong_sum) = totals;
        let gap = (strong_sum - weak_sum) / n;
        if gap.abs() < 1e-12 {
            return None;
        }
        let weak_quality = weak_sum / n;
        let (mut share, mut quality, mut area, mut start) = (0.0, weak_quality, 0.0, 0);
        for &end in &self.group_ends {
            let (mut drawn, mut gain) = (0.0, 0.0);
            for &row in &self.order[start..end] {
                let c = f64::from(counts[row]);
                drawn += c;
                gain += c * (strong[row] - weak[row]);
            }
            let next = (share + drawn / n, quality + gain / n);
            area += (next.0 - share) * (quality + next.1) / 2.0;
            (share, quality) = next;
            start = end;
        }
        Some((area - weak_quality) / gap)
    }
}

/// APGR of each router in `scores` on `resamples` paired bootstrap resamples of the rows,
/// drawn from `seed`: `result[r][k]` is router `k` on resample `r`, `None` where the
/// resample has no gap between the models.
pub fn bootstrap_apgr(
    scores: &[&[f64]],
    weak: &[f64],
    strong: &[f64],
    resamples: usize,
    seed: u64,
) -> Vec<Vec<Option<f64>>> {
    let n = scores.iter().map(|s| s.len()).chain([weak.len(), strong.len()]).min().unwrap_or(0);
    if n == 0 {
        return Vec::new();
    }
    let rankings: Vec<Ranking> = scores.iter().map(|s| Ranking::new(s, n)).collect();
    let mut rng = SplitMix64::new(seed);
    let mut counts = vec![0u32; n];
    (0..resamples)
        .map(|_| {
            counts.fill(0);
            for _ in 0..n {
                counts[rng.below(n as u64) as usize] += 1;
            }
            let weak_sum: f64 = counts.iter().zip(weak).map(|(c, w)| f64::from(*c) * w).sum();
            let strong_sum: f64 = counts.iter().zip(strong).map(|(c, s)| f64::from(*c) * s).sum();
            let totals = (n as f64, weak_sum, strong_sum);
            rankings.iter().map(|r| r.apgr(&counts, weak, strong, totals)).collect()
        })
        .collect()
}

/// The central `level` share (0.95 for a 95 % interval) of `values`, by the percentile
/// method; `None` for no values.
pub fn percentile_interval(values: &[f64], level: f64) -> Option<(f64, f64)> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let tail = (1.0 - level.clamp(0.0, 1.0)) / 2.0;
    let at = |q: f64| {
        let position = q * (sorted.len() - 1) as f64;
        let (low, high) = (position.floor() as usize, position.ceil() as usize);
        sorted[low] + (sorted[high] - sorted[low]) * (position - low as f64)
    };
    Some((at(tail), at(1.0 - tail)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oracle_beats_random_and_random_is_one_half() {
        let weak = [0.0, 1.0, 0.0, 1.0];
        let strong = [1.0, 1.0, 1.0, 0.0];
        let oracle = curve(&[1.0, 0.0, 1.0, -1.0], &weak, &strong);
        let random = curve(&[0.0; 4], &weak, &strong);
        assert!((random.apgr().unwrap() - 0.5).abs() < 1e-12);
        assert!(oracle.apgr().unwrap() > 0.9);
        // Rows 0 and 2 tie: the tied group is crossed halfway on average.
        assert_eq!(oracle.cpt(1.0), Some(0.25));
        assert!((random.cpt(0.5).unwrap() - 0.5).abs() < 1e-12);
        assert!((random.quality_at(0.5) - 0.625).abs() < 1e-12);
    }

    #[test]
    fn equal_models_have_no_gap_to_recover() {
        let c = curve(&[0.3, 0.1], &[1.0, 0.0], &[1.0, 0.0]);
        assert_eq!(c.apgr(), None);
        assert_eq!(c.cpt(0.5), None);
    }

    #[test]
    fn the_bootstrap_agrees_with_the_curve_and_separates_a_real_difference() {
        // 400 rows: the strong model wins on the first half only; the oracle knows it.
        let n = 400;
        let weak: Vec<f64> = (0..n).map(|i| f64::from(u8::from(i % 2 == 0))).collect();
        let strong: Vec<f64> = (0..n).map(|i| if i < n / 2 { 1.0 } else { weak[i] }).collect();
        let oracle: Vec<f64> = (0..n).map(|i| if i < n / 2 { 1.0 } else { 0.0 }).collect();
        let random = vec![0.0; n];
        // A one-row resample of every row once reproduces the plain computation.
        let ranking = Ranking::new(&oracle, n);
        let ones = vec![1u32; n];
        let totals = (n as f64, weak.iter().sum::<f64>(), strong.iter().sum::<f64>());
        let direct = curve(&oracle, &weak, &strong).apgr().unwrap();
        assert!((ranking.apgr(&ones, &weak, &strong, totals).unwrap() - direct).abs() < 1e-12);

        let draws = bootstrap_apgr(&[&oracle, &random], &weak, &strong, 200, 1);
        assert_eq!(draws.len(), 200);
        assert!(draws.iter().all(|d| (d[1].unwrap() - 0.5).abs() < 1e-9), "random is 0.5 on every resample");
        let differences: Vec<f64> = draws.iter().map(|d| d[0].unwrap() - d[1].unwrap()).collect();
        let (low, high) = percentile_interval(&differences, 0.95).unwrap();
        assert!(low > 0.2 && high < 0.5, "[{low}, {high}]");
        assert_eq!(draws, bootstrap_apgr(&[&oracle, &random], &weak, &strong, 200, 1), "seeded");
    }

    #[test]
    fn percentile_intervals_interpolate() {
        let values: Vec<f64> = (0..=100).map(f64::from).collect();
        let (low, high) = percentile_interval(&values, 0.9).unwrap();
        assert!((low - 5.0).abs() < 1e-9 && (high - 95.0).abs() < 1e-9, "[{low}, {high}]");
        let (low, high) = percentile_interval(&[1.0, 2.0], 0.5).unwrap();
        assert!((low - 1.25).abs() < 1e-12 && (high - 1.75).abs() < 1e-12, "[{low}, {high}]");
        assert_eq!(percentile_interval(&[], 0.9), None);
    }
}
