//! The detection engine: compiled YARA-X rules and SHA-256 indicators.
//!
//! Rules: every `.yar`/`.yara` file is added in a namespace named after the
//! file. A file with an error is reported and never stops the others:
//! YARA-X keeps compiling after a failed source and builds only the rules
//! that compiled. The external variables public rule
//! sets use — `filename`, `filepath`, `extension`, `filetype`, `owner` — are
//! defined for every file and set per scanned file.
//!
//! Severity of a match, from the rule's metadata: `severity` (`malicious`,
//! `suspicious`, `informational`) if present; else `score` (≥ 75 malicious,
//! ≥ 40 suspicious, below informational — the THOR / signature-base scale);
//! else malicious. The built-in EICAR rule is malicious, as every antivirus
//! treats it. Indicators: `allow` overrides every rule; `block` is malicious.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use std::sync::Arc;

pub use picket_common::detection::{Detection, IndicatorAction, Severity};

/// A rule file that could not be compiled.
#[derive(Debug, Clone, Serialize)]
pub struct RuleFileError {
    pub file: String,
    pub error: String,
}

/// SHA-256 (lowercase hex) → block or allow.
#[derive(Debug, Clone, Default)]
pub struct Indicators(pub HashMap<String, IndicatorAction>);

const EXTERNALS: [&str; 5] = ["filename", "filepath", "extension", "filetype", "owner"];

/// The EICAR test string, kept in two halves so this source file is not
/// itself detected by the scanners of the people who read it.
const EICAR_HEAD: &str = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR";
const EICAR_TAIL: &str = "-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

fn eicar_rule() -> String {
    let hex: Vec<String> = EICAR_HEAD.bytes().chain(EICAR_TAIL.bytes()).map(|b| format!("{b:02X}")).collect();
    // The EICAR definition: the file starts with the 68 bytes and is at most
    // 128 bytes long (the rest being whitespace).
    format!(
        "rule EICAR_Test_File {{\n  meta:\n    severity = \"malicious\"\n    description = \"EICAR anti-malware test file\"\n  \
         strings:\n    $eicar = {{ {} }}\n  condition:\n    $eicar at 0 and filesize <= 128\n}}\n",
        hex.join(" ")
    )
}

pub struct Engine {
    rules: Arc<yara_x::Rules>,
    pub indicators: Indicators,
    /// Files whose rules are loaded.
    pub loaded: Vec<String>,
    pub rule_count: usize,
}

fn new_compiler() -> yara_x::Compiler<'static> {
    let mut c = yara_x::Compiler::new();
    for name in EXTERNALS {
        // Defining a fresh global on a new compiler cannot fail.
        let _ = c.define_global(name, "");
    }
    c
}

impl Engine {
    /// Load the built-in rules plus every rule file in `paths` (files or
    /// directories, recursively). Returns the engine and the files skipped.
    pub fn load(paths: &[PathBuf], indicators: Indicators) -> (Self, Vec<RuleFileError>) {
        Self::load_with(paths, indicators, &[])
    }

    /// [`Self::load`], with `include` statements refused in files under
    /// `no_includes` (rule bundles from the coordinator: an `include` there
    /// could make the agent, which runs as root, read any file on the
    /// device and echo a piece of it back in an error message).
    pub fn load_with(paths: &[PathBuf], indicators: Indicators, no_includes: &[PathBuf]) -> (Self, Vec<RuleFileError>) {
        let mut files = Vec::new();
        for p in paths {
            collect_rule_files(p, &mut files);
        }
        files.sort();
        let mut compiler = new_compiler();
        compiler.new_namespace("builtin");
        if let Err(e) = compiler.add_source(eicar_rule().as_str()) {
            // The built-in rule is a constant; failing here is a bug, not input.
            tracing::error!(error = %e, "built-in EICAR rule failed to compile");
        }
        let mut errors = Vec::new();
        let mut loaded = Vec::new();
        for file in files {
            let name = file.display().to_string();
            let source = match std::fs::read(&file) {
                Ok(s) => s,
                Err(e) => {
                    errors.push(RuleFileError { file: name, error: e.to_string() });
                    continue;
                }
            };
            let dir = file.parent().unwrap_or(Path::new(".")).to_path_buf();
            compiler.add_include_dir(&dir);
            compiler.enable_includes(!no_includes.iter().any(|root| file.starts_with(root)));
            compiler.new_namespace(&namespace_of(&file));
            match compiler.add_source(source.as_slice()) {
                Ok(_) => loaded.push(name),
                Err(e) => errors.push(RuleFileError { file: name, error: describe(&e) }),
            }
        }
        let rules = compiler.build();
        let rule_count = rules.iter().len();
        (Self { rules: Arc::new(rules), indicators, loaded, rule_count }, errors)
    }

