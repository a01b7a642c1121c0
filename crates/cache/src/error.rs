//! The cache's error type.

/// Why a cache operation failed. Messages name the engine and operation and
/// never contain credentials.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The URL's scheme is not one this crate can open (only the scheme is
    /// kept, so a password in the URL never reaches a log).
    #[error(
        "unsupported cache URL scheme {scheme:?}: expected memory://, redis://... or rediss://..."
    )]
    UnsupportedUrl {
        /// The scheme that was given (text before the first ':').
        scheme: String,
    },
    /// Connecting (or authenticating) to the server failed.
    #[error("{engine}: cannot connect to {target}: {message}")]
    Connect {
        /// The engine.
        engine: &'static str,
        /// The server, with any credentials masked.
        target: String,
        /// What went wrong.
        message: String,
    },
    /// The server refused the command under the connection's ACL user.
    #[error("{engine}: {op}: permission denied: {message}")]
    PermissionDenied {
        /// The engine.
        engine: &'static str,
        /// The operation.
        op: &'static str,
        /// The server's explanation (names the command or key, never a secret).
        message: String,
    },
    /// `incr` on a value that is not a decimal i64, or that would overflow.
    #[error("{engine}: incr {key:?}: value is not an integer or would overflow")]
    NotAnInteger {
        /// The engine.
        engine: &'static str,
        /// The key.
        key: String,
    },
    /// Any other backend failure.
    #[error("{engine}: {op} failed: {message}")]
    Backend {
        /// The engine.
        engine: &'static str,
        /// The operation.
        op: &'static str,
        /// What went wrong.
        message: String,
    },
}

impl CacheError {
    /// True for [`CacheError::PermissionDenied`].
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, CacheError::PermissionDenied { .. })
    }
}
