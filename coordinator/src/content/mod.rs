//! Detection content the coordinator distributes, and rule validation.
//!
//! [`Content`] holds the current rule bundle and indicator set as ready
//! frames (shared by every session that needs them, never copied per
//! agent). Agents tell their versions in `ContentState`; the gateway answers
//! with whatever is newer, and pushes to every live session when an operator
//! changes either. Indicators with an expiry drop out on their own: the
//! gateway re-reads them periodically and pushes when the set changed.
//!
//! [`checker`]: bundles are compiled on upload by `picket-agent rules check`
//! (YARA-X lives in the agent only; see the module).

pub mod checker;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use picket_common::detection::{indicator_version, rule_key, IndicatorSet, RuleBundle, Severity, BUILTIN_RULES};
use picket_common::proto::CoordMsg;

use crate::clock::now_ms;
use crate::store::{Store, StoreError};

#[derive(Clone)]
struct Current {
    rules: Option<(String, Arc<CoordMsg>)>,
    /// The current bundle's rule severities by `namespace:rule`.
    severities: Arc<BTreeMap<String, Severity>>,
    indicators: (String, Arc<CoordMsg>),
}

pub struct Content {
    current: Mutex<Current>,
}

impl Content {
    /// Load the current bundle and the indicators in force.
    pub async fn load(store: &Store) -> Result<Self, StoreError> {
        let content = Self {
            current: Mutex::new(Current {
                rules: None,
                severities: Arc::new(BTreeMap::new()),
                indicators: (String::new(), Arc::new(CoordMsg::Indicators(IndicatorSet::default()))),
            }),
        };
        if let Some(b) = store.current_bundle().await? {
            content.set_rules(RuleBundle { version: b.version, files: b.files }, b.severities);
        }
        content.reload_indicators(store).await?;
        Ok(content)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_rules(&self, bundle: RuleBundle, severities: BTreeMap<String, Severity>) -> Arc<CoordMsg> {
        let version = bundle.version.clone();
        let msg = Arc::new(CoordMsg::Rules(bundle));
        let mut current = self.lock();
        current.rules = Some((version, msg.clone()));
        current.severities = Arc::new(severities);
        msg
    }

    /// The severity the coordinator knows for a rule: the built-in rules
    /// every agent has, and the current bundle's (as the coordinator's own
    /// check compiled them). `None`: a rule the coordinator did not
    /// distribute (a device's local rule, or a made-up name).
    pub fn rule_severity(&self, namespace: &str, rule: &str) -> Option<Severity> {
        if let Some((_, _, s)) = BUILTIN_RULES.iter().find(|(n, r, _)| *n == namespace && *r == rule) {
            return Some(*s);
        }
        self.lock().severities.get(&rule_key(namespace, rule)).copied()
    }

    /// Whether the current bundle's severities are unknown (stored before
    /// the coordinator kept them): [`crate::Coordinator`] re-checks it.
    pub fn severities_missing(&self) -> Option<String> {
        let current = self.lock();
        match &current.rules {
            Some((version, _)) if current.severities.is_empty() => Some(version.clone()),
            _ => None,
        }
    }

    /// Set the severities of the current bundle `version` (if still current).
    pub fn set_severities(&self, version: &str, severities: BTreeMap<String, Severity>) {
        let mut current = self.lock();
        if current.rules.as_ref().is_some_and(|(v, _)| v == version) {
            current.severities = Arc::new(severities);
        }
    }

    /// Re-read the indicators in force; returns the new frame if the set changed.
    pub async fn reload_indicators(&self, store: &Store) -> Result<Option<Arc<CoordMsg>>, StoreError> {
        let entries: Vec<_> =
            store.indicators(Some(now_ms())).await?.into_iter().map(|i| (i.sha256, i.action)).collect();
        let version = indicator_version(&entries);
        let mut current = self.lock();
        if current.indicators.0 == version {
            return Ok(None);
        }
        let msg = Arc::new(CoordMsg::Indicators(IndicatorSet { version: version.clone(), entries }));
        current.indicators = (version, msg.clone());
        Ok(Some(msg))
    }

    pub fn rules_version(&self) -> Option<String> {
        self.lock().rules.as_ref().map(|(v, _)| v.clone())
    }

    pub fn indicators_version(&self) -> String {
        self.lock().indicators.0.clone()
    }

    /// The frames a device holding these versions lacks.
    pub fn missing(&self, rules_version: &str, indicators_version: &str) -> Vec<Arc<CoordMsg>> {
        let current = self.lock().clone();
        let mut out = Vec::new();
        if let Some((v, msg)) = current.rules {
            if v != rules_version {
                out.push(msg);
            }
        }
        if current.indicators.0 != indicators_version {
            out.push(current.indicators.1);
        }
        out
    }
}

/// A bundle stored before the coordinator kept rule severities: compile it
/// again with the checker and keep them, so investigations judge its rules
/// by the coordinator's own knowledge. Until then (or if the checker is
/// missing) its rules count as unknown: suspicious at most.
pub async fn index_current_bundle(
    store: Store,
    content: Arc<Content>,
    checker: std::path::PathBuf,
    scratch: std::path::PathBuf,
) {
    let Some(version) = content.severities_missing() else { return };
    let bundle = match store.current_bundle().await {
        Ok(Some(b)) if b.version == version => b,
        Ok(_) => return,
        Err(error) => {
            tracing::warn!(%error, "cannot read the current rule bundle to index its severities");
            return;
        }
    };
    match checker::check(&checker, &scratch, &bundle.files).await {
        Ok(report) if !report.severities.is_empty() => {
            if let Err(error) = store.set_bundle_severities(&version, &report.severities).await {
                tracing::warn!(%error, "cannot store the rule severities");
            }
            tracing::info!(%version, rules = report.severities.len(), "rule severities of the current bundle indexed");
            content.set_severities(&version, report.severities);
        }
        Ok(_) => {
            tracing::warn!(%version, "the rule checker reported no severities; the bundle's rules count as unknown")
        }
        Err(error) => {
            tracing::warn!(%error, %version, "cannot index the rule severities; the bundle's rules count as unknown")
        }
    }
}