    /// Every rule's severity, by `namespace:rule` (what the coordinator
    /// trusts instead of the severity a device reports).
    pub fn severities(&self) -> std::collections::BTreeMap<String, Severity> {
        self.rules
            .iter()
            .map(|r| (picket_common::detection::rule_key(r.namespace(), r.identifier()), severity_of(&r)))
            .collect()
    }

    /// The same rules with other indicators (nothing is recompiled).
    pub fn with_indicators(&self, indicators: Indicators) -> Self {
        Self { rules: self.rules.clone(), indicators, loaded: self.loaded.clone(), rule_count: self.rule_count }
    }

    /// The compiled rules in YARA-X's serialized form (valid for this
    /// YARA-X version only).
    pub fn serialize(&self) -> Result<Vec<u8>, String> {
        yara_x::Rules::serialize(&self.rules).map_err(|e| e.to_string())
    }

    /// Rules serialized by [`Self::serialize`].
    pub fn deserialize(bytes: &[u8], loaded: Vec<String>, indicators: Indicators) -> Result<Self, String> {
        let rules = yara_x::Rules::deserialize(bytes).map_err(|e| e.to_string())?;
        let rule_count = rules.iter().len();
        Ok(Self { rules: Arc::new(rules), indicators, loaded, rule_count })
    }

    pub fn scanner(&self) -> yara_x::Scanner<'_> {
        let mut s = yara_x::Scanner::new(&self.rules);
        s.set_timeout(std::time::Duration::from_secs(60));
        s
    }

    /// Detections in `data`, the content of the file at `path`.
    pub fn scan_data(
        &self,
        scanner: &mut yara_x::Scanner<'_>,
        path: &Path,
        data: &[u8],
        owner: &str,
    ) -> Result<Vec<Detection>, String> {
        let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(data));
        self.detect(scanner, path, &sha256, data.len() as u64, data, owner, Source::Bytes(data))
    }

    /// Detections in a large file without reading it into memory: the hash
    /// is streamed, and YARA-X maps the file for the scan.
    pub fn scan_path(
        &self,
        scanner: &mut yara_x::Scanner<'_>,
        path: &Path,
        owner: &str,
    ) -> Result<Vec<Detection>, String> {
        use sha2::Digest;
        let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let mut hasher = sha2::Sha256::new();
        let mut head = Vec::new();
        let size = crate::fsutil::hash::read_all(&file, |b| {
            if head.len() < 16 {
                head.extend_from_slice(&b[..b.len().min(16 - head.len())]);
            }
            hasher.update(b);
        })
        .map_err(|e| e.to_string())?;
        let sha256 = hex::encode(hasher.finalize());
        self.detect(scanner, path, &sha256, size, &head, owner, Source::File)
    }

    #[allow(clippy::too_many_arguments)]
    fn detect(
        &self,
        scanner: &mut yara_x::Scanner<'_>,
        path: &Path,
        sha256: &str,
        size: u64,
        head: &[u8],
        owner: &str,
        source: Source<'_>,
    ) -> Result<Vec<Detection>, String> {
        let base = |rule: &str, namespace: &str, severity| Detection {
            path: path.display().to_string(),
            sha256: sha256.to_string(),
            size,
            rule: rule.to_string(),
            namespace: namespace.to_string(),
            severity,
        };
        match self.indicators.0.get(sha256) {
            Some(IndicatorAction::Allow) => return Ok(Vec::new()),
            Some(IndicatorAction::Block) => return Ok(vec![base("indicator", "indicators", Severity::Malicious)]),
            None => {}
        }
        let filename = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let extension = path.extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default();
        let values = [
            ("filename", filename),
            ("filepath", path.display().to_string()),
            ("extension", extension),
            ("filetype", filetype(head).to_string()),
            ("owner", owner.to_string()),
        ];
        for (name, value) in values {
            scanner.set_global(name, value.as_str()).map_err(|e| e.to_string())?;
        }
        let results = match source {
            Source::Bytes(data) => scanner.scan(data),
            Source::File => scanner.scan_file(path),
        }
        .map_err(|e| e.to_string())?;
        Ok(results.matching_rules().map(|r| base(r.identifier(), r.namespace(), severity_of(&r))).collect())
    }
}

