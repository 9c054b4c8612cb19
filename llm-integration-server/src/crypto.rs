//! Secrets at rest: the master key and sealing with XChaCha20-Poly1305.
//!
//! The master key (32 random bytes) comes from `LLM_INTEGRATION_MASTER_KEY`
//! (base64) or a key file kept beside, not inside, the database. A key
//! file is generated (mode 0600) only when the database is new; a database
//! that already holds sealed data refuses to start with a missing or wrong
//! key, and nothing is ever overwritten.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use llm_integration_core::seams::SealedSecret;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The environment variable that carries the master key (base64 of 32 bytes).
pub const MASTER_KEY_ENV: &str = "LLM_INTEGRATION_MASTER_KEY";

/// What sealed secrets are bound to, so one kind cannot be swapped for another.
pub mod purpose {
    /// A provider API key.
    pub const API_KEY: &[u8] = b"llm-integration/api-key/v1";
    /// The master key check stored in the database.
    pub const KEY_CHECK: &[u8] = b"llm-integration/key-check/v1";
    /// ChatGPT account tokens.
    pub const CHATGPT_TOKENS: &[u8] = b"llm-integration/chatgpt-tokens/v1";
}

const KEY_CHECK_PLAINTEXT: &[u8] = b"llm-integration master key check";

/// Why the master key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key material is malformed.
    #[error("{0}")]
    Malformed(String),
    /// The key file could not be read or written.
    #[error("{0}")]
    Io(String),
    /// The database holds data sealed with another key, or no key is available for it.
    #[error("{0}")]
    Mismatch(String),
}

/// A sealed secret could not be opened (wrong key or tampered data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a stored secret could not be decrypted with the master key")]
pub struct OpenError;

/// The master key. Zeroized on drop; never printed.
pub struct MasterKey {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([REDACTED])")
    }
}

/// Where the master key is taken from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// The environment variable's value (base64).
    Env(Zeroizing<String>),
    /// A key file (base64), generated when the database is new.
    File(PathBuf),
}

impl KeySource {
    /// The environment variable if set, else `file`.
    pub fn from_env_or(file: PathBuf) -> Self {
        match std::env::var(MASTER_KEY_ENV) {
            Ok(v) if !v.trim().is_empty() => KeySource::Env(Zeroizing::new(v)),
            _ => KeySource::File(file),
        }
    }

    /// Where the key comes from, for messages.
    pub fn describe(&self) -> String {
        match self {
            KeySource::Env(_) => format!("the {MASTER_KEY_ENV} environment variable"),
            KeySource::File(p) => format!("the key file {}", p.display()),
        }
    }
}

fn random<const N: usize>() -> Result<[u8; N], KeyError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf)
        .map_err(|e| KeyError::Io(format!("the system random generator failed: {e}")))?;
    Ok(buf)
}

