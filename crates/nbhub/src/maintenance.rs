//! Maintenance per system: the notices admins set (admin page, REST API: stored in the
//! database; `[hub] maintenance_file`: re-read when it changes), what the spawner sees of each
//! system ([`nbhub_spawner::Health`], [`Spawner::admit`]), and the one decision whether a
//! start may go ahead ([`check_start`]), which every way of starting a server passes through
//! (`Supervisor::start`) before anything is written or submitted. Servers already running on
//! a system in maintenance are left alone: only starts are refused.
//!
//! A hub without `[[systems]]` has one system without a name; notices, URLs and metric labels
//! call it [`DEFAULT_SYSTEM`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use nbhub_spawner::{FormContext, Health, SpawnError, Spawner, SystemInfo, ValidatedOptions};
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::db::{self, Db};

/// The name of the single system of a hub without `[[systems]]`.
pub const DEFAULT_SYSTEM: &str = "default";
/// The longest message a notice may have (characters).
pub const MAX_MESSAGE: usize = 1000;
/// How often `[hub] maintenance_file` is checked for a change.
pub const FILE_POLL: Duration = Duration::from_secs(2);

/// One maintenance notice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Notice {
    pub message: String,
    /// When it ends by itself (RFC 3339, UTC); `None`: when it is cleared.
    #[serde(serialize_with = "rfc3339_or_null")]
    pub until: Option<OffsetDateTime>,
    /// `"admin"` (page or API; `set_by` names who) or `"file"` (`[hub] maintenance_file`).
    pub source: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_by: Option<String>,
}

impl Notice {
    fn active(&self, now: OffsetDateTime) -> bool {
        self.until.is_none_or(|u| u > now)
    }

    /// `until 2026-12-08 12:00 UTC: message`, or `: message`.
    fn describe(&self) -> String {
        match self.until {
            Some(u) => format!(" until {}: {}", short_utc(u), self.message),
            None => format!(": {}", self.message),
        }
    }
}

fn rfc3339_or_null<S: serde::Serializer>(
    t: &Option<OffsetDateTime>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t.and_then(|t| t.format(&Rfc3339).ok()) {
        Some(text) => s.serialize_str(&text),
        None => s.serialize_none(),
    }
}

/// `2026-12-08 12:00 UTC`.
pub fn short_utc(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// A notice that cannot be set: which field, and why (the API answers 400 naming it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct BadNotice {
    pub field: &'static str,
    pub message: String,
}

/// Checks a notice as an admin gives it: a message (not empty, at most [`MAX_MESSAGE`]
/// characters) and an optional end in RFC 3339 that is still to come.
pub fn validate_notice(
    message: &str,
    until: Option<&str>,
    now: OffsetDateTime,
) -> Result<(String, Option<OffsetDateTime>), BadNotice> {
    let message = message.trim();
    if message.is_empty() {
        return Err(BadNotice {
            field: "message",
            message: "must not be empty".into(),
        });
    }
    if message.chars().count() > MAX_MESSAGE {
        return Err(BadNotice {
            field: "message",
            message: format!("must be at most {MAX_MESSAGE} characters"),
        });
    }
    let until = match until.map(str::trim).filter(|u| !u.is_empty()) {
        None => None,
        Some(text) => {
            let t = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| BadNotice {
                field: "until",
                message: format!("{text:?} is not a time in RFC 3339 such as 2026-12-08T12:00:00Z"),
            })?;
            if t <= now {
                return Err(BadNotice {
                    field: "until",
                    message: format!("{text} has passed; give a time still to come"),
                });
            }
            Some(t.to_offset(time::UtcOffset::UTC))
        }
    };
    Ok((message.to_owned(), until))
}

