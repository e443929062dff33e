//! Announcements (docs/usage.md, "Announcements"): what admins tell every user — a text, a
//! level (`info`, `warning`, `danger`), optionally an end time and a system. Set on the admin
//! page or through the REST API, stored in the database and kept in memory, so that every hub
//! page shows them without a query; an announcement past its end is no longer shown anywhere
//! (it is filtered when read, and its row deleted when the next one is set). They are also
//! served at `/services/announcement/latest` in jupyterhub-announcement's JSON shape, for the
//! JupyterLab extensions sites use with it ([`Announcements::latest_json`]).

use std::sync::RwLock;

use serde::Serialize;
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::db::{self, announcements::AnnouncementRow, Db};
use crate::maintenance::{validate_notice, BadNotice};

/// How bad the news is; the pages' alert colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Info,
    Warning,
    Danger,
}

impl Level {
    pub const NAMES: &'static str = "info, warning or danger";

    pub fn parse(word: &str) -> Option<Level> {
        match word {
            "info" => Some(Level::Info),
            "warning" => Some(Level::Warning),
            "danger" => Some(Level::Danger),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Danger => "danger",
        }
    }
}

/// One announcement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    pub id: i64,
    pub message: String,
    pub level: Level,
    /// `None`: for everyone; else one system's name.
    pub system: Option<String>,
    /// When it ends by itself (microseconds); `None`: when deleted.
    pub until: Option<i64>,
    pub set_by: String,
    pub created: i64,
}

impl Announcement {
    fn of(row: AnnouncementRow) -> Announcement {
        Announcement {
            id: row.id,
            message: row.message,
            level: Level::parse(&row.level).unwrap_or(Level::Info),
            system: Some(row.system).filter(|s| !s.is_empty()),
            until: row.ends,
            set_by: row.set_by,
            created: row.created,
        }
    }

    fn active(&self, now: i64) -> bool {
        self.until.is_none_or(|u| u > now)
    }

    /// The REST model.
    pub fn model(&self) -> Value {
        json!({
            "id": self.id,
            "message": self.message,
            "level": self.level,
            "system": self.system,
            "until": self.until.map(db::format_timestamp),
            "set_by": self.set_by,
            "created": db::format_timestamp(self.created),
        })
    }
}

/// An announcement as an admin gives it, checked ([`validate`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAnnouncement {
    pub message: String,
    pub level: Level,
    pub system: Option<String>,
    pub until: Option<i64>,
}

/// Checks an announcement as an admin gives it: the message and end time as a maintenance
/// notice's (not empty, at most `maintenance::MAX_MESSAGE` characters; RFC 3339, still to
/// come), a level of [`Level::NAMES`] (`info` when not given), and a system that exists
/// (`systems`: the hub's system names) or none. The error names the field.
pub fn validate(
    message: &str,
    level: Option<&str>,
    system: Option<&str>,
    until: Option<&str>,
    systems: &[String],
    now: OffsetDateTime,
) -> Result<NewAnnouncement, BadNotice> {
    let (message, until) = validate_notice(message, until, now)?;
    let level = match level.map(str::trim).filter(|l| !l.is_empty()) {
        None => Level::Info,
        Some(word) => Level::parse(word).ok_or_else(|| BadNotice {
            field: "level",
            message: format!("{word:?} is not a level; use {}", Level::NAMES),
        })?,
    };
    let system = match system.map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(name) if systems.iter().any(|s| s == name) => Some(name.to_owned()),
        Some(name) => {
            return Err(BadNotice {
                field: "system",
                message: format!(
                    "no system is named {name:?}; use one of {} or leave it out for everyone",
                    systems.join(", ")
                ),
            })
        }
    };
    let until = until.map(|u| (u.unix_timestamp_nanos() / 1000) as i64);
    Ok(NewAnnouncement {
        message,
        level,
        system,
        until,
    })
}

/// Every announcement, stored first and kept in memory; cheap to read.
#[derive(Default)]
pub struct Announcements {
    all: RwLock<Vec<Announcement>>,
}

impl Announcements {
    /// Takes up the stored announcements (at start-up).
    pub async fn load(&self, db: &Db) -> Result<(), sqlx::Error> {
        let rows = db::announcements::all(db).await?;
        *self.all.write().unwrap_or_else(|p| p.into_inner()) =
            rows.into_iter().map(Announcement::of).collect();
        Ok(())
    }

    /// The announcements in force now, newest first.
    pub fn active(&self) -> Vec<Announcement> {
        let now = db::now_micros();
        let all = self.all.read().unwrap_or_else(|p| p.into_inner());
        all.iter()
            .rev()
            .filter(|a| a.active(now))
            .cloned()
            .collect()
    }

    /// Stores a new announcement (the expired ones go at the same time).
    pub async fn add(
        &self,
        db: &Db,
        new: NewAnnouncement,
        by: &str,
    ) -> Result<Announcement, sqlx::Error> {
        let now = db::now_micros();
        let row = AnnouncementRow {
            id: 0,
            message: new.message,
            level: new.level.as_str().to_owned(),
            system: new.system.unwrap_or_default(),
            ends: new.until,
            set_by: by.to_owned(),
            created: now,
        };
        let stored = Announcement::of(db::announcements::insert(db, &row, now).await?);
        let mut all = self.all.write().unwrap_or_else(|p| p.into_inner());
        all.retain(|a| a.active(now));
        all.push(stored.clone());
        tracing::info!(id = stored.id, by, "announcement set");
        Ok(stored)
    }

