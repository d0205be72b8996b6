//! The spec's `[restore]` section: a brand-new cluster starts from another
//! cluster's backups (in the repository of this spec's `[backup]`) instead
//! of an empty `initdb`, to the latest archived point or to a target time.
//! Patroni runs it as its custom bootstrap method, so it only happens when
//! the cluster has never been initialized (no initialize key in the DCS);
//! a running cluster, and every node that joins it, ignores it.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreSettings {
    /// The stanza restored from: the old cluster's `cluster.name`.
    pub from: String,
    /// Recover up to this moment (`2026-12-01 21:00:00+00`: an explicit
    /// UTC offset, so the nodes' time zone cannot shift it) and promote;
    /// absent: everything archived (the latest point).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_time: Option<String>,
}

impl RestoreSettings {
    /// Each refusal: (field, rule). `cluster` is this spec's cluster name,
    /// `has_backup` whether it has a `[backup]` section.
    pub fn validate(&self, cluster: &str, has_backup: bool) -> Result<(), (String, String)> {
        let fail = |field: &str, rule: String| Err((format!("restore.{field}"), rule));
        if !has_backup {
            return fail(
                "from",
                "needs a [backup] section: the backups restored from are in its repository, and the new cluster archives there under its own name".into(),
            );
        }
        if !super::is_name(&self.from) {
            return fail(
                "from",
                format!(
                    "{:?} must be the old cluster's name (1-63 lowercase letters, digits or '-'): its pgBackRest stanza",
                    self.from
                ),
            );
        }
        if self.from == cluster {
            return fail(
                "from",
                format!(
                    "{:?} is this cluster's own name: the restored cluster archives under its own stanza, so give it a new cluster.name (restoring a cluster over itself would mix two histories in one stanza)",
                    self.from
                ),
            );
        }
        if let Some(time) = &self.target_time {
            target_epoch(time).map_err(|rule| ("restore.target_time".to_string(), rule))?;
        }
        Ok(())
    }
}

/// `YYYY-MM-DD HH:MM:SS[.fraction]` and an offset (`+00`, `+02:00`,
/// `-05`, `Z`), as PostgreSQL's recovery_target_time reads it: the Unix
/// second it names (the fraction dropped, as pgBackRest compares backups'
/// stop times in whole seconds).
pub fn target_epoch(text: &str) -> Result<i64, String> {
    let bad = |why: &str| {
        format!(
            "{text:?} is not a time like \"2026-12-01 21:00:00+00\" ({why}); `select now()` on the old cluster prints one"
        )
    };
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = text.get(range)?;
        (part.bytes().all(|c| c.is_ascii_digit()) && !part.is_empty())
            .then(|| part.parse().ok())
            .flatten()
    };
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b' ' || b[10] == b'T') {
        return Err(bad("date and time first"));
    }
    if b[13] != b':' || b[16] != b':' {
        return Err(bad("hours, minutes and seconds"));
    }
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        digits(0..4),
        digits(5..7),
        digits(8..10),
        digits(11..13),
        digits(14..16),
        digits(17..19),
    ) else {
        return Err(bad("digits where the numbers go"));
    };
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return Err(bad("no such month or day"));
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err(bad("no such hour, minute or second"));
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let end = fraction
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(fraction.len());
        if end == 0 {
            return Err(bad("digits after the '.'"));
        }
        rest = &fraction[end..];
    }
    let offset_ok = rest == "Z"
        || rest.len() >= 3
            && (rest.starts_with('+') || rest.starts_with('-'))
            && match rest.len() {
                3 => digits_of(&rest[1..3]),
                5 => digits_of(&rest[1..5]),
                6 => rest.as_bytes()[3] == b':' && digits_of(&rest[1..3]) && digits_of(&rest[4..6]),
                _ => false,
            };
    if !offset_ok {
        return Err(bad(
            "it needs a UTC offset such as +00 or +02:00, so the nodes' time zone cannot shift it",
        ));
    }
    let offset = match rest {
        "Z" => time::UtcOffset::UTC,
        _ => {
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            let number = |r: std::ops::Range<usize>| rest[r].parse::<i8>().unwrap_or(0);
            let minutes = match rest.len() {
                5 => number(3..5),
                6 => number(4..6),
                _ => 0,
            };
            time::UtcOffset::from_hms(sign * number(1..3), sign * minutes, 0)
                .map_err(|_| bad("no such UTC offset"))?
        }
    };
    let month = time::Month::try_from(month as u8).map_err(|_| bad("no such month"))?;
    let date = time::Date::from_calendar_date(year as i32, month, day as u8)
        .map_err(|_| bad("no such day in that month"))?;
    // A leap second reads as the next second's start.
    let clock = time::Time::from_hms(hour as u8, minute as u8, second.min(59) as u8)
        .map_err(|_| bad("no such hour, minute or second"))?;
    Ok(date.with_time(clock).assume_offset(offset).unix_timestamp() + i64::from(second == 60))
}

