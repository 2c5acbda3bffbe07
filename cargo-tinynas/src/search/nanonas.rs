//! The `nanonas` strategy: NanoNAS's published climb over its two knobs.

use super::*;

impl Searcher<'_> {
    /// The published NanoNAS climb; the best candidate that fits.
    pub(super) fn nanonas(
        &mut self,
        candidates: &mut Vec<Entry>,
        on: &mut dyn FnMut(Event<'_>),
    ) -> Result<Option<Entry>, SearchError> {
        let score = |e: &Entry| e.float_val.unwrap_or(0.0);
        let mut best: Option<Entry> = None;
        let mut best_per_k_prev: Option<f32> = None;
        'k: for k in 1..=self.s.max_k {
            let mut best_k: Option<Entry> = None;
            for c in 0..=8 {
                if self.stop.load(Ordering::Relaxed) {
                    break 'k;
                }
                if !self.time_left(best.as_ref().or(best_k.as_ref()), 0) {
                    self.out_of_time(THE_RETRAINING);
                    break 'k;
                }
                let arch = Arch::NanoNas { k, c };
                let Some((e, _)) =
                    self.evaluate(arch, EntryKind::Candidate, self.s.proxy_epochs, on)?
                else {
                    break 'k;
                };
                candidates.push(e.clone());
                if e.status != Status::Fits {
                    break;
                }
                if best_k.as_ref().is_some_and(|b| score(&e) <= score(b)) {
                    break;
                }
                best_k = Some(e);
            }
            let Some(bk) = best_k else {
                // Nothing fits at this k (even c = 0): a larger k will not fit either.
                self.stopped_because = format!(
                    "at k = {k} not even c = 0 fits the budgets, so no larger k would (NanoNAS's climb)"
                );
                break;
            };
            if let Some(p) = best_per_k_prev.filter(|&p| score(&bk) <= p) {
                self.stopped_because = format!(
                    "k = {k}'s best proxy accuracy ({:.1} %) was no better than k = {}'s ({:.1} %): NanoNAS's climb stops there",
                    100.0 * score(&bk),
                    k - 1,
                    100.0 * p
                );
                break;
            }
            if k == self.s.max_k {
                self.stopped_because =
                    format!("k reached max-k = {k} (--max-k; the climb would go on otherwise)");
            }
            best_per_k_prev = Some(score(&bk));
            if best.as_ref().is_none_or(|b| score(&bk) > score(b)) {
                best = Some(bk);
            }
        }
        Ok(best)
    }
}
