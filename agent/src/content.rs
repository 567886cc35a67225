//! Detection content on the device: the coordinator's rule bundle, its
//! SHA-256 indicators, and the local rule directories of the config,
//! compiled into one [`Engine`] shared by scans and real-time protection.
//!
//! Layout under `<state dir>/content/`:
//! - `bundles/<version>/*.yar` — the current bundle's files;
//! - `bundle.json` — which version is current;
//! - `indicators.json` — the indicator set in force;
//! - `url_blocklist.json` — on a mail host, its URL blocklist (the links
//!   `mail_scan` flags);
//! - `compiled.bin` + `compiled.json` — the compiled rules and the key they
//!   were built for (agent version, bundle version, every local rule file's
//!   path, size and mtime). A start with an unchanged key loads the compiled
//!   rules instead of compiling again.
//!
//! A new bundle is compiled before it is taken into use; if none of its files
//! compiles (or it cannot be written), the last good bundle stays and the
//! reason goes back to the coordinator in `ContentState.rules_error`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use picket_common::detection::{valid_rule_file_name, ContentState, IndicatorSet, RuleBundle};
use picket_common::url_blocklist::{Blocklist, HostBlocklist};
use serde::{Deserialize, Serialize};

use crate::fsutil::{create_private_dir, write_atomic};
use crate::scan::{Engine, Indicators, RuleFileError};

#[derive(Debug, Serialize, Deserialize)]
struct CompiledMeta {
    key: String,
    loaded: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct BundleMeta {
    version: String,
}

pub struct Content {
    dir: PathBuf,
    local_rules: Vec<PathBuf>,
    engine: RwLock<Arc<Engine>>,
    state: Mutex<ContentState>,
    /// Serializes bundle and indicator updates.
    update: Mutex<()>,
    /// A mail host's URL blocklist ([`Content::url_blocklist`]).
    url_blocklist: RwLock<Arc<UrlBlocklist>>,
}

/// The URL blocklist a mail host holds.
#[derive(Debug, Default)]
pub struct UrlBlocklist {
    pub list: Blocklist,
    /// The coordinator left its oldest blocks out (the list did not fit a frame).
    pub truncated: bool,
}

impl Content {
    /// Load what the state dir holds (compiling only if the cache is stale).
    /// Blocking: may compile rules.
    pub fn open(state_dir: &Path, local_rules: Vec<PathBuf>) -> Self {
        let dir = state_dir.join("content");
        if let Err(error) = create_private_dir(&dir.join("bundles")) {
            tracing::warn!(%error, dir = %dir.display(), "cannot create the content directory");
        }
        let rules_version = read_json::<BundleMeta>(&dir.join("bundle.json")).map(|m| m.version).unwrap_or_default();
        let indicators = read_json::<IndicatorSet>(&dir.join("indicators.json")).unwrap_or_default();
        let state = ContentState {
            rules_version: rules_version.clone(),
            indicators_version: indicators.version.clone(),
            rules_error: None,
        };
        let content = Self {
            dir,
            local_rules,
            engine: RwLock::new(Arc::new(Engine::load(&[], Indicators::default()).0)),
            state: Mutex::new(state),
            update: Mutex::new(()),
            url_blocklist: RwLock::new(Arc::new(UrlBlocklist::default())),
        };
        if let Some(list) = read_json::<HostBlocklist>(&content.dir.join("url_blocklist.json")) {
            content.use_url_blocklist(list);
        }
        let engine = content.build(&rules_version, indicators_of(&indicators));
        *content.engine.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(engine);
        content
    }

