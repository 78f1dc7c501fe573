//! Operation metrics: every executed operation counted by name and outcome, and timed.
//!
//! Names come from the document (the selected operation), bounded so clients cannot create unbounded
//! label values: malformed names are `invalid`, and past `RALLY_METRICS_MAX_OPERATIONS` distinct
//! names the rest are `other`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{Counter, Histogram};

/// Records `rally_graphql_operations_total` and `rally_graphql_operation_duration_seconds`, labelled
/// by operation name: the first `max` distinct names keep their own label, later ones are `other`.
/// The metric handles of each label are registered once and kept (registering builds and looks up
/// a labelled key: a tenth of a small request's instructions when done per request).
pub struct OperationMetrics {
    known: Mutex<Known>,
    max: usize,
}

/// The labels registered so far, and how many of them are operation names.
#[derive(Default)]
struct Known {
    labels: HashMap<String, Arc<Handles>>,
    names: usize,
}

/// The metrics of one operation label.
struct Handles {
    ok: Counter,
    error: Counter,
    duration: Histogram,
}

impl Handles {
    fn of(label: &str) -> Arc<Self> {
        let operation = label.to_owned();
        Arc::new(Self {
            ok: metrics::counter!("rally_graphql_operations_total", "operation" => operation.clone(), "outcome" => "ok"),
            error: metrics::counter!("rally_graphql_operations_total", "operation" => operation.clone(), "outcome" => "error"),
            duration: metrics::histogram!("rally_graphql_operation_duration_seconds", "operation" => operation),
        })
    }
}

impl OperationMetrics {
    /// At most `max` distinct operation labels.
    pub fn new(max: usize) -> Self {
        Self {
            known: Mutex::default(),
            max,
        }
    }

    /// Counts one executed operation named `name` (the engine's choice: the requested name, or the
    /// document's only operation's), whether it had errors, and times it.
    pub fn record(&self, name: Option<&str>, ok: bool, took: Duration) {
        let handles = self.handles(name);
        if ok { &handles.ok } else { &handles.error }.increment(1);
        handles.duration.record(took.as_secs_f64());
    }

    /// The handles of `name`'s label, registered on first use: the name itself while fewer than
    /// `max` names have one, else `other` (`anonymous` and `invalid` are labels of their own).
    fn handles(&self, name: Option<&str>) -> Arc<Handles> {
        let mut known = self
            .known
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(handles) = name.and_then(|name| known.labels.get(name)) {
            return handles.clone();
        }
        let mut label = label(name);
        if name.is_some() && label != "invalid" && !known.labels.contains_key(&label) {
            if known.names < self.max {
                known.names += 1;
            } else {
                label = "other".to_owned();
            }
        }
        known
            .labels
            .entry(label)
            .or_insert_with_key(|label| Handles::of(label))
            .clone()
    }

    #[cfg(test)]
    fn of(&self, name: Option<&str>) -> String {
        let handles = self.handles(name);
        let known = self.known.lock().expect("not poisoned");
        known
            .labels
            .iter()
            .find(|(_, kept)| Arc::ptr_eq(kept, &handles))
            .map(|(label, _)| label.clone())
            .expect("a label")
    }
}

/// A metrics label for the operation name.
fn label(name: Option<&str>) -> String {
    match name {
        Some(name)
            if name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
        {
            name.to_owned()
        }
        Some(_) => "invalid".to_owned(),
        None => "anonymous".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_bound_names_fold_into_other() {
        let labels = OperationMetrics::new(2);
        assert_eq!(labels.of(Some("A")), "A");
        assert_eq!(labels.of(Some("B")), "B");
        assert_eq!(labels.of(Some("C")), "other");
        assert_eq!(labels.of(Some("A")), "A", "a known name keeps its label");
        assert_eq!(labels.of(None), "anonymous");
        assert_eq!(labels.of(Some("bad name!")), "invalid");
    }
}