fn digits_of(text: &str) -> bool {
    text.bytes().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn restore(from: &str, target_time: Option<&str>) -> RestoreSettings {
        RestoreSettings {
            from: from.into(),
            target_time: target_time.map(str::to_string),
        }
    }

    #[test]
    fn times_with_an_offset_are_accepted() {
        for time in [
            "2026-12-01 21:00:00+00",
            "2026-12-01 21:00:00.123456+00",
            "2026-12-01T21:00:00Z",
            "2026-12-01 21:00:00+02:00",
            "2026-12-01 21:00:00-0500",
        ] {
            assert_eq!(
                restore("old", Some(time)).validate("new", true),
                Ok(()),
                "{time}"
            );
        }
    }

    #[test]
    fn target_times_name_one_unix_second_whatever_their_offset() {
        // 2026-12-01 21:00:00 UTC.
        let utc = 1_796_158_800;
        for (time, epoch) in [
            ("2026-12-01 21:00:00+00", utc),
            ("2026-12-01 21:00:00.999999+00", utc),
            ("2026-12-01T21:00:00Z", utc),
            ("2026-12-01 23:00:00+02:00", utc),
            ("2026-12-01 16:00:00-0500", utc),
            ("2026-12-01 20:59:60+00", utc),
        ] {
            assert_eq!(target_epoch(time), Ok(epoch), "{time}");
        }
        let err = target_epoch("2026-02-30 21:00:00+00").unwrap_err();
        assert!(err.contains("no such day in that month"), "{err}");
    }

    #[test]
    fn refusals_name_the_field() {
        let refused = |r: RestoreSettings, backup: bool| r.validate("new", backup).unwrap_err();
        let (field, rule) = refused(restore("old", None), false);
        assert_eq!(field, "restore.from");
        assert!(rule.contains("needs a [backup] section"), "{rule}");
        let (field, rule) = refused(restore("new", None), true);
        assert_eq!(field, "restore.from");
        assert!(rule.contains("this cluster's own name"), "{rule}");
        assert_eq!(refused(restore("Old DB", None), true).0, "restore.from");
        for time in [
            "2026-12-01 21:00:00",
            "yesterday",
            "2026-13-01 21:00:00+00",
            "2026-12-01 25:00:00+00",
            "2026-12-01 21:00+00",
            "2026-12-01 21:00:00.+00",
            "2026-12-01 21:00:00+0",
            "2026-12-01 21:00:00 UTC",
        ] {
            let (field, rule) = refused(restore("old", Some(time)), true);
            assert_eq!(field, "restore.target_time", "{time}");
            assert!(rule.contains("select now()"), "{rule}");
        }
        assert!(toml::from_str::<RestoreSettings>("from = \"old\"\ntarget = \"x\"\n").is_err());
    }
}