impl MasterKey {
    fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() != 32 {
            return Err(KeyError::Malformed(format!(
                "the master key must be 32 bytes (base64-encoded), not {}; generate one with `head -c 32 /dev/urandom | base64`",
                bytes.len()
            )));
        }
        let cipher = XChaCha20Poly1305::new_from_slice(bytes)
            .map_err(|_| KeyError::Malformed("invalid master key".into()))?;
        Ok(MasterKey { cipher })
    }

    fn from_base64(text: &str, origin: &str) -> Result<Self, KeyError> {
        let bytes = Zeroizing::new(STANDARD.decode(text.trim()).map_err(|_| {
            KeyError::Malformed(format!(
                "{origin} is not valid base64; it must hold 32 random bytes in base64"
            ))
        })?);
        Self::from_bytes(&bytes)
    }

    /// A new random key.
    pub fn generate() -> Result<(Self, Zeroizing<String>), KeyError> {
        let bytes = Zeroizing::new(random::<32>()?);
        let text = Zeroizing::new(STANDARD.encode(bytes.as_slice()));
        Ok((Self::from_bytes(bytes.as_slice())?, text))
    }

    /// Loads the key from `source`. A missing key file is created (0600)
    /// only when `may_create` (the database is new); returns whether it was.
    pub fn load(source: &KeySource, may_create: bool) -> Result<(Self, bool), KeyError> {
        match source {
            KeySource::Env(value) => Ok((Self::from_base64(value, &source.describe())?, false)),
            KeySource::File(path) => match std::fs::read_to_string(path) {
                Ok(text) => {
                    let text = Zeroizing::new(text);
                    Ok((Self::from_base64(&text, &source.describe())?, false))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && may_create => {
                    let (key, text) = Self::generate()?;
                    write_private(path, text.as_bytes())?;
                    Ok((key, true))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(KeyError::Mismatch(format!(
                    "the database holds secrets sealed with a master key, but {} does not exist and {MASTER_KEY_ENV} is not set; \
restore the original key file (or set {MASTER_KEY_ENV}) and start again",
                    path.display()
                ))),
                Err(e) => Err(KeyError::Io(format!("cannot read the master key file {}: {e}", path.display()))),
            },
        }
    }

    /// Seals `plaintext` for `purpose`.
    pub fn seal(&self, plaintext: &[u8], purpose: &[u8]) -> Result<SealedSecret, KeyError> {
        let nonce = random::<24>()?;
        let ciphertext = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: purpose,
                },
            )
            .map_err(|_| KeyError::Malformed("encryption failed".into()))?;
        Ok(SealedSecret {
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    /// Opens a secret sealed for `purpose`.
    pub fn open(
        &self,
        sealed: &SealedSecret,
        purpose: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        if sealed.nonce.len() != 24 {
            return Err(OpenError);
        }
        self.cipher
            .decrypt(
                XNonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: purpose,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| OpenError)
    }

    /// The value stored in the database to recognise this key later.
    pub fn key_check(&self) -> Result<Vec<u8>, KeyError> {
        let sealed = self.seal(KEY_CHECK_PLAINTEXT, purpose::KEY_CHECK)?;
        let mut out = sealed.nonce;
        out.extend_from_slice(&sealed.ciphertext);
        Ok(out)
    }

    /// Whether `stored` (from [`MasterKey::key_check`]) was made with this key.
    pub fn matches_check(&self, stored: &[u8]) -> bool {
        if stored.len() < 24 {
            return false;
        }
        let sealed = SealedSecret {
            nonce: stored[..24].to_vec(),
            ciphertext: stored[24..].to_vec(),
        };
        matches!(self.open(&sealed, purpose::KEY_CHECK), Ok(p) if p.as_slice() == KEY_CHECK_PLAINTEXT)
    }
}

/// Writes a new file readable by its owner only. Never overwrites.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), KeyError> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt;
                builder.mode(0o700);
            }
            builder
                .create(dir)
                .map_err(|e| KeyError::Io(format!("cannot create {}: {e}", dir.display())))?;
        }
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| KeyError::Io(format!("cannot create {}: {e}", path.display())))?;
    file.write_all(contents)
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .map_err(|e| KeyError::Io(format!("cannot write {}: {e}", path.display())))
}

/// Where the master key is kept when no file is configured: the invoking
/// user's configuration directory (`$XDG_CONFIG_HOME/llm-integration/`,
/// else `~/.config/llm-integration/`), apart from the database and its
/// backups. An installation that already keeps `master.key` in its data
/// directory goes on using it (and is warned at start); without a home
/// directory, the data directory is the only place left.
pub fn default_key_file(data_dir: &Path) -> PathBuf {
    let beside = data_dir.join("master.key");
    if beside.exists() {
        return beside;
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|h| h.join(".config"))
        });
    match config {
        Some(dir) => dir.join("llm-integration").join("master.key"),
        None => beside,
    }
}

