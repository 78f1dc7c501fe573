//! Operation metrics: every executed operation counted by name and outcome, and timed.
//!
//! Names come from the document (the selected operation), bounded so clients cannot create unbounded
//! label values: malformed names are `invalid`, and past `RALLY_METRICS_MAX_OPERATIONS` distinct
//! names the rest are `other`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_graphql::Response;
use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute};

/// Records `rally_graphql_operations_total` and `rally_graphql_operation_duration_seconds`, labelled
/// by operation name: the first `max` distinct names keep their own label, later ones are `other`.
pub struct OperationMetrics(Arc<Labels>);

/// The operation names labelled so far.
struct Labels {
    known: Mutex<HashSet<String>>,
    max: usize,
}

impl OperationMetrics {
    /// At most `max` distinct operation labels.
    pub fn new(max: usize) -> Self {
        Self(Arc::new(Labels {
            known: Mutex::new(HashSet::new()),
            max,
        }))
    }
}

impl ExtensionFactory for OperationMetrics {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(OperationMetricsExtension(self.0.clone()))
    }
}

struct OperationMetricsExtension(Arc<Labels>);

impl Labels {
    /// The label of `name`: itself while there is room (or it has one already), else `other`.
    fn of(&self, name: Option<&str>) -> String {
        let label = label(name);
        if name.is_none() || label == "invalid" {
            return label;
        }
        let mut known = self
            .known
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if known.contains(&label) || (known.len() < self.max && known.insert(label.clone())) {
            label
        } else {
            "other".to_owned()
        }
    }
}

#[async_trait::async_trait]
impl Extension for OperationMetricsExtension {
    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let started = Instant::now();
        let response = next.run(ctx, operation_name).await;
        let operation = self.0.of(operation_name);
        let outcome = if response.errors.is_empty() {
            "ok"
        } else {
            "error"
        };
        metrics::counter!("rally_graphql_operations_total", "operation" => operation.clone(), "outcome" => outcome)
            .increment(1);
        metrics::histogram!("rally_graphql_operation_duration_seconds", "operation" => operation)
            .record(started.elapsed().as_secs_f64());
        response
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
        let labels = OperationMetrics::new(2).0;
        assert_eq!(labels.of(Some("A")), "A");
        assert_eq!(labels.of(Some("B")), "B");
        assert_eq!(labels.of(Some("C")), "other");
        assert_eq!(labels.of(Some("A")), "A", "a known name keeps its label");
        assert_eq!(labels.of(None), "anonymous");
        assert_eq!(labels.of(Some("bad name!")), "invalid");
    }
}
