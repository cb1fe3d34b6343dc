//! The baseline routers the learned one is compared with.

/// Words the seeds' router took as a sign of a hard prompt.
const HARD_KEYWORDS: [&str; 3] = ["analyze", "compare", "explain in detail"];

/// The seeds' naive router, as it was written in Python:
///
/// ```python
/// word_count = len(prompt.split())
/// if word_count < 50 and not any(k in prompt.lower() for k in ['analyze', 'compare', 'explain in detail']):
///     return "simple"      # 0
/// elif word_count < 200:
///     return "moderate"    # 1
/// else:
///     return "complex"     # 2
/// ```
pub fn heuristic_level(text: &str) -> usize {
    let words = text.split_whitespace().count();
    let lower = text.to_lowercase();
    if words < 50 && !HARD_KEYWORDS.iter().any(|k| lower.contains(k)) {
        0
    } else if words < 200 {
        1
    } else {
        2
    }
}

/// Prompt length in characters: longer prompts go to the strong model first.
pub fn length_score(text: &str) -> f64 {
    text.chars().count() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heuristic_levels_follow_the_seeds() {
        assert_eq!(heuristic_level("What is 2+2?"), 0);
        assert_eq!(heuristic_level("Please Analyze this short text."), 1);
        assert_eq!(heuristic_level("Explain in detail why the sky is blue."), 1);
        assert_eq!(heuristic_level(&"word ".repeat(49)), 0);
        assert_eq!(heuristic_level(&"word ".repeat(50)), 1);
        assert_eq!(heuristic_level(&"word ".repeat(199)), 1);
        assert_eq!(heuristic_level(&"word ".repeat(200)), 2);
        // Keywords do not lift a long prompt: it is complex anyway.
        assert_eq!(heuristic_level(&format!("compare {}", "x ".repeat(300))), 2);
        assert_eq!(length_score("héllo"), 5.0);
    }
}
