//! The release archives and the krew manifest that `krew/release` produces.
//!
//! krew itself cannot be fetched here (the Go module proxy refuses `sigs.k8s.io/krew`), so
//! [`validate`] applies the rules of krew's `validate-krew-manifest` and of the krew-index CI
//! to the manifest and to the archives it points at; the negative tests show that it catches
//! each kind of mistake. The release is packed from this run's debug binaries with fast gzip,
//! which keeps the whole target at a few seconds.

#[path = "common.rs"]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{git_deploy, root, run_ok, subcommands};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// `krew/release` run once per test process; tests only read what it wrote.
fn release() -> &'static Path {
    static OUT: OnceLock<PathBuf> = OnceLock::new();
    OUT.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("krew-release");
        pack_into(&out);
        out
    })
}

fn pack_into(out: &Path) {
    let git_deploy = git_deploy();
    let bins = git_deploy.parent().expect("bin dir");
    if out.exists() {
        fs::remove_dir_all(out).expect("clearing the previous release dir");
    }
    run_ok(
        Command::new(root().join("krew/release"))
            .arg("--bin-dir")
            .arg(bins)
            .args([
                "--gzip-level",
                "1",
                "--base-url",
                "https://example.invalid/dl/",
            ])
            .arg("--out")
            .arg(out),
    );
}

