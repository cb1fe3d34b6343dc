//! Calendar dates in UTC, for what the catalog says of a model's life and for stamps.
//!
//! A day count since 1970-01-01 is all the gateway needs: lifecycle dates are whole days
//! (AWS publishes them so), and comparing two counts is the whole of "has it retired".

use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A UTC calendar day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    days_since_epoch: i64,
}

impl Date {
    /// The UTC day `at` falls on.
    pub fn of(at: SystemTime) -> Date {
        let secs = at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Date { days_since_epoch: (secs / 86_400) as i64 }
    }

    pub fn today() -> Date {
        Date::of(SystemTime::now())
    }

    /// `yyyy-mm-dd`, exactly: a real day of a four-digit year.
    pub fn parse(text: &str) -> Result<Date, String> {
        let bad = || format!("`{text}` is not a date of the form yyyy-mm-dd");
        let bytes = text.as_bytes();
        if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
            return Err(bad());
        }
        let number = |range: std::ops::Range<usize>| -> Result<u32, String> {
            let part = &text[range];
            if part.bytes().all(|b| b.is_ascii_digit()) { part.parse().map_err(|_| bad()) } else { Err(bad()) }
        };
        let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
        let date = Date { days_since_epoch: days_from_civil(i64::from(year), month, day) };
        // A day the calendar does not have (2026-02-30) comes back as another one.
        if !(1..=12).contains(&month) || date.civil() != (i64::from(year), month, day) {
            return Err(bad());
        }
        Ok(date)
    }

    /// Year, month (1–12) and day (1–31).
    pub fn civil(self) -> (i64, u32, u32) {
        civil_from_days(self.days_since_epoch)
    }

    /// The day's first second as an HTTP date (IMF-fixdate, RFC 9110 §5.6.7), the form the
    /// `Sunset` header (RFC 8594) takes.
    pub fn http_date(self) -> String {
        const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
        const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
        let (year, month, day) = self.civil();
        let weekday = WEEKDAYS[self.days_since_epoch.rem_euclid(7) as usize];
        let month = MONTHS[(month - 1) as usize];
        format!("{weekday}, {day:02} {month} {year:04} 00:00:00 GMT")
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (year, month, day) = self.civil();
        write!(f, "{year:04}-{month:02}-{day:02}")
    }
}

impl Serialize for Date {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Date {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Date, D::Error> {
        let text = String::deserialize(deserializer)?;
        Date::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The day count since 1970-01-01 of a proleptic Gregorian date (the inverse of
/// [`civil_from_days`] for real dates).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn dates_read_and_print_the_same_day() {
        for text in ["1970-01-01", "2000-02-29", "2026-09-10", "2026-12-31", "2100-03-01"] {
            assert_eq!(Date::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(Date::parse("1970-01-02").unwrap(), Date::of(SystemTime::UNIX_EPOCH + Duration::from_secs(86_400)));
        assert!(Date::parse("2026-06-19").unwrap() < Date::parse("2026-09-10").unwrap());
    }

    #[test]
    fn anything_but_a_real_yyyy_mm_dd_day_is_refused_with_what_was_given() {
        for text in ["2026-02-30", "2026-13-01", "2026-00-10", "2026-9-10", "26-09-10", "2026/09/10", "2026-09-1x", ""]
        {
            let err = Date::parse(text).unwrap_err();
            assert!(err.contains(&format!("`{text}`")), "{err}");
        }
        assert!(Date::parse("2100-02-29").is_err(), "2100 is not a leap year");
    }

    #[test]
    fn http_dates_carry_the_weekday() {
        assert_eq!(Date::parse("1970-01-01").unwrap().http_date(), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(Date::parse("2026-09-10").unwrap().http_date(), "Thu, 10 Sep 2026 00:00:00 GMT");
        assert_eq!(Date::parse("2026-12-04").unwrap().http_date(), "Fri, 04 Dec 2026 00:00:00 GMT");
    }
}
