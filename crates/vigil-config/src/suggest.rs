//! "Did you mean …?": the nearest known word by edit distance.
//!
//! Owns only string similarity; what the candidates are comes from the schema.

/// Levenshtein distance over characters, ASCII case-insensitive.
pub(crate) fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().map(|c| c.to_ascii_lowercase()).collect();
    let b: Vec<char> = b.chars().map(|c| c.to_ascii_lowercase()).collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != cb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The candidate closest to `word`, if it is close enough to be a plausible typo.
pub(crate) fn closest<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    // Very long inputs are not typos of short keys; also bounds the quadratic work.
    if word.chars().count() > 64 {
        return None;
    }
    let limit = (word.chars().count() / 3).max(2);
    let lower = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .filter_map(|c| {
            let d = distance(word, c);
            if d <= limit && d < c.chars().count().max(2) {
                return Some((d, c));
            }
            // An abbreviation ("warn" for "warning") is a typo too, however far.
            let is_prefix = lower.len() >= 3 && c.to_ascii_lowercase().starts_with(&lower);
            is_prefix.then_some((limit + 1, c))
        })
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(distance("evry", "every"), 1);
        assert_eq!(distance("htp", "http"), 1);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("Every", "every"), 0);
        assert_eq!(distance("kitten", "sitting"), 3);
    }

    #[test]
    fn suggestions() {
        let keys = ["every", "timeout", "retries", "retry_delay"];
        assert_eq!(closest("evry", keys), Some("every"));
        assert_eq!(closest("retires", keys), Some("retries"));
        assert_eq!(closest("zzzzzzzz", keys), None);
        assert_eq!(
            closest("servce", ["vigil", "defaults", "services"]),
            Some("services")
        );
        assert_eq!(closest("x", ["vigil", "defaults", "services"]), None);
        assert_eq!(closest("warn", ["critical", "warning"]), Some("warning"));
    }
}
