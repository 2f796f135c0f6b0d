//! "Did you mean …?": the nearest known word by edit distance.
//!
//! Owns only string similarity; what the candidates are comes from the schema.

/// Words longer than this are not typos of a key or a name (and bound the work).
const MAX_WORD: usize = 64;

/// Levenshtein distance over characters, ASCII case-insensitive.
pub(crate) fn distance(a: &str, b: &str) -> usize {
    if a.is_ascii() && b.is_ascii() && b.len() <= MAX_WORD {
        return distance_by(a.as_bytes(), b.as_bytes(), |x: &u8, y: &u8| {
            x.eq_ignore_ascii_case(y)
        });
    }
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    distance_by(&a, &b, |x: &char, y: &char| x.eq_ignore_ascii_case(y))
}

/// Two rows of the edit-distance table, on the stack when `b` is short.
fn distance_by<T>(a: &[T], b: &[T], same: impl Fn(&T, &T) -> bool) -> usize {
    let mut stack = [[0usize; MAX_WORD + 1]; 2];
    let mut heap;
    let (mut prev, mut cur) = if b.len() <= MAX_WORD {
        let [p, c] = &mut stack;
        (&mut p[..=b.len()], &mut c[..=b.len()])
    } else {
        heap = vec![0usize; 2 * (b.len() + 1)];
        heap.split_at_mut(b.len() + 1)
    };
    for (j, cell) in prev.iter_mut().enumerate() {
        *cell = j;
    }
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(!same(ca, cb));
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
    let len = word.chars().count();
    if len > MAX_WORD {
        return None;
    }
    let limit = (len / 3).max(2);
    let lower = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .filter_map(|c| {
            // An abbreviation ("warn" for "warning") is a typo too, however far.
            let is_prefix = lower.len() >= 3
                && c.len() >= lower.len()
                && c.get(..lower.len())
                    .is_some_and(|head| head.eq_ignore_ascii_case(&lower));
            // Lengths further apart than the limit are further apart in edit distance
            // too: no need to compute it.
            let clen = if c.is_ascii() {
                c.len()
            } else {
                c.chars().count()
            };
            if clen.abs_diff(len) <= limit {
                let d = distance(word, c);
                if d <= limit && d < clen.max(2) {
                    return Some((d, c));
                }
            }
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
