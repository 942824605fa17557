//! The exact bytes git signs, cut out of raw tag and commit objects the way git cuts them
//! (`parse_signed_buffer` for tags, `parse_buffer_signed_by_header` for commits in git's
//! gpg-interface.c and commit.c), so a signature that `git tag -v` accepts is accepted here and
//! one it rejects is rejected.

use gix::ObjectId;
use gix::bstr::ByteSlice;

use crate::error::{Error, Result};

/// Which signing tool made a signature, told apart by its armour line as git does
/// (`get_format_by_sig`), never by configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `-----BEGIN PGP SIGNATURE-----` (also git's `-----BEGIN PGP MESSAGE-----`).
    OpenPgp,
    /// `-----BEGIN SSH SIGNATURE-----`, an OpenSSH `sshsig` blob.
    Ssh,
    /// `-----BEGIN SIGNED MESSAGE-----` (gpgsm); recognised so it is named, never trusted.
    X509,
}

impl Format {
    pub fn label(self) -> &'static str {
        match self {
            Format::OpenPgp => "OpenPGP",
            Format::Ssh => "SSH",
            Format::X509 => "X.509",
        }
    }

    /// The format whose armour starts `line`, as git's `get_format_by_sig`.
    pub fn of_armour(line: &[u8]) -> Option<Format> {
        const MARKERS: [(&[u8], Format); 4] = [
            (b"-----BEGIN PGP SIGNATURE-----", Format::OpenPgp),
            (b"-----BEGIN PGP MESSAGE-----", Format::OpenPgp),
            (b"-----BEGIN SIGNED MESSAGE-----", Format::X509),
            (b"-----BEGIN SSH SIGNATURE-----", Format::Ssh),
        ];
        MARKERS
            .iter()
            .find(|(marker, _)| line.starts_with(marker))
            .map(|(_, format)| *format)
    }
}

/// A signature and the bytes it signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPayload {
    pub format: Format,
    /// What the signer signed: the object without its signature.
    pub payload: Vec<u8>,
    /// The armoured signature block, as git hands it to gpg or ssh-keygen.
    pub signature: Vec<u8>,
}

/// Whether a raw object is a tag or a commit; both can carry a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Tag,
    Commit,
}

impl ObjectKind {
    /// The header naming who made the object, whose date git takes as the signing time
    /// (`parse_payload_metadata`).
    fn signer_header(self) -> &'static [u8] {
        match self {
            ObjectKind::Tag => b"tagger",
            ObjectKind::Commit => b"committer",
        }
    }
}

/// A tag or commit object as it matters for signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedObject {
    pub id: ObjectId,
    pub kind: ObjectKind,
    /// `None`: the object carries no signature.
    pub signed: Option<SignedPayload>,
    /// Seconds since the epoch from the tagger/committer line: the time git checks SSH key
    /// validity (`valid-after`, `valid-before`) against.
    pub signed_at: Option<i64>,
}

impl SignedObject {
    /// Splits raw tag object bytes (as `git cat-file tag` prints them).
    pub fn from_tag_bytes(id: ObjectId, raw: &[u8]) -> SignedObject {
        SignedObject {
            id,
            kind: ObjectKind::Tag,
            signed: split_tag(raw),
            signed_at: signer_time(raw, ObjectKind::Tag),
        }
    }

    /// Splits raw commit object bytes (as `git cat-file commit` prints them).
    pub fn from_commit_bytes(id: ObjectId, raw: &[u8]) -> SignedObject {
        SignedObject {
            id,
            kind: ObjectKind::Commit,
            signed: split_commit(raw),
            signed_at: signer_time(raw, ObjectKind::Commit),
        }
    }
}

/// Tag: the signature starts at the last line that opens with a known armour line and runs to
/// the end (git's `parse_signed_buffer`); everything before it is the payload.
pub fn split_tag(raw: &[u8]) -> Option<SignedPayload> {
    let mut start = None;
    let mut offset = 0;
    for line in raw.split_inclusive(|&b| b == b'\n') {
        if let Some(format) = Format::of_armour(line) {
            start = Some((offset, format));
        }
        offset += line.len();
    }
    let (at, format) = start?;
    Some(SignedPayload {
        format,
        payload: raw[..at].to_vec(),
        signature: raw[at..].to_vec(),
    })
}

