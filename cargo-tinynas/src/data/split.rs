//! A deterministic, stratified train/validation/test split: every class is shuffled with a seed
//! and cut by the same fractions, so each split has the class balance of the whole. Samples the
//! user placed in `train/`, `val/` or `test/` folders keep their place; a missing validation (or,
//! without any split folders, test) part is cut from the training samples.

use super::cache::Assigned;
use tinynas_model::random::{Source, SplitMix};

/// Sample indices per part.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Split {
    pub train: Vec<usize>,
    pub val: Vec<usize>,
    pub test: Vec<usize>,
}

/// Splits `labels` (with the user's assignments) by fractions `val` and `test` and a seed.
pub fn stratified(labels: &[u16], assigned: &[Assigned], val: f64, test: f64, seed: u64) -> Split {
    let any_val = assigned.contains(&Assigned::Val);
    let any_test = assigned.contains(&Assigned::Test);
    let user_split = assigned.iter().any(|&a| a != Assigned::Unassigned);
    let mut s = Split::default();
    let classes = labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0);
    for class in 0..classes {
        let mut pool: Vec<usize> = Vec::new();
        for (i, (&l, &a)) in labels.iter().zip(assigned).enumerate() {
            if l as usize != class {
                continue;
            }
            match a {
                Assigned::Val => s.val.push(i),
                Assigned::Test => s.test.push(i),
                Assigned::Train | Assigned::Unassigned => pool.push(i),
            }
        }
        let mut rng = SplitMix(seed ^ (class as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        for i in (1..pool.len()).rev() {
            let j = rng.int(0, i as i64) as usize;
            pool.swap(i, j);
        }
        let n = pool.len();
        let n_test = if any_test || user_split {
            0
        } else {
            (n as f64 * test).round() as usize
        };
        let n_val = if any_val {
            0
        } else {
            (n as f64 * val).round() as usize
        };
        let (n_test, n_val) = (n_test.min(n), n_val.min(n - n_test.min(n)));
        s.test.extend_from_slice(&pool[..n_test]);
        s.val.extend_from_slice(&pool[n_test..n_test + n_val]);
        s.train.extend_from_slice(&pool[n_test + n_val..]);
    }
    s.train.sort_unstable();
    s.val.sort_unstable();
    s.test.sort_unstable();
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stratified_deterministic_and_disjoint() {
        let labels: Vec<u16> = (0..1000)
            .map(|i| (i % 3) as u16 + u16::from(i % 10 == 0))
            .collect();
        let assigned = vec![Assigned::Unassigned; labels.len()];
        let a = stratified(&labels, &assigned, 0.1, 0.2, 7);
        assert_eq!(a, stratified(&labels, &assigned, 0.1, 0.2, 7));
        assert_ne!(a, stratified(&labels, &assigned, 0.1, 0.2, 8));
        let mut all: Vec<usize> = a
            .train
            .iter()
            .chain(&a.val)
            .chain(&a.test)
            .copied()
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        // Each class keeps its share in each part (within rounding).
        for class in 0..4u16 {
            let n = labels.iter().filter(|&&l| l == class).count() as f64;
            let t = a.test.iter().filter(|&&i| labels[i] == class).count() as f64;
            assert!(
                (t - 0.2 * n).abs() <= 1.0,
                "class {class}: {t} of {n} in test"
            );
        }
    }

    #[test]
    fn user_split_folders_are_kept() {
        let labels = vec![0u16, 0, 1, 1, 0, 1];
        let assigned = vec![
            Assigned::Train,
            Assigned::Test,
            Assigned::Train,
            Assigned::Test,
            Assigned::Train,
            Assigned::Train,
        ];
        let s = stratified(&labels, &assigned, 0.5, 0.5, 1);
        assert_eq!(s.test, vec![1, 3]);
        // No val folder: half of each class's training samples become validation.
        assert_eq!(s.val.len(), 2);
        assert_eq!(s.train.len(), 2);
    }
}
