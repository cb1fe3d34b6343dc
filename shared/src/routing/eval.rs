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
}