/// Commit: the signature is the `gpgsig` header with its continuation lines (leading space
/// removed); the payload is the commit without that header. A `gpgsig-sha256` header (the
/// other hash's signature) is left out of the payload too, and a blank line ends the headers so
/// the message is copied untouched (git's `parse_buffer_signed_by_header`).
pub fn split_commit(raw: &[u8]) -> Option<SignedPayload> {
    const HEADER: &[u8] = b"gpgsig";
    let mut payload = Vec::with_capacity(raw.len());
    let mut signature = Vec::new();
    let (mut in_signature, mut saw_signature, mut other_signature) = (false, false, false);
    let mut rest = raw;
    while !rest.is_empty() {
        let end = rest.find_byte(b'\n').map_or(rest.len(), |i| i + 1);
        let line = &rest[..end];
        let sig = if in_signature && line.first() == Some(&b' ') {
            Some(&line[1..])
        } else if line.starts_with(HEADER) && line.get(HEADER.len()) == Some(&b' ') {
            other_signature = false;
            Some(&line[HEADER.len() + 1..])
        } else {
            if line.starts_with(HEADER) {
                other_signature = true;
            } else if other_signature && line.first() != Some(&b' ') {
                other_signature = false;
            }
            None
        };
        match sig {
            Some(sig) => {
                signature.extend_from_slice(sig);
                saw_signature = true;
                in_signature = true;
                rest = &rest[end..];
            }
            None if line.first() == Some(&b'\n') => {
                if !other_signature {
                    payload.extend_from_slice(rest);
                }
                break;
            }
            None => {
                if !other_signature {
                    payload.extend_from_slice(line);
                }
                in_signature = false;
                rest = &rest[end..];
            }
        }
    }
    if !saw_signature {
        return None;
    }
    let format = Format::of_armour(&signature).unwrap_or(Format::OpenPgp);
    Some(SignedPayload {
        format,
        payload,
        signature,
    })
}

/// The date of the tagger/committer header: `Name <email> SECONDS OFFSET`, read after the last
/// `>` like git's `split_ident_line`.
fn signer_time(raw: &[u8], kind: ObjectKind) -> Option<i64> {
    let header = kind.signer_header();
    let headers = raw.split(|&b| b == b'\n').take_while(|l| !l.is_empty());
    let line = headers
        .filter_map(|l| l.strip_prefix(header))
        .find_map(|l| l.strip_prefix(b" "))?;
    let after = &line[line.rfind_byte(b'>')? + 1..];
    let seconds = after.trim_start().split(|&b| b == b' ').next()?;
    seconds.to_str().ok()?.parse().ok()
}

/// What a tag ref points at, resolved once: verify this, then deploy exactly `commit`.
#[derive(Debug, Clone)]
pub struct TagRef {
    /// Without `refs/tags/`.
    pub name: String,
    pub target: TagTarget,
    /// The commit the tag finally points at; the one whose manifests may be deployed.
    pub commit: SignedObject,
}

#[derive(Debug, Clone)]
pub enum TagTarget {
    /// The ref names a commit directly: there is no tag object that could carry a signature.
    Lightweight,
    Annotated {
        /// The tag object the ref points at.
        object: SignedObject,
        /// The name recorded inside the tag object (`tag` header), which the signature covers.
        signed_name: String,
    },
}

/// Reads the tag `name` (with or without `refs/tags/`) and the commit it points at.
pub fn read_tag(repo: &gix::Repository, name: &str) -> Result<TagRef> {
    let short = name.strip_prefix("refs/tags/").unwrap_or(name).to_string();
    let full = format!("refs/tags/{short}");
    let reference = repo
        .try_find_reference(full.as_str())
        .map_err(|e| Error::context(format!("reading {full}"), e))?
        .ok_or_else(|| Error::invalid(format!("no tag named {short:?}")))?;
    let target = reference
        .target()
        .try_id()
        .map(|id| id.to_owned())
        .ok_or_else(|| Error::invalid(format!("tag {short:?} is a symbolic ref")))?;
    read_tag_at(repo, &short, target)
}

/// Reads the tag `name` whose ref points at `target` (an id the caller already resolved).
pub fn read_tag_at(repo: &gix::Repository, name: &str, target: ObjectId) -> Result<TagRef> {
    let object = find(repo, target, name)?;
    match object.kind {
        gix::object::Kind::Commit => Ok(TagRef {
            name: name.to_string(),
            target: TagTarget::Lightweight,
            commit: SignedObject::from_commit_bytes(target, &object.data),
        }),
        gix::object::Kind::Tag => {
            let tag = SignedObject::from_tag_bytes(target, &object.data);
            let signed_name = gix::objs::TagRef::from_bytes(&object.data, target.kind())
                .map(|t| t.name.to_str_lossy().into_owned())
                .map_err(|e| Error::context(format!("tag {name:?}: reading tag object"), e))?;
            let commit_id = object
                .peel_to_commit()
                .map_err(|e| {
                    Error::invalid(format!("tag {name:?} does not point at a commit"))
                        .with_source(e)
                })?
                .id;
            Ok(TagRef {
                name: name.to_string(),
                target: TagTarget::Annotated {
                    object: tag,
                    signed_name,
                },
                commit: read_commit(repo, commit_id)?,
            })
        }
        kind => Err(Error::invalid(format!(
            "tag {name:?} points at a {kind}, not a commit or tag object"
        ))),
    }
}

/// Reads commit `id` as git stores it.
pub fn read_commit(repo: &gix::Repository, id: ObjectId) -> Result<SignedObject> {
    let object = find(repo, id, &id.to_string())?;
    if object.kind != gix::object::Kind::Commit {
        return Err(Error::invalid(format!(
            "{id} is a {}, not a commit",
            object.kind
        )));
    }
    Ok(SignedObject::from_commit_bytes(id, &object.data))
}