/// The notices of every system, from both sources; cheap to read.
#[derive(Default)]
pub struct Maintenance {
    admin: RwLock<BTreeMap<String, Notice>>,
    file: RwLock<BTreeMap<String, Notice>>,
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

impl Maintenance {
    /// Takes up the notices stored in the database (at start-up).
    pub async fn load(&self, db: &Db) -> Result<(), sqlx::Error> {
        let rows = db::maintenance::all(db).await?;
        let mut admin = write(&self.admin);
        admin.clear();
        for row in rows {
            let until = row
                .until
                .as_deref()
                .and_then(|u| OffsetDateTime::parse(u, &Rfc3339).ok());
            admin.insert(
                row.system,
                Notice {
                    message: row.message,
                    until,
                    source: "admin",
                    set_by: Some(row.set_by),
                },
            );
        }
        Ok(())
    }

    /// The notice in force on `system` now: an admin's first, else the file's.
    pub fn notice(&self, system: &str) -> Option<Notice> {
        let now = OffsetDateTime::now_utc();
        let pick = |m: &BTreeMap<String, Notice>| m.get(system).filter(|n| n.active(now)).cloned();
        pick(&read(&self.admin)).or_else(|| pick(&read(&self.file)))
    }

    /// Sets an admin's notice on `system` (stored first, so that a failed write changes
    /// nothing).
    pub async fn set(
        &self,
        db: &Db,
        system: &str,
        message: String,
        until: Option<OffsetDateTime>,
        by: &str,
    ) -> Result<Notice, sqlx::Error> {
        let row = db::maintenance::NoticeRow {
            system: system.to_owned(),
            message: message.clone(),
            until: until.and_then(|u| u.format(&Rfc3339).ok()),
            set_by: by.to_owned(),
            set_at: db::now_micros(),
        };
        db::maintenance::put(db, &row).await?;
        let notice = Notice {
            message,
            until,
            source: "admin",
            set_by: Some(by.to_owned()),
        };
        write(&self.admin).insert(system.to_owned(), notice.clone());
        tracing::info!(system, by, "maintenance notice set");
        Ok(notice)
    }

    /// Clears the admin's notice on `system` (the file's, if any, stays: edit the file).
    pub async fn clear(&self, db: &Db, system: &str) -> Result<(), sqlx::Error> {
        db::maintenance::delete(db, system).await?;
        write(&self.admin).remove(system);
        tracing::info!(system, "maintenance notice cleared");
        Ok(())
    }

    /// Replaces the file's notices.
    fn set_file(&self, notices: BTreeMap<String, Notice>) {
        *write(&self.file) = notices;
    }

    /// Watches `path` off the request path: reads it now, then again whenever its
    /// modification time or size changes. A file that does not exist means no notices; a file
    /// that does not parse keeps the last good notices, and the log says why.
    pub async fn watch_file(self: &Arc<Self>, path: PathBuf) -> tokio::task::JoinHandle<()> {
        let mut seen = None;
        self.reread(&path, &mut seen).await;
        // Weak: the watch ends with the hub that made it (tests run many hubs in a process).
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(FILE_POLL).await;
                let Some(this) = weak.upgrade() else { return };
                this.reread(&path, &mut seen).await;
            }
        })
    }

    /// Takes up `path` again if it changed since `seen`.
    async fn reread(&self, path: &Path, seen: &mut Option<Option<(SystemTime, u64)>>) {
        let now = stamp(path).await;
        if seen.as_ref() == Some(&now) {
            return;
        }
        *seen = Some(now);
        if now.is_none() {
            self.set_file(BTreeMap::new());
            return;
        }
        let file = path.display();
        match tokio::fs::read_to_string(path).await {
            Ok(text) => match parse_file(&text) {
                Ok(notices) => {
                    tracing::info!(%file, systems = notices.len(), "maintenance file read");
                    self.set_file(notices);
                }
                Err(why) => tracing::warn!(
                    %file,
                    "maintenance file not taken up, the last good notices stay: {why}"
                ),
            },
            Err(e) => tracing::warn!(
                %file,
                "maintenance file not readable, the last good notices stay: {e}"
            ),
        }
    }
}

