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

use std::sync::{Arc, Mutex};

use picket_common::detection::{indicator_version, IndicatorSet, RuleBundle};
use picket_common::proto::CoordMsg;

use crate::store::{now_ms, Store, StoreError};

#[derive(Clone)]
struct Current {
    rules: Option<(String, Arc<CoordMsg>)>,
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
                indicators: (String::new(), Arc::new(CoordMsg::Indicators(IndicatorSet::default()))),
            }),
        };
        if let Some(b) = store.current_bundle().await? {
            content.set_rules(RuleBundle { version: b.version, files: b.files });
        }
        content.reload_indicators(store).await?;
        Ok(content)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_rules(&self, bundle: RuleBundle) -> Arc<CoordMsg> {
        let version = bundle.version.clone();
        let msg = Arc::new(CoordMsg::Rules(bundle));
        self.lock().rules = Some((version, msg.clone()));
        msg
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
