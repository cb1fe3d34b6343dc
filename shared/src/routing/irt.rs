//! Item response theory over the shipped outcomes: every model an ability, every prompt a
//! difficulty, on one logistic scale per dataset (the one-parameter, Rasch, model):
//! P(model m answers prompt i adequately) = sigmoid(ability_m − difficulty_i).
//!
//! One weak/strong pair says little about a prompt (two noisy outcomes); nine to sixteen
//! models of all sizes say how hard it is for models in general, and put abilities and
//! difficulties on the scale that turns a tier's ability into its chance on a prompt. Graded
//! outcomes (judge scores and win probabilities, normalised to 0–1) enter as soft
//! successes, which the logistic likelihood takes as they are.
//!
//! Fitted by joint maximum a posteriori: alternating one-dimensional Newton steps, a
//! standard normal prior on difficulties (a prompt every model solves would otherwise drift
//! to minus infinity, and the prior also fixes the scale's origin) and a weak one on
//! abilities. The order of every sum is fixed, so the same outcomes give the same bits.

use std::collections::BTreeMap;

use super::model::sigmoid;

/// Prior precision of a difficulty (a standard normal).
const DIFFICULTY_PRECISION: f64 = 1.0;
/// Prior precision of an ability: wide, it only keeps a model that wins everything finite.
const ABILITY_PRECISION: f64 = 0.01;
const SWEEPS: usize = 60;

/// A fitted scale: abilities by model name.
#[derive(Debug, Clone, PartialEq)]
pub struct Scale {
    pub abilities: BTreeMap<String, f64>,
}

/// One prompt's outcomes as (model, success in 0–1).
pub type Responses<'a> = Vec<(&'a str, f64)>;

/// The maximum a posteriori difficulty of one prompt given the abilities of the models
/// that answered it; 0 (the prior's mean) for a prompt nobody known answered.
pub fn difficulty(scale: &Scale, responses: &[(&str, f64)]) -> f64 {
    let known: Vec<(f64, f64)> =
        responses.iter().filter_map(|(m, y)| Some((*scale.abilities.get(*m)?, y.clamp(0.0, 1.0)))).collect();
    let mut b = 0.0;
    for _ in 0..25 {
        let step = item_step(b, &known);
        b += step;
        if step.abs() < 1e-10 {
            break;
        }
    }
    b
}

/// A Newton step for a difficulty: the log likelihood's derivative in b is Σ(p − y).
fn item_step(b: f64, known: &[(f64, f64)]) -> f64 {
    let (mut gradient, mut curvature) = (-DIFFICULTY_PRECISION * b, DIFFICULTY_PRECISION);
    for &(ability, y) in known {
        let p = sigmoid(ability - b);
        gradient += p - y;
        curvature += p * (1.0 - p);
    }
    gradient / curvature
}

