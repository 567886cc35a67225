//! The scanner on real public material from `../shared/corpus/`: rule sets
//! that security teams run, and the EICAR test file and its variants.

use std::path::{Path, PathBuf};

use picket_agent::scan::{scan, Engine, Indicators, ScanOptions, ScanProgress, Severity};

/// `../shared/corpus` beside the repository (CI lays `shared/` next to its clone).
fn corpus() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus");
    assert!(dir.is_dir(), "{} not found: the test corpus lives in shared/ beside the repository", dir.display());
    dir
}

fn decode_b64(path: &Path) -> Vec<u8> {
    let out = std::process::Command::new("base64").arg("-d").arg(path).output().expect("base64");
    assert!(out.status.success(), "base64 -d {}", path.display());
    out.stdout
}

#[test]
fn public_rule_sets_compile_with_the_external_variables_defined() {
    let yara = corpus().join("yara");
    let (rl, errors) = Engine::load(&[yara.join("reversinglabs")], Indicators::default());
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(rl.loaded.len(), 274);
    assert!(rl.rule_count > 948, "reversinglabs: {} rules", rl.rule_count);
    let (sb, errors) = Engine::load(&[yara.join("signature-base")], Indicators::default());
    assert!(errors.is_empty(), "{errors:?}");
    // 51 files, every one compiles; the engine counts 1,427 rules plus the
    // built-in EICAR rule (the corpus README's 1,430 is a count by text).
    assert_eq!(sb.loaded.len(), 51);
    assert!(sb.rule_count > 1427, "signature-base: {} rules", sb.rule_count);
}

#[test]
fn eicar_and_its_variants_are_judged_as_the_standard_says() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in
        ["eicar.com", "eicar_lf.txt", "eicar_crlf.txt", "eicar_padded_128.txt", "eicar_not_at_offset0.txt", "eicar.zip"]
    {
        let bytes = decode_b64(&corpus().join("eicar").join(format!("{name}.b64")));
        std::fs::write(dir.path().join(name), bytes).expect("write");
    }
    let (engine, errors) = Engine::load(&[corpus().join("yara/signature-base")], Indicators::default());
    assert!(errors.is_empty());
    let s = scan(&engine, &[dir.path().to_path_buf()], &ScanOptions::default(), &ScanProgress::default(), &|_| {});
    let hits = |file: &str| -> Vec<(String, Severity)> {
        s.detections.iter().filter(|d| d.path.ends_with(file)).map(|d| (d.rule.clone(), d.severity)).collect()
    };
    let builtin = ("EICAR_Test_File".to_string(), Severity::Malicious);
    let sigbase = ("SUSP_Just_EICAR".to_string(), Severity::Suspicious); // score 40
    assert_eq!(hits("/eicar.com"), vec![builtin.clone(), sigbase.clone()]);
    assert_eq!(hits("eicar_lf.txt"), vec![builtin.clone(), sigbase]);
    assert_eq!(hits("eicar_crlf.txt"), vec![builtin.clone()]);
    assert_eq!(hits("eicar_padded_128.txt"), vec![builtin]);
    assert!(hits("eicar_not_at_offset0.txt").is_empty(), "not EICAR: the string is not at offset 0");
    assert!(hits("eicar.zip").is_empty(), "archives are not unpacked");
    let eicar = s.detections.iter().find(|d| d.path.ends_with("/eicar.com")).expect("eicar.com");
    assert_eq!(eicar.sha256, "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f");
    assert_eq!(s.files, 6);
    assert_eq!(s.errors, 0);
}

#[test]
fn benign_test_files_scan_without_errors() {
    let (engine, _) = Engine::load(&[corpus().join("yara/reversinglabs")], Indicators::default());
    let s = scan(&engine, &[corpus().join("benign")], &ScanOptions::default(), &ScanProgress::default(), &|_| {});
    assert!(s.files > 10, "{s:?}");
    assert_eq!(s.errors, 0, "{:?}", s.error_samples);
}

#[test]
fn an_unknown_module_and_a_broken_include_fail_alone() {
    let benign = corpus().join("benign");
    let dir = tempfile::tempdir().expect("tempdir");
    // foo.yar includes include/bar.yar, which is not copied: the include breaks.
    for (from, to) in [
        ("yara-x-testdata/unknown_module.yar", "unknown_module.yar"),
        ("yara-tests-data/foo.yar", "broken_include.yar"),
        ("yara-x-testdata/foo.yar", "foo.yar"),
        ("yara-x-testdata/duplicate_meta.yar", "duplicate_meta.yar"),
    ] {
        std::fs::copy(benign.join(from), dir.path().join(to)).expect("copy");
    }
    let (engine, errors) =
        Engine::load(&[dir.path().to_path_buf(), corpus().join("yara/reversinglabs")], Indicators::default());
    let mut failed: Vec<String> =
        errors.iter().map(|e| Path::new(&e.file).file_name().expect("name").to_string_lossy().into_owned()).collect();
    failed.sort();
    assert_eq!(failed, ["broken_include.yar", "unknown_module.yar"], "{errors:?}");
    assert_eq!(engine.loaded.len(), 274 + 2, "every other file loads");
    let mut s = engine.scanner();
    let hits = engine.scan_data(&mut s, Path::new("dummy.file"), b"foo", "").expect("scan");
    assert!(hits.iter().any(|d| d.rule == "foo"), "{hits:?}");
}

/// No false positives on the machine's own programs with either public rule set.
#[test]
fn the_public_rule_sets_find_nothing_in_usr_bin() {
    let yara = corpus().join("yara");
    for set in ["reversinglabs", "signature-base"] {
        let (engine, errors) = Engine::load(&[yara.join(set)], Indicators::default());
        assert!(errors.is_empty(), "{set}: {errors:?}");
        let s = scan(&engine, &[PathBuf::from("/usr/bin")], &ScanOptions::default(), &ScanProgress::default(), &|_| {});
        assert!(s.files > 100, "{set}: {s:?}");
        let found: Vec<String> = s.detections.iter().map(|d| format!("{} {}", d.rule, d.path)).collect();
        assert!(found.is_empty(), "{set} on /usr/bin: {found:?}");
    }
}