/// Reads tag object `id` as git stores it.
pub fn read_tag_object(repo: &gix::Repository, id: ObjectId) -> Result<SignedObject> {
    let object = find(repo, id, &id.to_string())?;
    if object.kind != gix::object::Kind::Tag {
        return Err(Error::invalid(format!(
            "{id} is a {}, not a tag object",
            object.kind
        )));
    }
    Ok(SignedObject::from_tag_bytes(id, &object.data))
}

fn find<'r>(repo: &'r gix::Repository, id: ObjectId, what: &str) -> Result<gix::Object<'r>> {
    repo.find_object(id)
        .map_err(|e| Error::context(format!("reading {what} ({id})"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAG: &str = "object 876d5d3b33755884e8120fa2da83d655d380f401\n\
type commit\ntag t1\ntagger A <a@x> 1795848254 +0000\n\nmsg\n";
    const SSH: &str = "-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n-----END SSH SIGNATURE-----\n";
    const PGP: &str = "-----BEGIN PGP SIGNATURE-----\n\niQ\n-----END PGP SIGNATURE-----\n";

    #[test]
    fn tag_payload_is_everything_before_the_signature() {
        for (sig, format) in [(SSH, Format::Ssh), (PGP, Format::OpenPgp)] {
            let raw = format!("{TAG}{sig}");
            let split = split_tag(raw.as_bytes()).unwrap();
            assert_eq!(split.format, format);
            assert_eq!(split.payload, TAG.as_bytes());
            assert_eq!(split.signature, sig.as_bytes());
        }
        assert_eq!(split_tag(TAG.as_bytes()), None);
    }

    #[test]
    fn the_last_armour_line_starts_the_tag_signature() {
        // A message quoting a signature is payload; git verifies only the trailing block.
        let raw = format!("{TAG}{PGP}more text\n{SSH}");
        let split = split_tag(raw.as_bytes()).unwrap();
        assert_eq!(split.format, Format::Ssh);
        assert_eq!(split.payload, format!("{TAG}{PGP}more text\n").as_bytes());
        // An armour line not at the start of a line is not a signature.
        let raw = format!("{TAG} {SSH}");
        assert_eq!(split_tag(raw.as_bytes()), None);
    }

    #[test]
    fn tagger_and_committer_dates_are_the_signing_time() {
        let tag =
            SignedObject::from_tag_bytes(ObjectId::null(gix::hash::Kind::Sha1), TAG.as_bytes());
        assert_eq!(tag.signed_at, Some(1795848254));
        let commit = "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\
author A <a@x> 1 +0000\ncommitter Odd > Name <c@x> 1700000000 +0100\n\nmsg\n";
        let commit = SignedObject::from_commit_bytes(
            ObjectId::null(gix::hash::Kind::Sha1),
            commit.as_bytes(),
        );
        assert_eq!(commit.signed_at, Some(1700000000));
        assert_eq!(commit.signed, None);
    }

    #[test]
    fn commit_signature_header_and_continuations_are_cut_out() {
        let raw = "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\
author A <a@x> 1 +0000\n\
committer A <a@x> 1 +0000\n\
gpgsig -----BEGIN SSH SIGNATURE-----\n \
U1NIU0lH\n \n \
-----END SSH SIGNATURE-----\n\
mergetag object 1\n type commit\n\n\
msg\n gpgsig in the message stays\n";
        let split = split_commit(raw.as_bytes()).unwrap();
        assert_eq!(split.format, Format::Ssh);
        assert_eq!(
            split.signature,
            b"-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n\n-----END SSH SIGNATURE-----\n"
        );
        assert_eq!(
            split.payload.to_str().unwrap(),
            "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\
author A <a@x> 1 +0000\n\
committer A <a@x> 1 +0000\n\
mergetag object 1\n type commit\n\n\
msg\n gpgsig in the message stays\n"
        );
    }

    #[test]
    fn the_other_hash_signature_is_left_out_of_the_payload() {
        let raw = "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\
gpgsig-sha256 -----BEGIN PGP SIGNATURE-----\n x\n -----END PGP SIGNATURE-----\n\
gpgsig -----BEGIN PGP SIGNATURE-----\n y\n -----END PGP SIGNATURE-----\n\
author A <a@x> 1 +0000\n\nmsg\n";
        let split = split_commit(raw.as_bytes()).unwrap();
        assert_eq!(split.format, Format::OpenPgp);
        assert_eq!(
            split.signature,
            b"-----BEGIN PGP SIGNATURE-----\ny\n-----END PGP SIGNATURE-----\n"
        );
        assert_eq!(
            split.payload,
            b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor A <a@x> 1 +0000\n\nmsg\n"
        );
        // Only the other hash's signature: unsigned for a SHA-1 repository, as for git.
        let raw = "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\
gpgsig-sha256 -----BEGIN PGP SIGNATURE-----\n x\n\nmsg\n";
        assert_eq!(split_commit(raw.as_bytes()), None);
    }
}