/// When the file last changed, and its size (a rewrite within the same second still shows).
async fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = tokio::fs::metadata(path).await.ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Reads a maintenance file: one table per system, `message` (required) and `until`
/// (optional, RFC 3339). A notice whose `until` has passed is kept but not applied.
pub fn parse_file(text: &str) -> Result<BTreeMap<String, Notice>, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Entry {
        message: String,
        #[serde(default)]
        until: Option<toml::Value>,
    }
    let tables: BTreeMap<String, Entry> =
        toml::from_str(text).map_err(|e| e.message().to_owned())?;
    let mut out = BTreeMap::new();
    for (system, entry) in tables {
        let until = match entry.until {
            None => None,
            // `until = 2026-12-08T12:00:00Z` unquoted is a TOML date-time.
            Some(toml::Value::Datetime(d)) => Some(d.to_string()),
            Some(toml::Value::String(s)) => Some(s),
            Some(other) => {
                return Err(format!(
                    "[{system}] until: {other} is not a time in RFC 3339"
                ))
            }
        };
        let message = entry.message.trim();
        if message.is_empty() {
            return Err(format!("[{system}] message: must not be empty"));
        }
        let until = match until {
            None => None,
            Some(u) => Some(OffsetDateTime::parse(&u, &Rfc3339).map_err(|_| {
                format!("[{system}] until: {u:?} is not a time in RFC 3339 such as 2026-12-08T12:00:00Z")
            })?),
        };
        out.insert(
            system,
            Notice {
                message: message.chars().take(MAX_MESSAGE).collect(),
                until,
                source: "file",
                set_by: None,
            },
        );
    }
    Ok(out)
}

/// Every system of the spawner, in its order; one [`DEFAULT_SYSTEM`] for a spawner without
/// systems (its health is what `admit` finds at a start).
pub fn systems(spawner: &dyn Spawner) -> Vec<SystemInfo> {
    let list = spawner.systems();
    if !list.is_empty() {
        return list;
    }
    vec![SystemInfo {
        name: DEFAULT_SYSTEM.to_owned(),
        title: String::new(),
        description: String::new(),
        health: Health::Ok,
    }]
}

/// How pages and messages call a system: its title, else its name; "The cluster" for the
/// default one without a title.
pub fn display_name(info: &SystemInfo) -> String {
    match (info.title.as_str(), info.name.as_str()) {
        ("", DEFAULT_SYSTEM) => "The cluster".to_owned(),
        ("", name) => name.to_owned(),
        (title, _) => title.to_owned(),
    }
}

/// A system's state as the pages and the API show it.
#[derive(Clone, Debug, Serialize)]
pub struct SystemState {
    pub name: String,
    pub title: String,
    pub description: String,
    pub health: Health,
    /// The notice in force, if any.
    pub maintenance: Option<Notice>,
}

impl SystemState {
    /// Whether a start would be refused before the spawner is asked.
    pub fn closed(&self) -> Option<String> {
        let who = display_name(&SystemInfo {
            name: self.name.clone(),
            title: self.title.clone(),
            description: String::new(),
            health: Health::Ok,
        });
        if let Some(n) = &self.maintenance {
            return Some(format!("{who} is in maintenance{}", n.describe()));
        }
        match &self.health {
            Health::Ok => None,
            Health::Unreachable { reason } => Some(format!("{who} is not reachable: {reason}")),
            Health::Down { reason } => Some(format!("{who} cannot run servers now: {reason}")),
        }
    }
}

/// Every system with its health and notice.
pub fn states(maintenance: &Maintenance, spawner: &dyn Spawner) -> Vec<SystemState> {
    systems(spawner)
        .into_iter()
        .map(|s| SystemState {
            maintenance: maintenance.notice(&s.name),
            name: s.name,
            title: s.title,
            description: s.description,
            health: s.health,
        })
        .collect()
}

/// The system a start with these options goes to.
pub fn system_for(spawner: &dyn Spawner, options: &ValidatedOptions) -> String {
    if let Some(name) = options.get_str("system").filter(|s| !s.is_empty()) {
        return name.to_owned();
    }
    systems(spawner)
        .into_iter()
        .next()
        .map_or_else(|| DEFAULT_SYSTEM.to_owned(), |s| s.name)
}

