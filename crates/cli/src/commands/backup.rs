//! `tradestack infra backup` and `infra restore`: one timestamped archive
//! of everything a deployment keeps.
//!
//! The archive (`tradestack-backup-<UTC time to the millisecond>.tar.gz`) holds:
//! - `state/state.db`: the SQLite state store, copied with `VACUUM INTO`, a
//!   consistent snapshot even while services write; or `state/postgres.sql`,
//!   `pg_dump --clean` of the store's schemas (and its migration table);
//! - `data/...`: every other file under `data_dir`: the exchange's command
//!   journal, the time-series store (write-ahead log, Parquet, manifest).
//!   Both are append-only with checksummed records, so a copy taken while
//!   they are written restores like a crash would: a torn last record is
//!   dropped, nothing before it;
//! - `manifest.json`: the engine, the time, and each file's size and SHA-256,
//!   checked on restore before anything is written.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tradestack_config::{Config, StateEngine};

/// The store's PostgreSQL schemas (see `crates/store/migrations/postgres`).
const PG_SCHEMAS: &[&str] = &[
    "exchange", "custody", "risk", "audit", "registry", "bus", "state",
];

/// What an archive holds.
#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    /// Archive format version.
    pub format: u32,
    /// When it was taken (RFC 3339, UTC).
    pub created_at: String,
    /// `sqlite` or `postgres`.
    pub state_engine: String,
    /// Every file, with its size and SHA-256.
    pub files: Vec<FileEntry>,
}

/// One file in the archive.
#[derive(Debug, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path inside the archive.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Hex SHA-256.
    pub sha256: String,
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every file under `dir`, relative, sorted.
fn files_under(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if !d.exists() {
            continue;
        }
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let p = e.path();
            if e.file_type()?.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(dir) {
                out.push(rel.to_path_buf());
            }
        }
    }
    out.sort();
    Ok(out)
}

fn is_sqlite_file(config: &Config, rel: &Path) -> bool {
    let db = config.sqlite_path();
    let abs = config.data_dir.join(rel);
    let name = db.file_name().map(|n| n.to_string_lossy().to_string());
    abs.parent() == db.parent()
        && name.is_some_and(|n| {
            let f = rel.file_name().map(|f| f.to_string_lossy().to_string());
            f.as_deref() == Some(n.as_str())
                || f.as_deref() == Some(&format!("{n}-wal"))
                || f.as_deref() == Some(&format!("{n}-shm"))
        })
}

/// Writes the archive into `out_dir`; returns its path.
pub async fn backup(config: &Config, out_dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let now = std::time::SystemTime::now();
    let stamp = humantime::format_rfc3339_millis(now).to_string();
    let name = format!(
        "tradestack-backup-{}.tar.gz",
        stamp.replace(['-', ':', '.'], "")
    );
    let staging = tempfile::tempdir_in(out_dir).context("staging directory")?;
    let mut entries: Vec<(String, PathBuf)> = Vec::new();

    let engine = match config.state {
        StateEngine::Sqlite => {
            let db = config.sqlite_path();
            if db.exists() {
                let copy = staging.path().join("state.db");
                vacuum_into(&db, &copy).await?;
                entries.push(("state/state.db".into(), copy));
            }
            "sqlite"
        }
        StateEngine::Postgres => {
            let dump = staging.path().join("postgres.sql");
            pg_dump(&config.postgres.url, &dump)?;
            entries.push(("state/postgres.sql".into(), dump));
            "postgres"
        }
    };
    for rel in files_under(&config.data_dir)? {
        if config.state == StateEngine::Sqlite && is_sqlite_file(config, &rel) {
            continue;
        }
        let abs = config.data_dir.join(&rel);
        if abs.starts_with(out_dir) {
            continue;
        }
        entries.push((
            format!("data/{}", rel.to_string_lossy().replace('\\', "/")),
            abs,
        ));
    }

    let mut manifest = Manifest {
        format: 1,
        created_at: stamp,
        state_engine: engine.into(),
        files: Vec::new(),
    };
    let path = out_dir.join(&name);
    let tmp = out_dir.join(format!(".{name}.partial"));
    {
        let file = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        for (inside, src) in &entries {
            // Read once: the size and checksum describe exactly what is stored.
            let bytes =
                std::fs::read(src).with_context(|| format!("cannot read {}", src.display()))?;
            manifest.files.push(FileEntry {
                path: inside.clone(),
                bytes: bytes.len() as u64,
                sha256: sha256(&bytes),
            });
            append(&mut tar, inside, &bytes)?;
        }
        let m = serde_json::to_vec_pretty(&manifest)?;
        append(&mut tar, "manifest.json", &m)?;
        let gz = tar.into_inner().context("finishing the archive")?;
        let file = gz.finish().context("finishing the archive")?;
        file.sync_all().context("syncing the archive")?;
    }
    if path.exists() {
        let _ = std::fs::remove_file(&tmp);
        bail!("{} already exists", path.display());
    }
    std::fs::rename(&tmp, &path).context("naming the archive")?;
    Ok(path)
}

