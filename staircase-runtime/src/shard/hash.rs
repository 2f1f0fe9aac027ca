//! Where an object falls in the hash space: KEP-5866's hash (64-bit FNV-1a of the uid), so a
//! slot is also a `shardRange` the API server can filter on.

/// Slots the hash space is cut into: the unit of assignment and of handoff.
pub const SLOTS: usize = 256;

/// The 64-bit FNV-1a hash of `uid`.
pub fn hash(uid: &str) -> u64 {
    uid.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The slot of the object with this uid: the top 8 bits of its hash, so slot `s` is the hash
/// range `[s << 56, (s + 1) << 56)`.
pub fn slot_of(uid: &str) -> usize {
    (hash(uid) >> 56) as usize
}

/// Slots as compact ranges, `0-63,128,130-131`.
pub(crate) fn ranges(slots: impl IntoIterator<Item = usize>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut run: Option<(usize, usize)> = None;
    for s in slots {
        run = match run {
            Some((a, b)) if s == b + 1 => Some((a, s)),
            Some(r) => {
                out.push(range(r));
                Some((s, s))
            }
            None => Some((s, s)),
        };
    }
    out.extend(run.map(range));
    out.join(",")
}

fn range((a, b): (usize, usize)) -> String {
    if a == b {
        a.to_string()
    } else {
        format!("{a}-{b}")
    }
}

/// The inverse of [`ranges`]; `None` on anything else.
pub(crate) fn parse_ranges(s: &str) -> Option<Vec<usize>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b): (usize, usize) = match part.split_once('-') {
            Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
            None => {
                let a = part.parse().ok()?;
                (a, a)
            }
        };
        if a > b || b >= SLOTS {
            return None;
        }
        out.extend(a..=b);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        // From the FNV reference test suite.
        assert_eq!(hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(hash("foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn ranges_round_trip() {
        let slots = vec![0, 1, 2, 5, 7, 8, 255];
        let s = ranges(slots.clone());
        assert_eq!(s, "0-2,5,7-8,255");
        assert_eq!(parse_ranges(&s), Some(slots));
        assert_eq!(parse_ranges(""), Some(vec![]));
        assert_eq!(parse_ranges("3-1"), None);
        assert_eq!(parse_ranges("256"), None);
        assert_eq!(parse_ranges("x"), None);
    }

    #[test]
    fn uids_spread_over_the_slots() {
        let mut counts = [0u32; SLOTS];
        // Version 4 uids are random in every position; these stand-ins are too.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..25_600 {
            let mut uid = String::new();
            for _ in 0..2 {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                uid += &format!("{x:016x}");
            }
            counts[slot_of(&uid)] += 1;
        }
        // 100 expected per slot; a hash that clustered would leave slots near empty.
        assert!(
            counts.iter().all(|&c| (50..=160).contains(&c)),
            "{counts:?}"
        );
    }
}
