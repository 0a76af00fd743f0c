//! Secondary suppression: where a total and its breakdown are both in an answer, one
//! suppressed cell among them could be recovered by subtraction, so more are suppressed.

use std::collections::BTreeMap;

/// Suppress further cells until no additive relation (a parent total and the breakdown of
/// it by one more column) has exactly one suppressed cell: with one, subtraction would
/// recover it. The cell added is the smallest unsuppressed child, with its ties (or the
/// parent when every child is already suppressed).
pub(super) fn secondary(masks: &[u64], keys: &[Vec<String>], truth: &[f64], hidden: &mut [bool]) {
    // Index rows by (mask, visible key values) to find families fast.
    let key_of = |r: usize, mask: u64| -> Vec<&str> {
        let n = keys[r].len();
        (0..n)
            .filter(|c| mask & (1u64 << (n - 1 - c)) == 0)
            .map(|c| keys[r][c].as_str())
            .collect()
    };
    let mut relations: Vec<(usize, Vec<usize>)> = Vec::new();
    let mut by_mask: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (r, &mask) in masks.iter().enumerate() {
        by_mask.entry(mask).or_default().push(r);
    }
    for (parent, &pm) in masks.iter().enumerate() {
        for (&cm, children) in &by_mask {
            // A child set rolls up exactly one column fewer than the parent.
            if cm & pm == cm && (pm & !cm).count_ones() == 1 {
                let pk = key_of(parent, pm);
                let family: Vec<usize> = children.iter().copied().filter(|&c| key_of(c, pm) == pk).collect();
                if !family.is_empty() {
                    relations.push((parent, family));
                }
            }
        }
    }
    // The cells chosen depend on the order relations are visited in; rows arrive in
    // whatever order the aggregate's partitions finish, so visit them in the order of
    // their keys instead: the same question always gets the same suppressions.
    relations.sort_by(|(a, fa), (b, fb)| {
        (masks[*a], &keys[*a], fa.first().map(|&c| masks[c])).cmp(&(
            masks[*b],
            &keys[*b],
            fb.first().map(|&c| masks[c]),
        ))
    });
    loop {
        let mut changed = false;
        for (parent, family) in &relations {
            let members = std::iter::once(*parent).chain(family.iter().copied());
            if members.clone().filter(|&m| hidden[m]).count() != 1 {
                continue;
            }
            let open: Vec<usize> = family.iter().copied().filter(|&c| !hidden[c]).collect();
            if open.is_empty() {
                hidden[*parent] = true;
            } else {
                let smallest = open.iter().map(|&c| truth[c]).fold(f64::INFINITY, f64::min);
                for c in open.into_iter().filter(|&c| truth[c] == smallest) {
                    hidden[c] = true;
                }
            }
            changed = true;
        }
        if !changed {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secondary_suppression_protects_a_lone_small_cell_in_a_rollup() {
        // ROLLUP(practice): total row (mask 1) and three practices (mask 0).
        let masks = [1, 0, 0, 0];
        let keys: Vec<Vec<String>> = vec![vec!["".into()], vec!["A".into()], vec!["B".into()], vec!["C".into()]];
        let truth = [130.0, 3.0, 60.0, 67.0];
        let mut hidden = [false, true, false, false];
        secondary(&masks, &keys, &truth, &mut hidden);
        assert_eq!(
            hidden,
            [false, true, true, false],
            "the next smallest practice is suppressed too"
        );
    }

    #[test]
    fn the_same_answer_in_any_row_order_gets_the_same_suppressions() {
        // CUBE(a, b) over a 3x3 table with one small cell whose row and column offer
        // different next-smallest cells, its rows in every rotation and reversed.
        let mut rows = Vec::new();
        let values = [[3.0, 40.0, 41.0], [39.0, 60.0, 70.0], [50.0, 90.0, 100.0]];
        for (i, a) in ["x", "y", "z"].iter().enumerate() {
            for (j, b) in ["p", "q", "r"].iter().enumerate() {
                rows.push((
                    0u64,
                    vec![a.to_string(), b.to_string()],
                    values[i][j],
                    values[i][j] < 8.0,
                ));
            }
            rows.push((1, vec![a.to_string(), String::new()], values[i].iter().sum(), false));
        }
        for (j, b) in ["p", "q", "r"].iter().enumerate() {
            rows.push((
                2,
                vec![String::new(), b.to_string()],
                values.iter().map(|r| r[j]).sum(),
                false,
            ));
        }
        rows.push((3, vec![String::new(), String::new()], 493.0, false));
        let run = |rows: &[(u64, Vec<String>, f64, bool)]| {
            let masks: Vec<u64> = rows.iter().map(|r| r.0).collect();
            let keys: Vec<Vec<String>> = rows.iter().map(|r| r.1.clone()).collect();
            let truth: Vec<f64> = rows.iter().map(|r| r.2).collect();
            let mut hidden: Vec<bool> = rows.iter().map(|r| r.3).collect();
            secondary(&masks, &keys, &truth, &mut hidden);
            let mut out: Vec<(u64, Vec<String>, bool)> =
                rows.iter().zip(hidden).map(|(r, h)| (r.0, r.1.clone(), h)).collect();
            out.sort();
            out
        };
        let forwards = run(&rows);
        for _ in 0..rows.len() {
            rows.rotate_left(1);
            assert_eq!(run(&rows), forwards);
        }
        rows.reverse();
        assert_eq!(run(&rows), forwards);
    }

    #[test]
    fn secondary_suppression_in_two_dimensions_leaves_no_row_or_column_with_one() {
        // CUBE(a, b) over a 2x2 table. Masks: 0 = (a,b), 1 = (a), 2 = (b), 3 = ().
        let cells = [("x", "p", 3.0), ("x", "q", 40.0), ("y", "p", 50.0), ("y", "q", 60.0)];
        let mut masks = vec![];
        let mut keys = vec![];
        let mut truth = vec![];
        for (a, b, v) in cells {
            masks.push(0);
            keys.push(vec![a.to_string(), b.to_string()]);
            truth.push(v);
        }
        for (a, v) in [("x", 43.0), ("y", 110.0)] {
            masks.push(1);
            keys.push(vec![a.to_string(), String::new()]);
            truth.push(v);
        }
        for (b, v) in [("p", 53.0), ("q", 100.0)] {
            masks.push(2);
            keys.push(vec![String::new(), b.to_string()]);
            truth.push(v);
        }
        masks.push(3);
        keys.push(vec![String::new(), String::new()]);
        truth.push(153.0);
        let mut hidden = vec![false; masks.len()];
        hidden[0] = true;
        secondary(&masks, &keys, &truth, &mut hidden);
        // Row x: (x,p) and (x,q) hidden; column p: (x,p) and (y,p) hidden; then row y and
        // column q each have one: (y,q)… the fixpoint hides all four interior cells or
        // enough margins; whatever it chose, no relation may have exactly one.
        let rel = |members: &[usize]| members.iter().filter(|&&m| hidden[m]).count();
        for family in [[4usize, 0, 1], [5, 2, 3], [6, 0, 2], [7, 1, 3], [8, 4, 5], [8, 6, 7]] {
            assert_ne!(rel(&family), 1, "relation {family:?} with hidden {hidden:?}");
        }
    }
}