    /// The engine to scan with now.
    pub fn engine(&self) -> Arc<Engine> {
        self.engine.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The URL blocklist (a mail host's; empty elsewhere).
    pub fn url_blocklist(&self) -> Arc<UrlBlocklist> {
        self.url_blocklist.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Take a new URL blocklist into use, and keep it for the next start
    /// (a scan right after a restart checks against the last one known).
    pub fn apply_url_blocklist(&self, list: HostBlocklist) {
        let saved = serde_json::to_vec(&list)
            .map_err(|e| e.to_string())
            .and_then(|b| write_atomic(&self.dir.join("url_blocklist.json"), &b).map_err(|e| e.to_string()));
        if let Err(error) = saved {
            tracing::warn!(%error, "cannot persist the URL blocklist; it is used until the agent stops");
        }
        if list.truncated {
            tracing::warn!(
                blocks = list.entries.len(),
                "the URL blocklist is incomplete: its oldest blocks are not checked"
            );
        }
        tracing::info!(blocks = list.entries.len(), "URL blocklist in use");
        self.use_url_blocklist(list);
    }

    fn use_url_blocklist(&self, list: HostBlocklist) {
        let new = UrlBlocklist { truncated: list.truncated, list: Blocklist::new(list.entries) };
        *self.url_blocklist.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(new);
    }

    /// What to tell the coordinator.
    pub fn state(&self) -> ContentState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn bundle_dir(&self, version: &str) -> PathBuf {
        self.dir.join("bundles").join(version)
    }

    /// Load the compiled bundle `version` plus the local rules from the
    /// cache, or compile and cache them.
    fn build(&self, version: &str, indicators: Indicators) -> Engine {
        let key = cache_key(version, &self.local_rules);
        if let Some(meta) = read_json::<CompiledMeta>(&self.dir.join("compiled.json")).filter(|m| m.key == key) {
            match std::fs::read(self.dir.join("compiled.bin"))
                .map_err(|e| e.to_string())
                .and_then(|b| Engine::deserialize(&b, meta.loaded, indicators.clone()))
            {
                Ok(engine) => {
                    tracing::info!(rules = engine.rule_count, "compiled rules loaded from the cache");
                    return engine;
                }
                Err(error) => tracing::warn!(%error, "compiled rule cache unusable; compiling"),
            }
        }
        let (engine, _) = self.compile(version, indicators);
        self.save_cache(version, &engine);
        engine
    }

    /// Compile the bundle `version` plus the local rules. Returns the engine
    /// and the files that did not compile.
    fn compile(&self, version: &str, indicators: Indicators) -> (Engine, Vec<RuleFileError>) {
        let mut sources = Vec::new();
        if !version.is_empty() {
            sources.push(self.bundle_dir(version));
        }
        sources.extend(self.local_rules.iter().cloned());
        let started = std::time::Instant::now();
        // Bundle files come over the network: no includes in them.
        let (engine, errors) = Engine::load_with(&sources, indicators, &[self.dir.join("bundles")]);
        for e in &errors {
            tracing::warn!(file = %e.file, error = %e.error, "rule file skipped");
        }
        tracing::info!(
            rules = engine.rule_count,
            files = engine.loaded.len(),
            skipped = errors.len(),
            ms = started.elapsed().as_millis() as u64,
            "rules compiled"
        );
        (engine, errors)
    }

    fn save_cache(&self, version: &str, engine: &Engine) {
        let saved = engine.serialize().and_then(|bytes| {
            write_atomic(&self.dir.join("compiled.bin"), &bytes).map_err(|e| e.to_string())?;
            let meta = CompiledMeta { key: cache_key(version, &self.local_rules), loaded: engine.loaded.clone() };
            let json = serde_json::to_vec(&meta).map_err(|e| e.to_string())?;
            write_atomic(&self.dir.join("compiled.json"), &json).map_err(|e| e.to_string())
        });
        if let Err(error) = saved {
            tracing::warn!(%error, "cannot cache the compiled rules");
        }
    }

    /// Take a new bundle into use, or keep the last good one. Blocking
    /// (compiles). Returns the state to report.
    pub fn apply_rules(&self, bundle: RuleBundle) -> ContentState {
        let _guard = self.update.lock().unwrap_or_else(|p| p.into_inner());
        let result = self.try_apply_rules(&bundle);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(engine) => {
                *self.engine.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(engine);
                state.rules_version = bundle.version.clone();
                state.rules_error = None;
                tracing::info!(version = %bundle.version, files = bundle.files.len(), "rule bundle in use");
            }
            Err(error) => {
                tracing::error!(version = %bundle.version, %error, "new rule bundle refused; keeping the last good one");
                state.rules_error = Some(format!("bundle {}: {error}", bundle.version));
            }
        }
        state.clone()
    }

    fn try_apply_rules(&self, bundle: &RuleBundle) -> Result<Engine, String> {
        if !picket_common::detection::is_sha256_hex(&bundle.version) {
            return Err("the bundle version is not a SHA-256".into());
        }
        if let Some(bad) = bundle.files.iter().find(|f| !valid_rule_file_name(&f.name)) {
            return Err(format!("file name {:?} is not allowed", bad.name));
        }
        let dir = self.bundle_dir(&bundle.version);
        let _ = std::fs::remove_dir_all(&dir);
        create_private_dir(&dir).map_err(|e| format!("cannot write {}: {e}", dir.display()))?;
        for f in &bundle.files {
            write_atomic(&dir.join(&f.name), f.source.as_bytes())
                .map_err(|e| format!("cannot write {}: {e}", f.name))?;
        }
        let indicators = self.engine().indicators.clone();
        let (engine, errors) = self.compile(&bundle.version, indicators);
        let from_bundle = engine.loaded.iter().filter(|p| Path::new(p).starts_with(&dir)).count();
        if !bundle.files.is_empty() && from_bundle == 0 {
            let _ = std::fs::remove_dir_all(&dir);
            let first = errors.first().map(|e| format!(": {}", e.error)).unwrap_or_default();
            return Err(format!("none of its {} files compiled{first}", bundle.files.len()));
        }
        self.save_cache(&bundle.version, &engine);
        write_atomic(
            &self.dir.join("bundle.json"),
            &serde_json::to_vec(&BundleMeta { version: bundle.version.clone() }).map_err(|e| e.to_string())?,
        )
        .map_err(|e| format!("cannot record the bundle: {e}"))?;
        // Older bundles are no longer needed.
        if let Ok(entries) = std::fs::read_dir(self.dir.join("bundles")) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy() != bundle.version {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        Ok(engine)
    }

    /// Replace the indicators. Returns the state to report.
    pub fn apply_indicators(&self, set: IndicatorSet) -> ContentState {
        let _guard = self.update.lock().unwrap_or_else(|p| p.into_inner());
        let saved = serde_json::to_vec(&set)
            .map_err(|e| e.to_string())
            .and_then(|b| write_atomic(&self.dir.join("indicators.json"), &b).map_err(|e| e.to_string()));
        if let Err(error) = saved {
            // Still used now; a restart before the next update falls back to the old set.
            tracing::warn!(%error, "cannot persist indicators");
        }
        let engine = self.engine().with_indicators(indicators_of(&set));
        *self.engine.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(engine);
        tracing::info!(version = %set.version, count = set.entries.len(), "indicators in use");
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.indicators_version = set.version;
        state.clone()
    }
}

fn indicators_of(set: &IndicatorSet) -> Indicators {
    Indicators(set.entries.iter().cloned().collect())
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(v) => Some(v),
        Err(error) => {
            tracing::warn!(%error, path = %path.display(), "unreadable content file ignored");
            None
        }
    }
}

/// What the compiled rules depend on.
fn cache_key(bundle_version: &str, local_rules: &[PathBuf]) -> String {
    use std::os::unix::fs::MetadataExt;
    let mut files = Vec::new();
    for dir in local_rules {
        collect(dir, &mut files);
    }
    files.sort();
    let mut text = format!("agent {}\nbundle {bundle_version}\n", env!("CARGO_PKG_VERSION"));
    for f in files {
        if let Ok(m) = std::fs::metadata(&f) {
            text.push_str(&format!("{} {} {}.{}\n", f.display(), m.size(), m.mtime(), m.mtime_nsec()));
        }
    }
    picket_common::detection::sha256_hex(text.as_bytes())
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return };
    if meta.is_dir() {
        if let Ok(rd) = std::fs::read_dir(path) {
            for e in rd.flatten() {
                collect(&e.path(), out);
            }
        }
    } else {
        out.push(path.to_path_buf());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use picket_common::detection::{bundle_version, IndicatorAction, RuleFile};

    fn bundle(files: &[(&str, &str)]) -> RuleBundle {
        let files: Vec<RuleFile> =
            files.iter().map(|(n, s)| RuleFile { name: n.to_string(), source: s.to_string() }).collect();
        RuleBundle { version: bundle_version(&files), files }
    }

    fn hits(content: &Content, data: &[u8]) -> Vec<String> {
        let engine = content.engine();
        let mut s = engine.scanner();
        engine.scan_data(&mut s, Path::new("/x"), data, "").expect("scan").into_iter().map(|d| d.rule).collect()
    }

    #[test]
    fn a_bundle_is_used_cached_and_a_broken_one_keeps_the_last_good() {
        let dir = tempfile::tempdir().expect("tempdir");
        let content = Content::open(dir.path(), Vec::new());
        assert!(hits(&content, b"needle").is_empty());
        let good = bundle(&[("a.yar", "rule needle { strings: $a = \"needle\" condition: $a }")]);
        let state = content.apply_rules(good.clone());
        assert_eq!((state.rules_version.as_str(), state.rules_error), (good.version.as_str(), None));
        assert_eq!(hits(&content, b"needle"), ["needle"]);

        let broken = bundle(&[("b.yar", "rule broken { condition: no_such_thing }")]);
        let state = content.apply_rules(broken);
        assert_eq!(state.rules_version, good.version);
        assert!(state.rules_error.as_deref().is_some_and(|e| e.contains("none of its 1 files compiled")), "{state:?}");
        assert_eq!(hits(&content, b"needle"), ["needle"], "the last good bundle stays in use");

        // A restart loads the good bundle from the compiled cache.
        let again = Content::open(dir.path(), Vec::new());
        assert_eq!(again.state().rules_version, good.version);
        assert_eq!(hits(&again, b"needle"), ["needle"]);
        let meta: CompiledMeta = read_json(&dir.path().join("content/compiled.json")).expect("meta");
        assert_eq!(meta.key, cache_key(&good.version, &[]));
    }

    #[test]
    fn indicators_replace_and_survive_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let content = Content::open(dir.path(), Vec::new());
        let sha = picket_common::detection::sha256_hex(b"benign bytes");
        let set = IndicatorSet { version: "v1".into(), entries: vec![(sha, IndicatorAction::Block)] };
        assert_eq!(content.apply_indicators(set).indicators_version, "v1");
        assert_eq!(hits(&content, b"benign bytes"), ["indicator"]);
        let again = Content::open(dir.path(), Vec::new());
        assert_eq!(hits(&again, b"benign bytes"), ["indicator"]);
        again.apply_indicators(IndicatorSet { version: "v2".into(), entries: Vec::new() });
        assert!(hits(&again, b"benign bytes").is_empty());
    }
}
