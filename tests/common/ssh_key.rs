//! A throw-away ed25519 key made with the real ssh-keygen, for the signing tests of both
//! tools (included by `#[path]`).

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct SshKey {
    pub private: PathBuf,
    /// `ssh-ed25519 AAAA... comment`
    pub public: String,
    /// `SHA256:...` as `ssh-keygen -l` prints it.
    pub fingerprint: String,
}

/// Makes key `name` (also its comment) in `dir`.
pub fn make(dir: &Path, name: &str) -> SshKey {
    let private = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&private)
        .output()
        .expect("ssh-keygen is needed for the signing tests (Debian package openssh-client)");
    assert!(
        out.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public_file = private.with_extension("pub");
    let public = std::fs::read_to_string(&public_file)
        .unwrap()
        .trim()
        .to_string();
    let listed = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&public_file)
        .output()
        .unwrap();
    let fingerprint = String::from_utf8_lossy(&listed.stdout)
        .split(' ')
        .nth(1)
        .unwrap()
        .to_string();
    SshKey {
        private,
        public,
        fingerprint,
    }
}