/// What is unsafe about where the master key is kept: beside the database
/// (a backup of the data directory would hold both), or readable by other
/// users. Empty when nothing is.
pub fn key_file_warnings(source: &KeySource, data_dir: &Path) -> Vec<String> {
    let KeySource::File(path) = source else {
        return Vec::new();
    };
    let mut warnings = Vec::new();
    let inside = |p: &Path| {
        let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
        canon(p).starts_with(canon(data_dir))
    };
    if inside(path) {
        warnings.push(format!(
            "the master key {} is inside the data directory {}: a copy of the directory holds both the secrets and their key; \
move it elsewhere (--master-key-file) or give it in LLM_INTEGRATION_MASTER_KEY",
            path.display(),
            data_dir.display()
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                warnings.push(format!(
                    "the master key {} can be read by other users (mode {:o}); run `chmod 600 {}`",
                    path.display(),
                    meta.permissions().mode() & 0o777,
                    path.display()
                ));
            }
        }
    }
    warnings
}

/// Makes `path` (and, for a database, its `-wal` and `-shm` files)
/// readable by its owner only.
pub fn restrict_to_owner(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            let p = PathBuf::from(p);
            if p.exists() {
                if let Err(e) = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
                {
                    tracing::warn!(path = %p.display(), error = %e, "cannot make the database file private");
                }
            }
        }
    }
}

/// A new access token (`lli_…`, 256 random bits) and its stored hash.
pub fn new_access_token() -> Result<(Zeroizing<String>, Vec<u8>), KeyError> {
    let bytes = Zeroizing::new(random::<32>()?);
    let token = Zeroizing::new(format!(
        "lli_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_slice())
    ));
    let hash = token_hash(&token);
    Ok((token, hash))
}

/// The stored form of an access token: SHA-256 (tokens are random, so no
/// slow hash is needed).
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_purpose_binding() {
        let (key, _) = MasterKey::generate().unwrap();
        let sealed = key.seal(b"sk-secret", purpose::API_KEY).unwrap();
        assert!(!sealed.ciphertext.windows(9).any(|w| w == b"sk-secret"));
        assert_eq!(
            key.open(&sealed, purpose::API_KEY).unwrap().as_slice(),
            b"sk-secret"
        );
        assert_eq!(key.open(&sealed, purpose::CHATGPT_TOKENS), Err(OpenError));
        let (other, _) = MasterKey::generate().unwrap();
        assert_eq!(other.open(&sealed, purpose::API_KEY), Err(OpenError));
        let check = key.key_check().unwrap();
        assert!(key.matches_check(&check));
        assert!(!other.matches_check(&check));
        assert!(!format!("{key:?}").contains(|c: char| c.is_ascii_digit()));
    }

    #[test]
    fn key_file_is_created_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/master.key");
        let source = KeySource::File(path.clone());
        assert!(matches!(
            MasterKey::load(&source, false),
            Err(KeyError::Mismatch(_))
        ));
        let (key, created) = MasterKey::load(&source, true).unwrap();
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let (again, created) = MasterKey::load(&source, true).unwrap();
        assert!(!created);
        let sealed = key.seal(b"x", purpose::API_KEY).unwrap();
        assert_eq!(
            again.open(&sealed, purpose::API_KEY).unwrap().as_slice(),
            b"x"
        );
        assert!(write_private(&path, b"other").is_err());
        let bad = KeySource::Env(Zeroizing::new("not base64!".into()));
        assert!(MasterKey::load(&bad, false)
            .unwrap_err()
            .to_string()
            .contains("base64"));
        let short = KeySource::Env(Zeroizing::new(STANDARD.encode([1u8; 16])));
        assert!(MasterKey::load(&short, false)
            .unwrap_err()
            .to_string()
            .contains("32 bytes"));
    }

    #[test]
    fn tokens() {
        let (token, hash) = new_access_token().unwrap();
        assert!(token.starts_with("lli_") && token.len() > 40);
        assert_eq!(token_hash(&token), hash);
    }
}
