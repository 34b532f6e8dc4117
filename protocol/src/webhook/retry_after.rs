//! A receiver's `Retry-After` header (RFC 9110, section 10.2.3), read the way the outbox honours
//! it: either delay-seconds (`120`) or an HTTP-date in its preferred form, IMF-fixdate
//! (`Sun, 06 Nov 1994 08:49:37 GMT`). The two obsolete date forms (RFC 850's and asctime's) and
//! anything else unreadable are ignored, as if no header had come. No clock of its own: `now` is
//! an argument.

/// How long (ms) `value` asks to wait from `now` (ms since the Unix epoch): 0 for a date in the
/// past; `None` when it is not a value this module reads. Seconds beyond what a `u64` of ms
/// holds saturate.
pub fn wait_ms(value: &str, now: u64) -> Option<u64> {
    let value = value.trim_matches(|c| c == ' ' || c == '\t');
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        let seconds = value.bytes().fold(0u64, |s, b| s.saturating_mul(10).saturating_add(u64::from(b - b'0')));
        return Some(seconds.saturating_mul(1000));
    }
    imf_fixdate_ms(value).map(|at| at.saturating_sub(now))
}

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// `Sun, 06 Nov 1994 08:49:37 GMT` as ms since the Unix epoch (dates before it: `None`).
fn imf_fixdate_ms(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 29 || &b[3..5] != b", " || b[7] != b' ' || b[11] != b' ' || b[16] != b' ' || &b[25..] != b" GMT" {
        return None;
    }
    if b[19] != b':' || b[22] != b':' || !DAYS.iter().any(|d| d.as_bytes() == &b[..3]) {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u64> {
        let digits = b.get(range)?;
        digits.iter().all(u8::is_ascii_digit).then(|| digits.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
    };
    let day = number(5..7)?;
    let month = MONTHS.iter().position(|m| m.as_bytes() == &b[8..11])? as u64 + 1;
    let year = number(12..16)?;
    let (hour, minute, second) = (number(17..19)?, number(20..22)?, number(23..25)?);
    if year < 1970 || day == 0 || day > days_in_month(year, month) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_since_epoch(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second.min(59);
    Some(seconds * 1000)
}

fn is_leap(year: u64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to `year`-`month`-`day` (year at least 1970).
fn days_since_epoch(year: u64, month: u64, day: u64) -> u64 {
    let years = year - 1970;
    // Leap days in the years before `year`, counted from 1970 (1972 is the first).
    let leaps = |y: u64| y / 4 - y / 100 + y / 400;
    let leap_days = leaps(year - 1) - leaps(1969);
    let month_days: u64 = (1..month).map(|m| days_in_month(year, m)).sum();
    years * 365 + leap_days + month_days + day - 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: u64 = 784_111_777_000; // Sun, 06 Nov 1994 08:49:37 GMT

    #[test]
    fn seconds_and_dates() {
        assert_eq!(wait_ms("120", NOW), Some(120_000));
        assert_eq!(wait_ms(" 0\t", NOW), Some(0));
        assert_eq!(wait_ms("99999999999999999999999", NOW), Some(u64::MAX), "saturates");
        assert_eq!(wait_ms("Sun, 06 Nov 1994 08:49:37 GMT", NOW), Some(0));
        assert_eq!(wait_ms("Sun, 06 Nov 1994 08:50:07 GMT", NOW), Some(30_000));
        assert_eq!(wait_ms("Sun, 06 Nov 1994 08:49:00 GMT", NOW), Some(0), "the past: at once");
        assert_eq!(wait_ms("Mon, 07 Nov 1994 08:49:37 GMT", NOW), Some(86_400_000));
        assert_eq!(wait_ms("Thu, 01 Jan 1970 00:00:00 GMT", 0), Some(0));
        assert_eq!(wait_ms("Thu, 29 Feb 2024 12:00:00 GMT", 0), Some(1_709_208_000_000));
        assert_eq!(wait_ms("Fri, 31 Dec 2100 23:59:59 GMT", 0), Some(4_133_980_799_000));
    }

    #[test]
    fn what_is_not_read_is_ignored() {
        for value in [
            "",
            "-1",
            "1.5",
            "+3",
            "soon",
            "Sunday, 06-Nov-94 08:49:37 GMT", // RFC 850
            "Sun Nov  6 08:49:37 1994",       // asctime
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Now 1994 08:49:37 GMT",
            "Xyz, 06 Nov 1994 08:49:37 GMT",
            "Sun, 31 Nov 1994 08:49:37 GMT",
            "Sun, 29 Feb 2023 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1969 08:49:37 GMT",
            "Sun, 06 Nov 19a4 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMTé",
        ] {
            assert_eq!(wait_ms(value, NOW), None, "{value:?}");
        }
    }

    proptest! {
        /// Every date this module writes back the way `Date.toUTCString()` does is read exactly,
        /// and no input panics.
        #[test]
        fn dates_round_trip(seconds in 0u64..8_000_000_000, now in 0u64..8_000_000_000_000) {
            let days = seconds / 86_400;
            let (mut year, mut rest) = (1970u64, days);
            while rest >= if is_leap(year) { 366 } else { 365 } {
                rest -= if is_leap(year) { 366 } else { 365 };
                year += 1;
            }
            let mut month = 1;
            while rest >= days_in_month(year, month) {
                rest -= days_in_month(year, month);
                month += 1;
            }
            let weekday = DAYS[((days + 3) % 7) as usize]; // 1970-01-01 was a Thursday
            let text = format!(
                "{weekday}, {:02} {} {year} {:02}:{:02}:{:02} GMT",
                rest + 1,
                MONTHS[(month - 1) as usize],
                seconds % 86_400 / 3_600,
                seconds % 3_600 / 60,
                seconds % 60
            );
            prop_assert_eq!(wait_ms(&text, now), Some((seconds * 1000).saturating_sub(now)), "{}", text);
        }

        #[test]
        fn any_text_is_read_or_ignored(text in ".{0,40}", now in any::<u64>()) {
            let _ = wait_ms(&text, now);
        }
    }
}