/// What a scan reads.
enum Source<'d> {
    Bytes(&'d [u8]),
    /// The file at the path (YARA-X memory-maps large ones).
    File,
}

fn severity_of(rule: &yara_x::Rule<'_, '_>) -> Severity {
    let mut score = None;
    for (key, value) in rule.metadata() {
        match (key, value) {
            ("severity", yara_x::MetaValue::String(s)) => match s.to_ascii_lowercase().as_str() {
                "malicious" | "critical" | "high" => return Severity::Malicious,
                "suspicious" | "medium" => return Severity::Suspicious,
                "informational" | "info" | "low" => return Severity::Informational,
                _ => {}
            },
            ("score", yara_x::MetaValue::Integer(n)) => score = Some(n),
            _ => {}
        }
    }
    match score {
        Some(n) if n >= 75 => Severity::Malicious,
        Some(n) if n >= 40 => Severity::Suspicious,
        Some(_) => Severity::Informational,
        None => Severity::Malicious,
    }
}

/// A coarse file type from magic bytes, for the `filetype` variable.
fn filetype(data: &[u8]) -> &'static str {
    match data {
        [0x7f, b'E', b'L', b'F', ..] => "ELF",
        [b'M', b'Z', ..] => "EXE",
        [b'#', b'!', ..] => "SCRIPT",
        [b'P', b'K', 3, 4, ..] => "ZIP",
        [0xcf, 0xfa, 0xed, 0xfe, ..] | [0xfe, 0xed, 0xfa, 0xcf, ..] | [0xca, 0xfe, 0xba, 0xbe, ..] => "MACHO",
        _ => "",
    }
}

fn namespace_of(file: &Path) -> String {
    file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "rules".into())
}

fn collect_rule_files(path: &Path, out: &mut Vec<PathBuf>) {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return };
    if meta.is_dir() {
        if let Ok(rd) = std::fs::read_dir(path) {
            for e in rd.flatten() {
                collect_rule_files(&e.path(), out);
            }
        }
    } else if meta.is_file() && path.extension().is_some_and(|e| e == "yar" || e == "yara") {
        out.push(path.to_path_buf());
    }
}

