//! The shared writer's notes (issue 17's verifications live there): appended to an object
//! under refs/notes/deploy by compare-and-swap, read back by the real `git notes`, pushed to a
//! bare remote with a lease on what it has.

use std::path::{Path, PathBuf};
use std::process::Command;

use shared::ErrorKind;
use shared::git::notes::{DEPLOY_NOTES_REF, append_note};
use shared::git::{Plan, Repo};

struct Fixture {
    tmp: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let f = Fixture {
            tmp: tempfile::tempdir().unwrap(),
        };
        f.git(&f.path("config"), &["init", "-q", "-b", "main", "."]);
        f.setup(&f.path("config"));
        f
    }

    fn path(&self, name: &str) -> PathBuf {
        let p = self.tmp.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// An identity in the repository's own config: gix (in this process) and git both read it.
    fn setup(&self, dir: &Path) {
        self.git(dir, &["config", "user.name", "Vera Verifier"]);
        self.git(dir, &["config", "user.email", "vera@example.com"]);
    }

    fn git(&self, dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .current_dir(dir)
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("HOME", self.tmp.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .trim_end()
            .to_string()
    }

    /// A commit and an annotated tag on it; returns the tag object.
    fn tag(&self, dir: &Path, name: &str) -> String {
        self.git(dir, &["commit", "-q", "--allow-empty", "-m", name]);
        self.git(dir, &["tag", "-a", "-m", name, name]);
        self.git(dir, &["rev-parse", name])
    }

    fn open(&self, dir: &Path) -> Repo {
        let mut repo = Repo::discover(dir).unwrap();
        // As git-deploy does: objects stay in memory until a plan executes.
        repo.inner.objects.enable_object_memory();
        repo
    }
}

fn id(hex: &str) -> gix::ObjectId {
    gix::ObjectId::from_hex(hex.as_bytes()).unwrap()
}

fn append(repo: &mut Repo, object: &str, text: &str, push: Option<&str>) -> shared::Result<()> {
    let mut plan = Plan::new("test: note", push.map(str::to_string));
    append_note(
        repo,
        &mut plan,
        DEPLOY_NOTES_REF,
        &[id(object)],
        text,
        "Notes added by the notes test",
    )?;
    plan.execute(repo)
}

#[test]
fn notes_append_and_git_reads_them() {
    let f = Fixture::new();
    let dir = f.path("config");
    let tag = f.tag(&dir, "deploy-1");
    let mut repo = f.open(&dir);
    assert_eq!(repo.note(DEPLOY_NOTES_REF, id(&tag)).unwrap(), None);
    append(
        &mut repo,
        &tag,
        "Verified-Env: staging\nVerified-Revision: 3",
        None,
    )
    .unwrap();
    append(
        &mut repo,
        &tag,
        "Verified-Env: staging\nVerified-Revision: 4",
        None,
    )
    .unwrap();
    let shown = f.git(&dir, &["notes", "--ref=deploy", "show", &tag]);
    assert_eq!(
        shown,
        "Verified-Env: staging\nVerified-Revision: 3\n\nVerified-Env: staging\nVerified-Revision: 4"
    );
    assert_eq!(
        repo.note(DEPLOY_NOTES_REF, id(&tag))
            .unwrap()
            .unwrap()
            .trim_end(),
        shown
    );
    // Each append is one notes commit on top of the last: nothing is replaced.
    assert_eq!(f.git(&dir, &["rev-list", "--count", DEPLOY_NOTES_REF]), "2");
    assert_eq!(
        f.git(&dir, &["log", "-1", "--format=%an %s", DEPLOY_NOTES_REF]),
        "Vera Verifier Notes added by the notes test"
    );
    f.git(&dir, &["fsck", "--strict", "--no-dangling"]);
}

#[test]
fn many_notes_keep_git_s_layout() {
    let f = Fixture::new();
    let dir = f.path("config");
    let mut objects = Vec::new();
    for i in 0..300 {
        f.git(
            &dir,
            &["commit", "-q", "--allow-empty", "-m", &format!("c{i}")],
        );
        objects.push(f.git(&dir, &["rev-parse", "HEAD"]));
    }
    let mut repo = f.open(&dir);
    for (i, o) in objects.iter().enumerate() {
        append(&mut repo, o, &format!("n{i}"), None).unwrap();
    }
    let listed = f.git(&dir, &["notes", "--ref=deploy", "list"]);
    assert_eq!(listed.lines().count(), 300);
    assert_eq!(
        f.git(&dir, &["notes", "--ref=deploy", "show", &objects[123]]),
        "n123"
    );
    f.git(&dir, &["fsck", "--strict", "--no-dangling"]);
}

#[test]
fn two_writers_from_one_state_cannot_both_win() {
    let f = Fixture::new();
    let dir = f.path("config");
    let tag = f.tag(&dir, "deploy-1");
    let mut a = f.open(&dir);
    let mut b = f.open(&dir);
    let mut plan_a = Plan::new("a", None);
    let mut plan_b = Plan::new("b", None);
    append_note(
        &a,
        &mut plan_a,
        DEPLOY_NOTES_REF,
        &[id(&tag)],
        "from a",
        "a",
    )
    .unwrap();
    append_note(
        &b,
        &mut plan_b,
        DEPLOY_NOTES_REF,
        &[id(&tag)],
        "from b",
        "b",
    )
    .unwrap();
    plan_a.execute(&mut a).unwrap();
    let lost = plan_b.execute(&mut b).unwrap_err();
    assert_eq!(lost.kind, ErrorKind::Race, "{lost}");
    assert!(lost.message.contains(DEPLOY_NOTES_REF), "{lost}");
    assert_eq!(
        f.git(&dir, &["notes", "--ref=deploy", "show", &tag]),
        "from a"
    );
    // Retried from the new state, nothing is lost.
    let mut b = f.open(&dir);
    append(&mut b, &tag, "from b", None).unwrap();
    assert_eq!(
        f.git(&dir, &["notes", "--ref=deploy", "show", &tag]),
        "from a\n\nfrom b"
    );
}

#[test]
fn pushed_notes_lease_on_what_the_remote_has() {
    let f = Fixture::new();
    let dir = f.path("config");
    let tag = f.tag(&dir, "deploy-1");
    let remote = f.path("remote.git");
    f.git(&remote, &["init", "-q", "--bare", "."]);
    f.git(&dir, &["remote", "add", "origin", remote.to_str().unwrap()]);
    f.git(&dir, &["push", "-q", "origin", "main", "deploy-1"]);

    // The remote has no notes ref yet: created with a lease that it is still absent.
    let mut repo = f.open(&dir);
    append(&mut repo, &tag, "first", Some("origin")).unwrap();
    assert_eq!(
        f.git(&remote, &["notes", "--ref=deploy", "show", &tag]),
        "first"
    );

    // Another clone adds a note and pushes it; this clone has not fetched it.
    let other = f.path("other");
    f.git(&other, &["clone", "-q", remote.to_str().unwrap(), "."]);
    f.setup(&other);
    f.git(
        &other,
        &[
            "fetch",
            "-q",
            "origin",
            "refs/notes/deploy:refs/notes/deploy",
        ],
    );
    let mut theirs = f.open(&other);
    append(&mut theirs, &tag, "second", Some("origin")).unwrap();
    let remote_notes = f.git(&remote, &["rev-parse", DEPLOY_NOTES_REF]);

    let before = f.git(&dir, &["rev-parse", DEPLOY_NOTES_REF]);
    let mut repo = f.open(&dir);
    let err = append(&mut repo, &tag, "third", Some("origin")).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Race, "{err}");
    assert!(
        err.message
            .contains("a commit this repository does not have"),
        "{err}"
    );
    assert_eq!(
        f.git(&dir, &["rev-parse", DEPLOY_NOTES_REF]),
        before,
        "nothing written here"
    );
    assert_eq!(
        f.git(&remote, &["rev-parse", DEPLOY_NOTES_REF]),
        remote_notes,
        "nor there"
    );

    // Fetched, it appends on top and the remote keeps every note.
    f.git(
        &dir,
        &[
            "fetch",
            "-q",
            "origin",
            "+refs/notes/deploy:refs/notes/deploy",
        ],
    );
    let mut repo = f.open(&dir);
    append(&mut repo, &tag, "third", Some("origin")).unwrap();
    assert_eq!(
        f.git(&remote, &["notes", "--ref=deploy", "show", &tag]),
        "first\n\nsecond\n\nthird"
    );
}