/// Fits abilities and difficulties to `items` (each prompt's responses). Returns the scale
/// and the difficulty of each item, in the order given.
pub fn fit(items: &[Responses<'_>]) -> (Scale, Vec<f64>) {
    let mut names: Vec<&str> = items.iter().flat_map(|r| r.iter().map(|(m, _)| *m)).collect();
    names.sort_unstable();
    names.dedup();
    let index = |m: &str| names.binary_search(&m).unwrap_or(0);
    let coded: Vec<Vec<(usize, f64)>> =
        items.iter().map(|r| r.iter().map(|(m, y)| (index(m), y.clamp(0.0, 1.0))).collect()).collect();
    let mut abilities = vec![0.0f64; names.len()];
    let mut difficulties = vec![0.0f64; items.len()];
    for _ in 0..SWEEPS {
        // Abilities given difficulties: the derivative in θ is Σ(y − p).
        let mut gradient: Vec<f64> = abilities.iter().map(|a| -ABILITY_PRECISION * a).collect();
        let mut curvature = vec![ABILITY_PRECISION; names.len()];
        for (responses, b) in coded.iter().zip(&difficulties) {
            for &(m, y) in responses {
                let p = sigmoid(abilities[m] - b);
                gradient[m] += y - p;
                curvature[m] += p * (1.0 - p);
            }
        }
        for ((a, g), h) in abilities.iter_mut().zip(&gradient).zip(&curvature) {
            *a += g / h;
        }
        for (responses, b) in coded.iter().zip(difficulties.iter_mut()) {
            let known: Vec<(f64, f64)> = responses.iter().map(|&(m, y)| (abilities[m], y)).collect();
            *b += item_step(*b, &known);
        }
    }
    let abilities = names.iter().zip(abilities).map(|(m, a)| ((*m).to_owned(), a)).collect();
    (Scale { abilities }, difficulties)
}

/// The ability whose mean chance over `difficulties` is `accuracy`: how a published score
/// on the same benchmark places a model that is not in the data on the scale.
pub fn ability_for_accuracy(difficulties: &[f64], accuracy: f64) -> Option<f64> {
    if difficulties.is_empty() || !(0.0..1.0).contains(&accuracy) || accuracy <= 0.0 {
        return None;
    }
    let mean_chance = |a: f64| difficulties.iter().map(|b| sigmoid(a - b)).sum::<f64>() / difficulties.len() as f64;
    let (mut low, mut high) = (-30.0f64, 30.0f64);
    for _ in 0..100 {
        let middle = (low + high) / 2.0;
        if mean_chance(middle) < accuracy {
            low = middle;
        } else {
            high = middle;
        }
    }
    Some((low + high) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::splitmix::SplitMix64;

    /// Outcomes drawn from known abilities and difficulties are fitted back: abilities in
    /// the right order with the right gaps, difficulties ranked as drawn.
    #[test]
    fn recovers_a_known_scale() {
        let truth = [("a", -1.0), ("b", 0.0), ("c", 0.5), ("d", 1.5), ("e", 2.5)];
        let mut rng = SplitMix64::new(7);
        // Difficulties spread like the prior (a standard deviation of about one).
        let difficulties: Vec<f64> = (0..3_000).map(|i| f64::from(i % 35) / 10.0 - 1.7).collect();
        let items: Vec<Responses<'_>> = difficulties
            .iter()
            .map(|b| {
                truth
                    .iter()
                    .map(|(m, a)| {
                        let draw = rng.below(1_000_000) as f64 / 1_000_000.0;
                        (*m, f64::from(u8::from(draw < sigmoid(a - b))))
                    })
                    .collect()
            })
            .collect();
        let (scale, fitted) = fit(&items);
        let gap = |x: &str, y: &str| scale.abilities[y] - scale.abilities[x];
        assert!((gap("a", "e") / 3.5 - 1.0).abs() < 0.25, "{:?}", scale.abilities);
        assert!(gap("a", "b") > 0.6 && gap("b", "c") > 0.2 && gap("c", "d") > 0.6, "{:?}", scale.abilities);
        let hard: f64 = fitted[..].iter().zip(&difficulties).filter(|(_, b)| **b > 1.0).map(|(f, _)| f).sum();
        let easy: f64 = fitted[..].iter().zip(&difficulties).filter(|(_, b)| **b < -1.0).map(|(f, _)| f).sum();
        assert!(hard > 0.0 && easy < 0.0);
        assert_eq!(fit(&items), (scale, fitted), "deterministic");
    }

    #[test]
    fn a_prompt_everyone_solves_is_easy_but_finite() {
        let scale = Scale { abilities: [("x".to_owned(), 0.0), ("y".to_owned(), 1.0)].into_iter().collect() };
        let easy = difficulty(&scale, &[("x", 1.0), ("y", 1.0)]);
        let hard = difficulty(&scale, &[("x", 0.0), ("y", 0.0)]);
        let split = difficulty(&scale, &[("x", 0.0), ("y", 1.0)]);
        assert!(easy.is_finite() && easy < split && split < hard, "{easy} {split} {hard}");
        assert_eq!(difficulty(&scale, &[("unknown", 1.0)]), 0.0);
    }

    #[test]
    fn a_published_accuracy_places_an_ability() {
        let difficulties = [-1.0, 0.0, 1.0];
        let a = ability_for_accuracy(&difficulties, 0.5).unwrap();
        assert!(a.abs() < 1e-6, "{a}");
        let strong = ability_for_accuracy(&difficulties, 0.9).unwrap();
        assert!(strong > 1.5);
        assert_eq!(ability_for_accuracy(&difficulties, 1.0), None);
        assert_eq!(ability_for_accuracy(&[], 0.5), None);
    }
}
