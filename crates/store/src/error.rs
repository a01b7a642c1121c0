//! The store's error type.

use std::path::PathBuf;

/// Why a state-store operation failed. Every variant names the engine and the
/// operation, so a log line alone says where to look.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL's scheme is not one this crate can open. Only the scheme is
    /// kept, so a password in the URL never reaches a log.
    #[error(
        "unsupported state store URL scheme {scheme:?}: expected sqlite://PATH, sqlite::memory:, postgres://... or postgresql://..."
    )]
    UnsupportedUrl {
        /// The scheme that was given (text before the first ':').
        scheme: String,
    },
    /// The URL has a supported scheme but cannot be used as given.
    #[error("invalid {engine} URL: {reason}")]
    InvalidUrl {
        /// The engine the URL was meant for.
        engine: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The data directory for a SQLite file could not be created.
    #[error("{engine}: cannot create data directory {path}: {source}")]
    DataDir {
        /// The engine.
        engine: &'static str,
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Opening the database or connecting to the server failed.
    #[error("{engine}: cannot connect to {target}: {source}")]
    Connect {
        /// The engine.
        engine: &'static str,
        /// What was being opened (a path, or host/port/database without credentials).
        target: String,
        /// The driver error.
        #[source]
        source: sqlx::Error,
    },
    /// Applying the versioned migrations failed.
    #[error("{engine}: applying migrations failed: {source}")]
    Migrate {
        /// The engine.
        engine: &'static str,
        /// The migration error.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A write collided with an existing row that may not be replaced
    /// (for example a second audit record with the same id).
    #[error("{engine}: {op}: conflicts with an existing row: {source}")]
    Conflict {
        /// The engine.
        engine: &'static str,
        /// The operation that failed.
        op: String,
        /// The driver error.
        #[source]
        source: sqlx::Error,
    },
    /// A [`crate::Write::PutSnapshotIfVersion`] found a different stored
    /// version than the writer expected (another writer got there first); the
    /// whole batch was rolled back.
    #[error(
        "{engine}: {op}: snapshot {id:?} was changed by another writer: expected {}, found {}",
        describe_version(*.expected),
        describe_version(*.found)
    )]
    VersionConflict {
        /// The engine.
        engine: &'static str,
        /// The operation that failed.
        op: String,
        /// The snapshot id.
        id: String,
        /// The version the writer expected (`None`: no snapshot).
        expected: Option<u64>,
        /// The version stored when the write failed (`None`: no snapshot).
        found: Option<u64>,
    },
    /// A value cannot be stored (for example an id above the range of BIGINT).
    #[error("{engine}: {op}: {detail}")]
    InvalidInput {
        /// The engine.
        engine: &'static str,
        /// The operation that failed.
        op: String,
        /// What is wrong with the value.
        detail: String,
    },
    /// A stored row does not decode into the domain type.
    #[error("{engine}: stored {what} is invalid: {detail}")]
    Corrupt {
        /// The engine.
        engine: &'static str,
        /// Which record and column.
        what: String,
        /// What is wrong with it.
        detail: String,
    },
    /// Any other database failure.
    #[error("{engine}: {op} failed: {source}")]
    Database {
        /// The engine.
        engine: &'static str,
        /// The operation that failed.
        op: String,
        /// The driver error.
        #[source]
        source: sqlx::Error,
    },
}

impl StoreError {
    /// Classifies a driver error raised by `op`: unique-key violations become
    /// [`StoreError::Conflict`], everything else [`StoreError::Database`].
    pub(crate) fn db(engine: &'static str, op: impl Into<String>, source: sqlx::Error) -> Self {
        let unique = matches!(&source, sqlx::Error::Database(e) if e.is_unique_violation());
        if unique {
            StoreError::Conflict {
                engine,
                op: op.into(),
                source,
            }
        } else {
            StoreError::Database {
                engine,
                op: op.into(),
                source,
            }
        }
    }

    /// True for [`StoreError::Conflict`] and [`StoreError::VersionConflict`]:
    /// the batch lost against data already stored.
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            StoreError::Conflict { .. } | StoreError::VersionConflict { .. }
        )
    }
}

/// A snapshot version for [`StoreError::VersionConflict`]'s message.
fn describe_version(version: Option<u64>) -> String {
    match version {
        Some(v) => format!("version {v}"),
        None => "no snapshot".to_string(),
    }
}
