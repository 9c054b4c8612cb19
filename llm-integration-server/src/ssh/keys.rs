//! The SSH door's keys: the server's host key (generated on first start,
//! kept in a file of its own, mode 0600) and users' public keys as the
//! command language registers them.

use std::path::Path;

use llm_integration_core::seams::SshKeyRecord;
use russh::keys::ssh_key::private::{Ed25519Keypair, KeypairData};
use russh::keys::{Algorithm, HashAlg, PrivateKey, PublicKey};

/// The host key at `path`, generated (Ed25519, written 0600) when the file
/// does not exist. Returns the key and whether it was generated now.
///
/// Errors name the file and the fix: unreadable, not an OpenSSH private
/// key, protected by a passphrase, or not Ed25519.
pub fn load_or_create_host_key(path: &Path) -> Result<(PrivateKey, bool), String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let key = match russh::keys::decode_secret_key(&text, None) {
                Ok(key) => key,
                Err(russh::keys::Error::KeyIsEncrypted) => {
                    return Err(format!(
                        "the SSH host key {} is protected by a passphrase; remove the passphrase (ssh-keygen -p -N '' -f {}) or remove the file to have a new one generated",
                        path.display(),
                        path.display()
                    ))
                }
                Err(e) => {
                    return Err(format!(
                        "the SSH host key {} is not an OpenSSH private key ({e}); remove it to have a new one generated, \
or give another file (ssh_host_key in the configuration file)",
                        path.display()
                    ))
                }
            };
            if key.algorithm() != Algorithm::Ed25519 {
                return Err(format!(
                    "the SSH host key {} is {}, not Ed25519; give an Ed25519 key (ssh-keygen -t ed25519) or remove the file to have one generated",
                    path.display(),
                    key.algorithm()
                ));
            }
            crate::crypto::restrict_to_owner(path);
            Ok((key, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = zeroize::Zeroizing::new([0u8; 32]);
            getrandom::fill(seed.as_mut()).map_err(|e| {
                format!("cannot generate the SSH host key: no system randomness ({e})")
            })?;
            let keypair = KeypairData::Ed25519(Ed25519Keypair::from_seed(&seed));
            let key = PrivateKey::new(keypair, "llm-integration host key")
                .map_err(|e| format!("cannot generate the SSH host key: {e}"))?;
            let text = key
                .to_openssh(russh::keys::ssh_key::LineEnding::LF)
                .map_err(|e| format!("cannot encode the SSH host key: {e}"))?;
            crate::crypto::write_private(path, text.as_bytes()).map_err(|e| e.to_string())?;
            Ok((key, true))
        }
        Err(e) => Err(format!(
            "cannot read the SSH host key {}: {e}",
            path.display()
        )),
    }
}

/// The fingerprint `ssh` shows for a key (`SHA256:…`).
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// A public key line (`ssh-ed25519 AAAA… comment`) as stored: parsed,
/// Ed25519 only, fingerprinted, its comment kept apart. The error says
/// what is wrong and how to get a key that works.
pub fn authorized_key(line: &str) -> Result<SshKeyRecord, String> {
    let key = PublicKey::from_openssh(line.trim()).map_err(|_| {
        "ssh-key add: that is not a valid public key line (its base64 or type does not decode); \
give the line of your .pub file, e.g. \"$(cat ~/.ssh/id_ed25519.pub)\""
            .to_owned()
    })?;
    if key.algorithm() != Algorithm::Ed25519 {
        return Err(format!(
            "ssh-key add: this server accepts ssh-ed25519 keys only, and this one is {}; \
make one with `ssh-keygen -t ed25519` and add its .pub line",
            key.algorithm()
        ));
    }
    let comment = key.comment().as_str_lossy().to_owned();
    if comment.chars().any(char::is_control) || comment.chars().count() > 200 {
        return Err(
            "ssh-key add: the key's comment is longer than 200 characters or holds control characters; shorten it"
                .to_owned(),
        );
    }
    let mut bare = key.clone();
    bare.set_comment("");
    let public_key = bare
        .to_openssh()
        .map_err(|e| format!("ssh-key add: cannot encode the key: {e}"))?
        .trim()
        .to_owned();
    Ok(SshKeyRecord {
        fingerprint: fingerprint(&key),
        public_key,
        comment,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAC39l57VUEyfVFcE9UCuAjat7IPjLzWpqm9opwtTp1X alice@laptop";

    #[test]
    fn a_public_key_line_is_stored_without_its_comment() {
        let record = authorized_key(KEY).unwrap();
        // What `ssh-keygen -l` prints for it.
        assert_eq!(
            record.fingerprint,
            "SHA256:DfSpoLwW/2hWfwo0b74OmUmLwcU6Z7QjBGDskPBdTzU"
        );
        assert_eq!(record.comment, "alice@laptop");
        assert!(record.public_key.starts_with("ssh-ed25519 AAAA"));
        assert!(!record.public_key.contains("alice"));
        // The same key with another comment is the same key.
        let again = authorized_key(&KEY.replace("alice@laptop", "other")).unwrap();
        assert_eq!(again.fingerprint, record.fingerprint);
    }

    #[test]
    fn broken_and_foreign_keys_are_refused_with_the_fix() {
        let err = authorized_key("ssh-ed25519 AAAAnotbase64!").unwrap_err();
        assert!(err.contains("not a valid public key line"), "{err}");
        let err = authorized_key("ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/y6v0mKV0U2w0WZ2YB/++Tpockg=").unwrap_err();
        assert!(err.contains("ssh-keygen -t ed25519"), "{err}");
    }

    #[test]
    fn the_host_key_is_generated_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ssh_host_ed25519_key");
        let (key, created) = load_or_create_host_key(&path).unwrap();
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let (again, created) = load_or_create_host_key(&path).unwrap();
        assert!(!created);
        assert_eq!(
            fingerprint(key.public_key()),
            fingerprint(again.public_key())
        );
        std::fs::write(&path, "garbage").unwrap();
        let err = load_or_create_host_key(&path).unwrap_err();
        assert!(
            err.contains("remove it to have a new one generated"),
            "{err}"
        );
    }
}