fn append<W: Write>(tar: &mut tar::Builder<W>, path: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_size(bytes.len() as u64);
    h.set_mode(0o600);
    h.set_cksum();
    tar.append_data(&mut h, path, bytes)
        .with_context(|| format!("cannot add {path}"))
}

async fn vacuum_into(db: &Path, copy: &Path) -> anyhow::Result<()> {
    use sqlx::Connection;
    let url = format!("sqlite://{}?mode=ro", db.display());
    let mut conn = sqlx::SqliteConnection::connect(&url)
        .await
        .with_context(|| format!("cannot open {}", db.display()))?;
    sqlx::query("VACUUM INTO ?")
        .bind(copy.to_string_lossy().to_string())
        .execute(&mut conn)
        .await
        .with_context(|| format!("cannot snapshot {}", db.display()))?;
    conn.close().await.ok();
    Ok(())
}

fn run(cmd: &mut Command, what: &str) -> anyhow::Result<Vec<u8>> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {what} (is the PostgreSQL client installed?)"))?;
    if !out.status.success() {
        bail!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

/// `pg_dump --clean` of the store's schemas and its migration table, one snapshot each.
fn pg_dump(url: &str, out: &Path) -> anyhow::Result<()> {
    let mut cmd = Command::new("pg_dump");
    cmd.args(["--clean", "--if-exists", "--no-owner", "--dbname", url]);
    for s in PG_SCHEMAS {
        cmd.args(["--schema", s]);
    }
    let mut sql = run(&mut cmd, "pg_dump")?;
    let has_migrations = run(
        Command::new("psql").args([
            "--dbname",
            url,
            "-Atc",
            "select to_regclass('public._sqlx_migrations') is not null",
        ]),
        "psql",
    )?;
    if String::from_utf8_lossy(&has_migrations).trim() == "t" {
        sql.extend(run(
            Command::new("pg_dump").args([
                "--clean",
                "--if-exists",
                "--no-owner",
                "--dbname",
                url,
                "--table",
                "public._sqlx_migrations",
            ]),
            "pg_dump",
        )?);
    }
    std::fs::write(out, sql).with_context(|| format!("cannot write {}", out.display()))
}

/// Restores `archive` into the configured data directory (which must be
/// empty unless `force`) and state store.
pub async fn restore(config: &Config, archive: &Path, force: bool) -> anyhow::Result<Manifest> {
    let file = std::fs::File::open(archive)
        .with_context(|| format!("cannot open {}", archive.display()))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut contents: Vec<(String, Vec<u8>)> = Vec::new();
    for e in tar.entries().context("not a backup archive")? {
        let mut e = e.context("not a backup archive")?;
        let path = e.path()?.to_string_lossy().to_string();
        let mut bytes = Vec::new();
        e.read_to_end(&mut bytes)?;
        contents.push((path, bytes));
    }
    let manifest: Manifest = contents
        .iter()
        .find(|(p, _)| p == "manifest.json")
        .map(|(_, b)| serde_json::from_slice(b))
        .transpose()
        .context("manifest.json is unreadable")?
        .context("the archive has no manifest.json")?;
    // Everything is checked before anything is written.
    for f in &manifest.files {
        let (_, bytes) = contents
            .iter()
            .find(|(p, _)| *p == f.path)
            .with_context(|| format!("{} is missing from the archive", f.path))?;
        if bytes.len() as u64 != f.bytes || sha256(bytes) != f.sha256 {
            bail!(
                "{} does not match its checksum; the archive is damaged",
                f.path
            );
        }
        if f.path.split('/').any(|c| c == ".." || c.is_empty()) {
            bail!("{} is not a safe path", f.path);
        }
    }
    let engine = match config.state {
        StateEngine::Sqlite => "sqlite",
        StateEngine::Postgres => "postgres",
    };
    if manifest.state_engine != engine {
        bail!(
            "the archive holds a {} state store but this configuration uses {engine}",
            manifest.state_engine
        );
    }
    let dir = &config.data_dir;
    if !force && dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        bail!(
            "{} is not empty; restore into a fresh data directory, or pass --force to overwrite",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for f in &manifest.files {
        let (_, bytes) = contents
            .iter()
            .find(|(p, _)| *p == f.path)
            .expect("checked");
        let target = if let Some(rel) = f.path.strip_prefix("data/") {
            dir.join(rel)
        } else if f.path == "state/state.db" {
            config.sqlite_path()
        } else if f.path == "state/postgres.sql" {
            let mut child = Command::new("psql")
                .args([
                    "--dbname",
                    &config.postgres.url,
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-q",
                ])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .context("cannot run psql (is the PostgreSQL client installed?)")?;
            child
                .stdin
                .take()
                .context("psql stdin")?
                .write_all(bytes)
                .context("feeding psql")?;
            let out = child.wait_with_output()?;
            if !out.status.success() {
                bail!(
                    "psql failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            continue;
        } else {
            continue;
        };
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, bytes)
            .with_context(|| format!("cannot write {}", target.display()))?;
    }
    Ok(manifest)
}