/// Why a start was refused: the system, and the message for the user (names the system).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub system: String,
    pub message: String,
}

/// Whether a start with `options` may go ahead now: no notice in force on its system, the
/// system reachable and able to run servers, and the spawner admits it (Slurm: no maintenance
/// reservation reaches into the run time). Other systems' state plays no part.
pub async fn check_start(
    maintenance: &Maintenance,
    spawner: &dyn Spawner,
    ctx: &FormContext,
    options: &ValidatedOptions,
) -> Result<(), Refusal> {
    let system = system_for(spawner, options);
    let state = states(maintenance, spawner)
        .into_iter()
        .find(|s| s.name == system);
    if let Some(message) = state.as_ref().and_then(SystemState::closed) {
        return Err(Refusal { system, message });
    }
    match spawner.admit(ctx, options).await {
        Ok(()) => Ok(()),
        Err(SpawnError::Unavailable { message, .. }) => Err(Refusal { system, message }),
        Err(other) => Err(Refusal {
            system,
            message: other.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn notices_are_checked_field_by_field() {
        let now = datetime!(2026-12-07 12:00 UTC);
        let bad = |m: &str, u: Option<&str>| validate_notice(m, u, now).unwrap_err().field;
        assert_eq!(bad("  ", None), "message");
        assert_eq!(bad(&"x".repeat(MAX_MESSAGE + 1), None), "message");
        assert_eq!(bad("m", Some("tomorrow")), "until");
        assert_eq!(bad("m", Some("2026-12-07T11:00:00Z")), "until");
        let (m, u) =
            validate_notice(" Disk swap ", Some("2026-12-08T13:00:00+01:00"), now).unwrap();
        assert_eq!(m, "Disk swap");
        assert_eq!(u, Some(datetime!(2026-12-08 12:00 UTC)));
        assert_eq!(validate_notice("m", Some(""), now).unwrap().1, None);
    }

    #[test]
    fn the_file_has_one_table_per_system() {
        let notices = parse_file(
            "[juwels]\nmessage = \"New file system\"\nuntil = \"2026-12-08T12:00:00Z\"\n\
             [jureca]\nmessage = \"Cooling\"\nuntil = 2026-12-09T00:00:00Z\n[jusuf]\nmessage = \"Down\"\n",
        )
        .unwrap();
        assert_eq!(notices.len(), 3);
        assert_eq!(
            notices["juwels"].until,
            Some(datetime!(2026-12-08 12:00 UTC))
        );
        assert_eq!(
            notices["jureca"].until,
            Some(datetime!(2026-12-09 00:00 UTC))
        );
        assert_eq!(notices["jusuf"].until, None);
        assert_eq!(
            notices["juwels"].describe(),
            " until 2026-12-08 12:00 UTC: New file system"
        );
        assert!(parse_file("[a]\nmesage = \"x\"\n").is_err());
        assert!(parse_file("[a]\nmessage = \"\"\n")
            .unwrap_err()
            .contains("[a] message"));
        assert!(parse_file("[a]\nmessage = \"x\"\nuntil = \"soon\"\n")
            .unwrap_err()
            .contains("[a] until"));
        assert!(parse_file("").unwrap().is_empty());
    }

    #[test]
    fn an_expired_notice_is_no_notice() {
        let m = Maintenance::default();
        let past = OffsetDateTime::now_utc() - Duration::from_secs(60);
        let future = OffsetDateTime::now_utc() + Duration::from_secs(600);
        let notice = |until| Notice {
            message: "m".into(),
            until,
            source: "file",
            set_by: None,
        };
        m.set_file(BTreeMap::from([
            ("a".to_owned(), notice(Some(past))),
            ("b".to_owned(), notice(Some(future))),
            ("c".to_owned(), notice(None)),
        ]));
        assert_eq!(m.notice("a"), None);
        assert!(m.notice("b").is_some());
        assert!(m.notice("c").is_some());
        assert_eq!(m.notice("d"), None);
    }
}