    /// Deletes one; whether it existed (expired or not).
    pub async fn delete(&self, db: &Db, id: i64) -> Result<bool, sqlx::Error> {
        let existed = db::announcements::delete(db, id).await?;
        let mut all = self.all.write().unwrap_or_else(|p| p.into_inner());
        let before = all.len();
        all.retain(|a| a.id != id);
        if existed {
            tracing::info!(id, "announcement deleted");
        }
        Ok(existed || all.len() < before)
    }

    /// What jupyterhub-announcement's `GET /services/announcement/latest` answers, for the
    /// newest announcement in force (for everyone, or for `system` when given; without it,
    /// every system's too): `{"announcement", "timestamp", "user"}`, or `{"announcement": ""}`
    /// when there is none. Its clients put `announcement` into the page as HTML, so the text
    /// is escaped here; a system's announcement starts with the system's title (`titles`:
    /// name → title). `level`, `until` and `system` are nbhub's additions.
    pub fn latest_json(&self, system: Option<&str>, title_of: impl Fn(&str) -> String) -> Value {
        let latest = self
            .active()
            .into_iter()
            .find(|a| match (system, &a.system) {
                (_, None) | (None, Some(_)) => true,
                (Some(wanted), Some(s)) => s == wanted,
            });
        let Some(a) = latest else {
            return json!({"announcement": ""});
        };
        let text = match &a.system {
            Some(s) => format!("{}: {}", title_of(s), a.message),
            None => a.message.clone(),
        };
        json!({
            "announcement": html_escape(&text),
            "timestamp": db::format_timestamp(a.created),
            "user": a.set_by,
            "level": a.level,
            "until": a.until.map(db::format_timestamp),
            "system": a.system,
        })
    }
}

/// Text made safe to put into HTML as it is (`&`, `<`, `>` and both quotes).
fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn systems() -> Vec<String> {
        vec!["alpha".into(), "beta".into()]
    }

    #[test]
    fn an_announcement_is_checked_field_by_field() {
        let now = datetime!(2026-12-07 12:00 UTC);
        let ok = validate(
            "  Downtime on Monday  ",
            Some("warning"),
            Some("beta"),
            Some("2026-12-08T12:00:00+01:00"),
            &systems(),
            now,
        )
        .unwrap();
        assert_eq!(ok.message, "Downtime on Monday");
        assert_eq!(ok.level, Level::Warning);
        assert_eq!(ok.system.as_deref(), Some("beta"));
        assert_eq!(
            ok.until,
            Some(datetime!(2026-12-08 11:00 UTC).unix_timestamp() * 1_000_000)
        );
        let plain = validate("hi", None, Some(""), None, &systems(), now).unwrap();
        assert_eq!(
            (plain.level, plain.system, plain.until),
            (Level::Info, None, None)
        );
        let field = |r: Result<NewAnnouncement, BadNotice>| r.unwrap_err().field;
        assert_eq!(field(validate(" ", None, None, None, &[], now)), "message");
        assert_eq!(
            field(validate("x", Some("loud"), None, None, &[], now)),
            "level"
        );
        assert_eq!(
            field(validate("x", None, Some("gamma"), None, &systems(), now)),
            "system"
        );
        assert_eq!(
            field(validate("x", None, None, Some("yesterday"), &[], now)),
            "until"
        );
        assert_eq!(
            field(validate(
                "x",
                None,
                None,
                Some("2026-12-07T11:00:00Z"),
                &[],
                now
            )),
            "until"
        );
    }

    fn put(
        store: &Announcements,
        id: i64,
        message: &str,
        system: Option<&str>,
        until: Option<i64>,
    ) {
        store.all.write().unwrap().push(Announcement {
            id,
            message: message.into(),
            level: Level::Info,
            system: system.map(str::to_owned),
            until,
            set_by: "root".into(),
            created: 1_700_000_000_000_000 + id,
        });
    }

    #[test]
    fn latest_is_the_newest_in_force_escaped_in_jupyterhub_announcements_shape() {
        let store = Announcements::default();
        let title = |s: &str| format!("System {s}");
        assert_eq!(store.latest_json(None, title), json!({"announcement": ""}));
        put(&store, 1, "<b>everyone</b> & all", None, None);
        put(&store, 2, "beta only", Some("beta"), None);
        put(&store, 3, "gone", None, Some(1));
        let latest = store.latest_json(None, title);
        assert_eq!(latest["announcement"], "System beta: beta only");
        assert_eq!(latest["user"], "root");
        assert_eq!(latest["timestamp"], "2023-11-14T22:13:20.000002Z");
        let alpha = store.latest_json(Some("alpha"), title);
        assert_eq!(
            alpha["announcement"], "&lt;b&gt;everyone&lt;/b&gt; &amp; all",
            "alpha sees the one for everyone, escaped"
        );
        assert_eq!(store.active().len(), 2, "the expired one is not in force");
    }
}