/// A compile error as text. YARA-X renders it with snippets of the source,
/// and that renderer (annotate-snippets 0.12) panics on some multi-byte
/// characters (a U+0085 in the source, found by the API's Schemathesis
/// run). A rule file must never take the agent down, so a panic falls back
/// to the error's code and title, which need no rendering.
fn describe(e: &yara_x::errors::CompileError) -> String {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| e.to_string())).unwrap_or_else(|_| {
        tracing::warn!(code = e.code(), "YARA-X could not render a compile error; reporting its title");
        format!("error[{}]: {}", e.code(), e.title())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eicar() -> Vec<u8> {
        format!("{EICAR_HEAD}{EICAR_TAIL}").into_bytes()
    }

    #[test]
    fn a_rule_file_whose_error_yara_x_cannot_render_is_reported_not_a_crash() {
        // Schemathesis sent this source to POST /rules: rendering its
        // compile error panicked inside YARA-X's snippet renderer.
        let dir = tempfile::tempdir().expect("tempdir");
        let bad = dir.path().join("bad.yar");
        std::fs::write(&bad, "\u{85}\u{a5477}\u{9d}\u{41fb9}\u{d4}\u{b4275}\u{f},g\u{56a59}\u{9152f}").expect("write");
        let good = dir.path().join("good.yar");
        std::fs::write(&good, "rule ok { condition: false }").expect("write");
        let (engine, errors) = Engine::load(&[bad.clone(), good], Indicators::default());
        assert_eq!(engine.loaded.len(), 1, "the good file still loads");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].file, bad.display().to_string());
        assert!(!errors[0].error.is_empty());
    }

    #[test]
    fn eicar_is_detected_as_malicious_and_only_when_it_is_the_file() {
        let (engine, errors) = Engine::load(&[], Indicators::default());
        assert!(errors.is_empty());
        // The coordinator knows the built-in rules by this list.
        let builtin: Vec<(String, Severity)> = picket_common::detection::BUILTIN_RULES
            .iter()
            .map(|(ns, rule, sev)| (picket_common::detection::rule_key(ns, rule), *sev))
            .collect();
        assert_eq!(engine.severities().into_iter().collect::<Vec<_>>(), builtin);
        let mut s = engine.scanner();
        let d = engine.scan_data(&mut s, Path::new("/tmp/eicar.com"), &eicar(), "root").expect("scan");
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].rule, "EICAR_Test_File");
        assert_eq!(d[0].severity, Severity::Malicious);
        assert_eq!(d[0].sha256, "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f");
        let mut prefixed = b"prefix: ".to_vec();
        prefixed.extend(eicar());
        assert!(engine.scan_data(&mut s, Path::new("x"), &prefixed, "").expect("scan").is_empty());
    }

    #[test]
    fn allow_overrides_rules_and_block_is_malicious() {
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(eicar()));
        let allow = Indicators(HashMap::from([(sha.clone(), IndicatorAction::Allow)]));
        let (engine, _) = Engine::load(&[], allow);
        let mut s = engine.scanner();
        assert!(engine.scan_data(&mut s, Path::new("e"), &eicar(), "").expect("scan").is_empty());
        let block = Indicators(HashMap::from([(
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"benign")),
            IndicatorAction::Block,
        )]));
        let (engine, _) = Engine::load(&[], block);
        let mut s = engine.scanner();
        let d = engine.scan_data(&mut s, Path::new("b"), b"benign", "").expect("scan");
        assert_eq!((d[0].rule.as_str(), d[0].severity), ("indicator", Severity::Malicious));
    }

    #[test]
    fn includes_are_refused_in_sandboxed_files_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (local, bundle) = (dir.path().join("local"), dir.path().join("bundle"));
        for d in [&local, &bundle] {
            std::fs::create_dir_all(d).expect("mkdir");
            std::fs::write(d.join("inc.yara"), "rule included { condition: true }").expect("write");
            std::fs::write(d.join("main.yar"), "include \"inc.yara\"\nrule uses { condition: included }")
                .expect("write");
        }
        let (_, errors) =
            Engine::load_with(&[local.clone(), bundle.clone()], Indicators::default(), std::slice::from_ref(&bundle));
        let failed: Vec<&str> = errors.iter().map(|e| e.file.as_str()).collect();
        assert_eq!(failed.len(), 1, "{errors:?}");
        assert!(failed[0].starts_with(&bundle.display().to_string()) && failed[0].ends_with("main.yar"), "{errors:?}");
    }

    #[test]
    fn a_broken_rule_file_is_reported_and_the_others_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("good.yar"),
            "rule good { meta: score = 50 strings: $a = \"needle\" condition: $a }",
        )
        .expect("write");
        std::fs::write(dir.path().join("bad.yar"), "rule bad { condition: nonsense_identifier }").expect("write");
        std::fs::write(dir.path().join("notes.txt"), "not a rule").expect("write");
        let (engine, errors) = Engine::load(&[dir.path().to_path_buf()], Indicators::default());
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].file.ends_with("bad.yar"));
        assert_eq!(engine.loaded.len(), 1);
        let mut s = engine.scanner();
        let d = engine.scan_data(&mut s, Path::new("hay"), b"a needle in it", "").expect("scan");
        assert_eq!(
            (d[0].rule.as_str(), d[0].namespace.as_str(), d[0].severity),
            ("good", "good.yar", Severity::Suspicious)
        );
    }
}
