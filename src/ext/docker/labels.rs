//! The labels of a stack's services as the engine holds them (SPEC
//! section 3 step 8: the backup/restore tier is decided from what is
//! deployed). A service's own labels are its compose file's
//! `deploy.labels`, interpolated; its containers' labels (the compose
//! file's service-level `labels:`) are `Spec.TaskTemplate.ContainerSpec.Labels`.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::Deserialize;

use super::Docker;
use crate::ext::Bound;

/// One service as `docker service inspect` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceLabels {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub container_labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Inspect {
    #[serde(rename = "Spec", default)]
    spec: Spec,
}

#[derive(Deserialize, Default)]
struct Spec {
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "Labels", default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(rename = "TaskTemplate", default)]
    task: Task,
}

#[derive(Deserialize, Default)]
struct Task {
    #[serde(rename = "ContainerSpec", default)]
    container: Container,
}

#[derive(Deserialize, Default)]
struct Container {
    #[serde(rename = "Labels", default)]
    labels: Option<BTreeMap<String, String>>,
}

/// Parses `docker service inspect` of several services (a JSON array).
pub fn parse_service_labels(text: &str) -> Result<Vec<ServiceLabels>> {
    let v: Vec<Inspect> =
        serde_json::from_str(text.trim()).context("unexpected docker service inspect output")?;
    Ok(v.into_iter()
        .map(|i| ServiceLabels {
            name: i.spec.name,
            labels: i.spec.labels.unwrap_or_default(),
            container_labels: i.spec.task.container.labels.unwrap_or_default(),
        })
        .collect())
}

impl Docker {
    /// The labels of every service of `stack` the engine runs: one
    /// `GET /services` by the stack's label.
    pub(crate) fn stack_labels(&self, stack: &str, bound: &Bound) -> Result<Vec<ServiceLabels>> {
        let (services, _) = self.stack_services(stack, bound)?;
        parse_service_labels(&services)
    }
}
