//! The URL layout of a snapshot archive, as snapshot.debian.org serves it:
//! `<base>/archive/<archive>/<timestamp>/<path>`, where `<archive>` is the
//! archive's name there (`debian`, `debian-security`), `<timestamp>` is
//! `YYYYMMDDTHHMMSSZ` and `<path>` is a path below the archive root
//! (`pool/main/h/haproxy/…deb`, `dists/trixie/InRelease`). The service
//! answers a timestamp with its last import at or before it. An internal
//! mirror laid out the same way works with another base URL.

/// Where snapshot archives are unless `--snapshot-url` or
/// `$NODEIMG_SNAPSHOT_URL` says otherwise.
pub const DEFAULT_BASE: &str = "https://snapshot.debian.org";

/// How long after the newest signed Release of a lock its timestamp
/// points: snapshot.debian.org imports each archive a few times a day, so
/// an import taken up to half a day after the newest push holds every file
/// the lock names; and a file superseded since is still in the pool then
/// (Debian keeps unreferenced files for more than a day).
pub const AFTER_NEWEST_RELEASE: i64 = 12 * 3600;

/// The archive's name on snapshot.debian.org for Debian's own mirrors
/// (`http://deb.debian.org/debian` → `debian`,
/// `http://security.debian.org/debian-security` → `debian-security`); None
/// for any other archive, which has to name its own.
pub fn debian_archive_name(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = path.trim_matches('/');
    let official = matches!(
        host,
        "deb.debian.org" | "ftp.debian.org" | "security.debian.org"
    );
    (official && matches!(path, "debian" | "debian-security")).then(|| path.to_string())
}

/// `20261121T125303Z` for seconds since the epoch (UTC).
pub fn timestamp(epoch: i64) -> String {
    let days = epoch.div_euclid(86_400);
    let seconds = epoch.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        seconds / 3600,
        seconds % 3600 / 60,
        seconds % 60
    )
}

/// Whether `text` is a `YYYYMMDDTHHMMSSZ` timestamp.
pub fn is_timestamp(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 16
        && bytes[8] == b'T'
        && bytes[15] == b'Z'
        && bytes[..8]
            .iter()
            .chain(&bytes[9..15])
            .all(u8::is_ascii_digit)
}

/// The URL of `path` (below the archive root) in the snapshot of
/// `archive` at `timestamp`.
pub fn url(base: &str, archive: &str, timestamp: &str, path: &str) -> String {
    format!(
        "{}/archive/{archive}/{timestamp}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's
/// algorithm, the inverse of `release::days_from_civil`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::debian::release::parse_release_date;

    #[test]
    fn timestamps_round_trip_release_dates() {
        let epoch = parse_release_date("Sat, 21 Nov 2026 00:53:03 UTC").unwrap();
        assert_eq!(timestamp(epoch), "20261121T005303Z");
        assert_eq!(timestamp(0), "19700101T000000Z");
        assert_eq!(
            timestamp(parse_release_date("Tue, 29 Feb 2028 23:59:59 UTC").unwrap()),
            "20280229T235959Z"
        );
        assert!(is_timestamp("20261121T005303Z"));
        for bad in ["2026-11-21", "20261121T005303", "20261121X005303Z", ""] {
            assert!(!is_timestamp(bad), "{bad}");
        }
    }

    #[test]
    fn urls_follow_snapshot_debian_orgs_layout() {
        assert_eq!(
            url(
                "https://snapshot.debian.org/",
                "debian-security",
                "20261121T125303Z",
                "pool/updates/main/h/haproxy/haproxy_3.0.11-1+deb13u5_amd64.deb"
            ),
            "https://snapshot.debian.org/archive/debian-security/20261121T125303Z/pool/updates/main/h/haproxy/haproxy_3.0.11-1+deb13u5_amd64.deb"
        );
        assert_eq!(
            debian_archive_name("http://deb.debian.org/debian").as_deref(),
            Some("debian")
        );
        assert_eq!(
            debian_archive_name("http://security.debian.org/debian-security/").as_deref(),
            Some("debian-security")
        );
        assert_eq!(
            debian_archive_name("http://apt.postgresql.org/pub/repos/apt"),
            None
        );
        assert_eq!(debian_archive_name("file:///srv/debian"), None);
    }
}
