//! Rejects counted per access rule, across reloads.
//!
//! The rule list is sized when it is built and replaced whole on reload, so its counters
//! are too: each installed rule list gets a [`RuleCounters`] (one row per shard, one counter
//! per rule), which the engine keeps next to the rules it evaluates. The [`RuleRegistry`]
//! keeps the current and the previous generation live (a shard may still hold the previous
//! one for a loop turn after a reload) and folds older ones into totals by label, so a
//! rule that keeps its label across reloads keeps counting up, and memory does not grow
//! with the number of reloads.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::counter::Counter;

const PER_LINE: usize = 16;

/// 16 counters on their own 128 bytes, so no two shards write the same cache line.
#[repr(align(128))]
#[derive(Debug, Default)]
struct Line([Counter; PER_LINE]);

/// Reject counters of one rule list: `rejected(shard, rule)`. Shard `i` writes only row
/// `i`, so each row has one writer.
#[derive(Debug)]
pub struct RuleCounters {
    labels: Box<[String]>,
    lines_per_shard: usize,
    lines: Box<[Line]>,
}

impl RuleCounters {
    fn new(labels: Box<[String]>, shards: usize) -> RuleCounters {
        let lines_per_shard = labels.len().div_ceil(PER_LINE).max(1);
        RuleCounters {
            labels,
            lines_per_shard,
            lines: (0..shards * lines_per_shard)
                .map(|_| Line::default())
                .collect(),
        }
    }

    /// Shard `shard` rejected a request by rule `rule` (an index into the labels this
    /// generation was installed with). Out-of-range indexes are ignored: the hot path
    /// never panics over a counter.
    #[inline]
    pub fn rejected(&self, shard: usize, rule: usize) {
        if rule >= self.labels.len() {
            return;
        }
        let line = shard * self.lines_per_shard + rule / PER_LINE;
        if let Some(line) = self.lines.get(line) {
            line.0[rule % PER_LINE].inc();
        }
    }

    /// Rules in this generation.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Each rule's label and its count over all shards.
    fn totals(&self) -> impl Iterator<Item = (&str, u64)> + '_ {
        self.labels.iter().enumerate().map(move |(rule, label)| {
            let (line, col) = (rule / PER_LINE, rule % PER_LINE);
            let n = self
                .lines
                .chunks(self.lines_per_shard)
                .map(|row| row[line].0[col].get())
                .sum();
            (label.as_str(), n)
        })
    }
}

#[derive(Debug, Default)]
struct History {
    current: Option<Arc<RuleCounters>>,
    previous: Option<Arc<RuleCounters>>,
    /// Counts of generations older than `previous`, by label.
    retired: BTreeMap<String, u64>,
}

/// All rule-list generations of one server. Clones share them.
#[derive(Debug, Clone)]
pub struct RuleRegistry {
    shards: usize,
    history: Arc<Mutex<History>>,
}

impl RuleRegistry {
    pub fn new(shards: usize) -> RuleRegistry {
        RuleRegistry {
            shards,
            history: Arc::default(),
        }
    }

    /// Counters for a new rule list, one label per rule in evaluation order (include the
    /// default action as a last "rule", e.g. `"default"`, if it can reject). Labels name
    /// the rule in `ringsocks_rejects_total{rule="..."}`: give a rule the same label across
    /// reloads (its name, or its text) to keep one series for it.
    pub fn install<S: Into<String>>(
        &self,
        labels: impl IntoIterator<Item = S>,
    ) -> Arc<RuleCounters> {
        let labels: Box<[String]> = labels.into_iter().map(Into::into).collect();
        let counters = Arc::new(RuleCounters::new(labels, self.shards));
        let mut h = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = h.previous.take() {
            let folded: Vec<(String, u64)> = old.totals().map(|(l, n)| (l.to_owned(), n)).collect();
            for (label, n) in folded {
                *h.retired.entry(label).or_default() += n;
            }
        }
        h.previous = h.current.replace(counters.clone());
        counters
    }

    /// Rejects by label, all generations added up: the current rule list's labels first,
    /// in its order, then labels that only older lists had, sorted.
    pub fn totals(&self) -> Vec<(String, u64)> {
        let h = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        let mut rest = h.retired.clone();
        if let Some(prev) = &h.previous {
            for (label, n) in prev.totals() {
                *rest.entry(label.to_owned()).or_default() += n;
            }
        }
        let mut out: Vec<(String, u64)> = Vec::new();
        if let Some(cur) = &h.current {
            for (label, n) in cur.totals() {
                // A label repeated within one list is one series.
                match out.iter_mut().find(|(l, _)| l == label) {
                    Some((_, total)) => *total += n,
                    None => out.push((label.to_owned(), n + rest.remove(label).unwrap_or(0))),
                }
            }
        }
        out.extend(rest);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(totals: &[(String, u64)], label: &str) -> Option<u64> {
        totals.iter().find(|(l, _)| l == label).map(|(_, n)| *n)
    }

    #[test]
    fn counts_per_rule_over_shards() {
        let reg = RuleRegistry::new(2);
        let rules = reg.install(["deny-internal", "deny-smtp", "default"]);
        rules.rejected(0, 0);
        rules.rejected(1, 0);
        rules.rejected(1, 2);
        rules.rejected(0, 99); // ignored
        rules.rejected(7, 0); // no such shard: ignored
        let t = reg.totals();
        assert_eq!(
            t,
            [
                ("deny-internal".to_string(), 2),
                ("deny-smtp".to_string(), 0),
                ("default".to_string(), 1)
            ]
        );
    }

    #[test]
    fn many_rules_spread_over_lines() {
        let reg = RuleRegistry::new(3);
        let labels: Vec<String> = (0..40).map(|i| i.to_string()).collect();
        let rules = reg.install(labels);
        for shard in 0..3 {
            for rule in 0..40 {
                for _ in 0..=rule {
                    rules.rejected(shard, rule);
                }
            }
        }
        let t = reg.totals();
        for rule in 0..40 {
            assert_eq!(get(&t, &rule.to_string()), Some(3 * (rule as u64 + 1)));
        }
    }

    #[test]
    fn a_label_kept_across_reloads_keeps_counting() {
        let reg = RuleRegistry::new(1);
        let g1 = reg.install(["a", "b"]);
        g1.rejected(0, 0);
        g1.rejected(0, 1);
        let g2 = reg.install(["b", "a"]); // reordered
        g2.rejected(0, 1);
        // A shard still on the previous generation for a moment: still counted.
        g1.rejected(0, 0);
        assert_eq!(get(&reg.totals(), "a"), Some(3));
        let g3 = reg.install(["c"]); // g1 is folded now
        g3.rejected(0, 0);
        let t = reg.totals();
        assert_eq!(t[0], ("c".to_string(), 1), "current rules first");
        assert_eq!(get(&t, "a"), Some(3));
        assert_eq!(get(&t, "b"), Some(1));
        // Generations older than the previous one are no longer held.
        assert_eq!(Arc::strong_count(&g1), 1);
        assert_eq!(Arc::strong_count(&g2), 2);
    }

    #[test]
    fn an_empty_rule_list_is_fine() {
        let reg = RuleRegistry::new(4);
        let rules = reg.install(Vec::<String>::new());
        assert!(rules.is_empty());
        rules.rejected(0, 0);
        assert!(reg.totals().is_empty());
    }
}