// Field names are krew's; unknown fields are errors because krew decodes manifests strictly.
#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Plugin {
    api_version: String,
    kind: String,
    metadata: Metadata,
    spec: Spec,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Metadata {
    name: String,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Spec {
    version: String,
    #[serde(default)]
    homepage: String,
    #[serde(default)]
    short_description: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    caveats: String,
    #[serde(default)]
    platforms: Vec<Platform>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Platform {
    selector: Option<Selector>,
    #[serde(default)]
    uri: String,
    #[serde(default)]
    sha256: String,
    #[serde(default)]
    bin: String,
    files: Option<Vec<FileOp>>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Selector {
    #[serde(default)]
    match_labels: BTreeMap<String, String>,
    #[serde(default)]
    match_expressions: Vec<Requirement>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Requirement {
    key: String,
    operator: String,
    #[serde(default)]
    values: Vec<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct FileOp {
    from: String,
    to: String,
}

impl Selector {
    fn matches(&self, labels: &BTreeMap<&str, &str>) -> bool {
        let labels_ok = self
            .match_labels
            .iter()
            .all(|(k, v)| labels.get(k.as_str()) == Some(&v.as_str()));
        let exprs_ok = self.match_expressions.iter().all(|r| {
            let value = labels.get(r.key.as_str());
            match r.operator.as_str() {
                "In" => value.is_some_and(|v| r.values.iter().any(|x| x == v)),
                "NotIn" => value.is_none_or(|v| r.values.iter().all(|x| x != v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        });
        labels_ok && exprs_ok
    }
}

fn is_semver_with_v(version: &str) -> bool {
    let Some(rest) = version.strip_prefix('v') else {
        return false;
    };
    let (rest, build) = rest.split_once('+').unwrap_or((rest, ""));
    let (core, pre) = rest.split_once('-').unwrap_or((rest, ""));
    let ident_ok = |s: &str| {
        s.split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    };
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_digit())
                && (p.len() == 1 || !p.starts_with('0'))
        })
        && (pre.is_empty() && !rest.ends_with('-') || ident_ok(pre))
        && (build.is_empty() && !version.ends_with('+') || ident_ok(build))
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Entries of a .tar.gz, as plain relative paths (directories end in `/`).
fn archive_entries(archive: &Path) -> Vec<String> {
    let out = run_ok(Command::new("tar").arg("-tzf").arg(archive));
    String::from_utf8(out.stdout)
        .expect("utf-8 entry names")
        .lines()
        .map(|l| l.trim_start_matches("./").to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Glob match of one path segment, `*` and `?` only (all krew manifests in practice use).
fn glob_segment(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob_segment(&pattern[1..], name)
                || (!name.is_empty() && glob_segment(pattern, &name[1..]))
        }
        (Some(b'?'), Some(_)) => glob_segment(&pattern[1..], &name[1..]),
        (Some(p), Some(n)) if p == n => glob_segment(&pattern[1..], &name[1..]),
        _ => false,
    }
}

fn glob_path(pattern: &str, path: &str) -> bool {
    let p: Vec<&str> = pattern.trim_start_matches("./").split('/').collect();
    let n: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    p.len() == n.len()
        && p.iter()
            .zip(&n)
            .all(|(p, n)| glob_segment(p.as_bytes(), n.as_bytes()))
}

/// What krew leaves in the plugin's install directory: each `from` match moved into `to`.
/// Without `files`, krew installs everything (`from: "*"`, `to: "."`).
fn installed_files(entries: &[String], files: Option<&[FileOp]>) -> BTreeSet<String> {
    let default = [FileOp {
        from: "*".into(),
        to: ".".into(),
    }];
    let ops = files.unwrap_or(&default);
    let mut installed = BTreeSet::new();
    for op in ops {
        for entry in entries {
            let top = entry.trim_end_matches('/');
            if !glob_path(&op.from, top) {
                continue;
            }
            let base = top.rsplit('/').next().unwrap_or(top);
            let to = op.to.trim_start_matches("./").trim_end_matches('/');
            let dest = if to.is_empty() || to == "." {
                base.to_string()
            } else {
                format!("{to}/{base}")
            };
            // A matched directory brings its whole subtree along.
            for e in entries {
                if let Some(rest) = e.strip_prefix(&format!("{top}/")) {
                    installed.insert(format!("{dest}/{rest}"));
                }
            }
            installed.insert(dest);
        }
    }
    installed
}

/// Every problem krew's manifest validation and the krew-index CI would report, or none.
fn validate(manifest: &Path, archives: &Path) -> Vec<String> {
    let mut errors = Vec::new();
    let text = match fs::read_to_string(manifest) {
        Ok(t) => t,
        Err(e) => return vec![format!("cannot read {}: {e}", manifest.display())],
    };
    let plugin: Plugin = match serde_saphyr::from_str(&text) {
        Ok(p) => p,
        Err(e) => return vec![format!("not a krew Plugin manifest: {e}")],
    };
    if plugin.api_version != "krew.googlecontainertools.github.com/v1alpha2" {
        errors.push(format!("apiVersion is {:?}", plugin.api_version));
    }
    if plugin.kind != "Plugin" {
        errors.push(format!("kind is {:?}, not Plugin", plugin.kind));
    }
    let stem = manifest.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if plugin.metadata.name != stem {
        errors.push(format!(
            "metadata.name {:?} does not match the file name {stem:?}",
            plugin.metadata.name
        ));
    }
    let name_ok = !plugin.metadata.name.is_empty()
        && plugin
            .metadata
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !name_ok {
        errors.push(format!(
            "metadata.name {:?} is not a lowercase plugin name",
            plugin.metadata.name
        ));
    }
    let spec = &plugin.spec;
    if !is_semver_with_v(&spec.version) {
        errors.push(format!(
            "spec.version {:?} is not semver with a leading v",
            spec.version
        ));
    }
    let short = spec.short_description.trim_end_matches('\n');
    if short.trim().is_empty() || short.contains('\n') {
        errors.push("spec.shortDescription must be one non-empty line".into());
    }
    if spec.description.trim().is_empty() {
        errors.push("spec.description is empty".into());
    }
    if spec.homepage.is_empty() {
        errors.push("spec.homepage is empty".into());
    }
    if spec.platforms.is_empty() {
        errors.push("spec.platforms is empty".into());
    }

    for (i, p) in spec.platforms.iter().enumerate() {
        let at = format!("platforms[{i}]");
        let selector = p.selector.as_ref();
        match selector {
            None => errors.push(format!("{at}: no selector")),
            Some(s) if s.match_labels.is_empty() && s.match_expressions.is_empty() => {
                errors.push(format!("{at}: empty selector"));
            }
            Some(s) => {
                let keys = s
                    .match_labels
                    .keys()
                    .chain(s.match_expressions.iter().map(|r| &r.key));
                for key in keys {
                    if key != "os" && key != "arch" {
                        errors.push(format!("{at}: selector label {key:?} is not os or arch"));
                    }
                }
            }
        }
        if p.bin.is_empty() {
            errors.push(format!("{at}: bin is empty"));
        }
        if let Some(files) = &p.files {
            for f in files {
                if f.from.is_empty() || f.to.is_empty() {
                    errors.push(format!("{at}: a files entry has an empty from or to"));
                }
            }
        }
        if !(p.uri.ends_with(".tar.gz") || p.uri.ends_with(".zip")) {
            errors.push(format!("{at}: uri {:?} is not a .tar.gz or .zip", p.uri));
        }
        if !is_sha256_hex(&p.sha256) {
            errors.push(format!(
                "{at}: sha256 {:?} is not 64 lowercase hex digits",
                p.sha256
            ));
        }
        let file_name = p.uri.rsplit('/').next().unwrap_or_default();
        let archive = archives.join(file_name);
        let Ok(bytes) = fs::read(&archive) else {
            errors.push(format!("{at}: archive {} not found", archive.display()));
            continue;
        };
        let actual = format!("{:x}", Sha256::digest(&bytes));
        if actual != p.sha256 {
            errors.push(format!(
                "{at}: sha256 {} does not match {file_name} ({actual})",
                p.sha256
            ));
        }
        if !p.uri.ends_with(".tar.gz") {
            continue;
        }
        let installed = installed_files(&archive_entries(&archive), p.files.as_deref());
        let bin = p.bin.trim_start_matches("./");
        if !installed.contains(bin) {
            errors.push(format!(
                "{at}: bin {bin:?} is not among the installed files {installed:?}"
            ));
        }
        let has_license = installed.iter().any(|f| {
            let base = f.rsplit('/').next().unwrap_or(f).to_ascii_lowercase();
            base.starts_with("license") || base.starts_with("copying")
        });
        if !has_license {
            errors.push(format!(
                "{at}: no license file among the installed files {installed:?}"
            ));
        }
    }

    // krew refuses a manifest in which one os/arch pair is matched by two platforms.
    for os in ["linux", "darwin", "windows", "freebsd"] {
        for arch in ["amd64", "arm64", "386", "arm", "ppc64le", "s390x"] {
            let labels = BTreeMap::from([("os", os), ("arch", arch)]);
            let n = spec
                .platforms
                .iter()
                .filter(|p| p.selector.as_ref().is_some_and(|s| s.matches(&labels)))
                .count();
            if n > 1 {
                errors.push(format!("{os}/{arch} is matched by {n} platforms"));
            }
        }
    }
    errors
}

fn host_platform() -> (&'static str, &'static str) {
    let os = match std::env::consts::OS {
        "macos" => "darwin",
        other => other,
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    (os, arch)
}

/// The release's manifest with `edit` applied, written as `<dir>/<file_name>`; the archives
/// stay where the release put them.
fn edited_manifest(file_name: &str, edit: impl FnOnce(String) -> String) -> Vec<String> {
    let text = fs::read_to_string(release().join("gitops.yaml")).expect("manifest");
    let edited = edit(text);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(file_name);
    fs::write(&path, edited).expect("write manifest");
    validate(&path, release())
}

fn assert_caught(errors: &[String], needle: &str) {
    assert!(
        errors.iter().any(|e| e.contains(needle)),
        "expected an error containing {needle:?}, got {errors:?}"
    );
}

#[test]
fn release_manifest_passes_krew_validation() {
    let out = release();
    let errors = validate(&out.join("gitops.yaml"), out);
    assert!(errors.is_empty(), "gitops.yaml is invalid: {errors:#?}");

    let text = fs::read_to_string(out.join("gitops.yaml")).unwrap();
    let plugin: Plugin = serde_saphyr::from_str(&text).unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(plugin.spec.version, format!("v{version}"));
    assert!(plugin.spec.caveats.contains("kubectl gitops sync"));
    let (os, arch) = host_platform();
    let name = format!("kubectl-gitops_{version}_{os}_{arch}.tar.gz");
    let host = plugin
        .spec
        .platforms
        .iter()
        .find(|p| p.uri.ends_with(&name))
        .unwrap_or_else(|| panic!("no platform entry for {name}: {:?}", plugin.spec.platforms));
    assert_eq!(host.uri, format!("https://example.invalid/dl/{name}"));
    let labels = BTreeMap::from([("os", os), ("arch", arch)]);
    assert!(host.selector.as_ref().unwrap().matches(&labels));
    assert!(
        !text.contains('@'),
        "an unfilled placeholder is left:\n{text}"
    );

    let sums = fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    assert!(sums.contains(&format!("{}  {name}", host.sha256)), "{sums}");
}

#[test]
fn release_is_reproducible() {
    let first = release();
    let again = Path::new(env!("CARGO_TARGET_TMPDIR")).join("krew-release-again");
    pack_into(&again);
    for file in ["gitops.yaml", "SHA256SUMS"] {
        assert_eq!(
            fs::read_to_string(first.join(file)).unwrap(),
            fs::read_to_string(again.join(file)).unwrap(),
            "{file} differs between two runs of krew/release"
        );
    }
    let leftovers: Vec<_> = fs::read_dir(&again)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "staging left behind: {leftovers:?}");
    fs::remove_dir_all(&again).unwrap();
}

#[test]
fn validation_catches_a_tampered_sha256() {
    let errors = edited_manifest("gitops.yaml", |t| {
        let at = t.find("sha256: ").expect("a sha256") + "sha256: ".len();
        let mut t = t.into_bytes();
        t[at] = if t[at] == b'0' { b'1' } else { b'0' };
        String::from_utf8(t).unwrap()
    });
    assert_caught(&errors, "does not match");
}

#[test]
fn validation_catches_an_uppercase_sha256() {
    let errors = edited_manifest("gitops.yaml", |t| {
        let at = t.find("sha256: ").unwrap() + "sha256: ".len();
        let (head, tail) = t.split_at(at);
        format!("{head}{}{}", tail[..64].to_ascii_uppercase(), &tail[64..])
    });
    assert_caught(&errors, "not 64 lowercase hex digits");
}

#[test]
fn validation_catches_a_duplicated_platform() {
    let errors = edited_manifest("gitops.yaml", |t| {
        let first = t.find("  - selector:").expect("a platform");
        let entry = t[first..].to_string();
        format!("{t}{entry}")
    });
    let (os, arch) = host_platform();
    assert_caught(&errors, &format!("{os}/{arch} is matched by 2 platforms"));
}

#[test]
fn validation_catches_bad_versions() {
    for bad in ["0.1.0", "v0.1", "v01.2.3", "vlatest", "v1.2.3-"] {
        let errors = edited_manifest("gitops.yaml", |t| {
            let version = format!("version: v{}", env!("CARGO_PKG_VERSION"));
            t.replacen(&version, &format!("version: {bad}"), 1)
        });
        assert_caught(&errors, "is not semver with a leading v");
    }
    assert!(is_semver_with_v("v1.2.3-rc.1+build.5"));
}

#[test]
fn validation_catches_a_name_that_differs_from_the_file() {
    let errors = edited_manifest("gitops.yaml", |t| {
        t.replace("name: gitops", "name: git-ops")
    });
    assert_caught(&errors, "does not match the file name");
    let errors = edited_manifest("kubectl-gitops.yaml", |t| t);
    assert_caught(&errors, "does not match the file name");
}

#[test]
fn validation_catches_a_multiline_short_description() {
    let errors = edited_manifest("gitops.yaml", |t| {
        t.replacen(
            "  shortDescription: ",
            "  shortDescription: |\n    first line\n    ",
            1,
        )
    });
    assert_caught(&errors, "shortDescription must be one non-empty line");
}

#[test]
fn validation_catches_other_selector_labels_and_bad_uris() {
    let errors = edited_manifest("gitops.yaml", |t| {
        t.replacen("        os: ", "        distro: debian\n        os: ", 1)
    });
    assert_caught(&errors, "selector label \"distro\" is not os or arch");
    let errors = edited_manifest("gitops.yaml", |t| t.replacen(".tar.gz\n", ".tgz\n", 1));
    assert_caught(&errors, "is not a .tar.gz or .zip");
}

#[test]
fn validation_catches_a_missing_bin_or_license() {
    let errors = edited_manifest("gitops.yaml", |t| {
        t.replacen("bin: kubectl-gitops", "bin: kubectl-gitopz", 1)
    });
    assert_caught(
        &errors,
        "bin \"kubectl-gitopz\" is not among the installed files",
    );
    let errors = edited_manifest("gitops.yaml", |t| {
        t.replacen("    - from: LICENSE\n      to: .\n", "", 1)
    });
    assert_caught(&errors, "no license file");
}

#[test]
fn kubectl_runs_the_plugin_from_the_archive() {
    let version = env!("CARGO_PKG_VERSION");
    let (os, arch) = host_platform();
    let archive = release().join(format!("kubectl-gitops_{version}_{os}_{arch}.tar.gz"));
    let dir = tempfile::tempdir().unwrap();
    run_ok(
        Command::new("tar")
            .arg("-xzf")
            .arg(&archive)
            .arg("-C")
            .arg(dir.path()),
    );
    let path = std::env::join_paths(std::iter::once(dir.path().to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let out = run_ok(
        Command::new("kubectl")
            .args(["gitops", "--help"])
            .env("PATH", path),
    );
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("Usage: kubectl gitops"), "{help}");
}

#[test]
fn git_deploy_archive_has_man_pages_and_completions_for_every_subcommand() {
    let version = env!("CARGO_PKG_VERSION");
    let (os, arch) = host_platform();
    let archive = release().join(format!("git-deploy_{version}_{os}_{arch}.tar.gz"));
    let dir = tempfile::tempdir().unwrap();
    run_ok(
        Command::new("tar")
            .arg("-xzf")
            .arg(&archive)
            .arg("-C")
            .arg(dir.path()),
    );
    let d = dir.path();
    for f in [
        "git-deploy",
        "LICENSE",
        "install.sh",
        "man/man1/git-deploy.1",
    ] {
        assert!(
            d.join(f).is_file(),
            "{f} is missing from {}",
            archive.display()
        );
    }

    let help = run_ok(Command::new(git_deploy()).arg("--help")).stdout;
    let subs = subcommands(&String::from_utf8_lossy(&help));
    assert!(subs.len() >= 10, "too few subcommands parsed: {subs:?}");
    let main_page = fs::read_to_string(d.join("man/man1/git-deploy.1")).unwrap();
    let completions = [
        "completions/git-deploy.bash",
        "completions/_git-deploy",
        "completions/git-deploy.fish",
    ]
    .map(|f| (f, fs::read_to_string(d.join(f)).unwrap()));
    for sub in &subs {
        let page = d.join(format!("man/man1/git-deploy-{sub}.1"));
        let text = fs::read_to_string(&page).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
        assert!(text.contains(".TH"), "{} is not a man page", page.display());
        assert!(
            main_page.contains(sub.as_str()),
            "git-deploy.1 does not mention {sub}"
        );
        for (file, text) in &completions {
            assert!(text.contains(sub.as_str()), "{file} does not mention {sub}");
        }
    }

    // The archive's install.sh puts everything where man and the shells look.
    let prefix = tempfile::tempdir().unwrap();
    run_ok(
        Command::new(d.join("install.sh"))
            .arg("--prefix")
            .arg(prefix.path()),
    );
    for f in [
        "bin/git-deploy",
        "share/man/man1/git-deploy.1",
        "share/man/man1/git-deploy-promote.1",
        "share/bash-completion/completions/git-deploy",
        "share/zsh/site-functions/_git-deploy",
        "share/fish/vendor_completions.d/git-deploy.fish",
    ] {
        assert!(
            prefix.path().join(f).is_file(),
            "install.sh did not install {f}"
        );
    }
}

#[test]
fn install_script_adds_man_pages_and_completions_to_a_cargo_install() {
    let prefix = tempfile::tempdir().unwrap();
    let bins = git_deploy().parent().unwrap().to_path_buf();
    let path = std::env::join_paths(std::iter::once(bins).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    run_ok(
        Command::new(root().join("krew/install.sh"))
            .args(["--no-binary", "--prefix"])
            .arg(prefix.path())
            .env("PATH", path),
    );
    for f in [
        "share/man/man1/git-deploy.1",
        "share/man/man1/git-deploy-rollback.1",
        "share/bash-completion/completions/git-deploy",
        "share/zsh/site-functions/_git-deploy",
        "share/fish/vendor_completions.d/git-deploy.fish",
    ] {
        assert!(
            prefix.path().join(f).is_file(),
            "install.sh --no-binary did not install {f}"
        );
    }
    assert!(
        !prefix.path().join("bin").exists(),
        "--no-binary installed a binary"
    );
}
