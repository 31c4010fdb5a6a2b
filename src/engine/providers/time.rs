//! Timestamps as the providers write them.
//!
//! InfoBip writes ISO 8601 with an offset that has no colon (`2019-07-19T11:21:27.861+0000`), which
//! RFC 3339 parsers reject; Meta writes epoch seconds as a JSON string. Both end up in UTC.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::ParseError;

/// ISO 8601 with a `±hhmm` offset. chrono's `%.f` also accepts no fraction and `%z` also accepts
/// `±hh:mm`, so this one pattern covers every InfoBip variant RFC 3339 does not.
const ISO_8601_COMPACT_OFFSET: &str = "%Y-%m-%dT%H:%M:%S%.f%z";

/// Parses an RFC 3339 timestamp or InfoBip's ISO 8601 form with a colon-less offset.
///
/// `field` is the path reported in the error.
pub fn parse_timestamp(field: &str, value: &str) -> Result<DateTime<Utc>, ParseError> {
    DateTime::parse_from_rfc3339(value)
        .or_else(|_| DateTime::parse_from_str(value, ISO_8601_COMPACT_OFFSET))
        .map(|time| time.with_timezone(&Utc))
        .map_err(|_| {
            ParseError::new(
                field,
                "must be an RFC 3339 / ISO 8601 timestamp with an offset",
            )
        })
}

/// Parses Unix epoch seconds written as decimal digits, as Meta sends them (`"1732528800"`).
///
/// Signs, spaces and fractions are refused: Meta never sends them, so their presence means the
/// field is not what we think it is.
pub fn parse_epoch_seconds(field: &str, value: &str) -> Result<DateTime<Utc>, ParseError> {
    let invalid = || ParseError::new(field, "must be Unix epoch seconds (decimal digits)");
    if value.is_empty() || !value.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(invalid());
    }
    let seconds: i64 = value.parse().map_err(|_| invalid())?;
    DateTime::from_timestamp(seconds, 0).ok_or_else(invalid)
}

/// Epoch seconds given either as a JSON string (Meta's documented form) or as a JSON integer
/// (tolerated, since some BSPs proxying Meta's format re-serialise it as a number).
pub fn parse_epoch_value(field: &str, value: &Value) -> Result<DateTime<Utc>, ParseError> {
    match value {
        Value::String(text) => parse_epoch_seconds(field, text),
        Value::Number(number) => number
            .as_i64()
            .filter(|seconds| *seconds >= 0)
            .and_then(|seconds| DateTime::from_timestamp(seconds, 0))
            .ok_or_else(|| ParseError::new(field, "must be non-negative integer epoch seconds")),
        _ => Err(ParseError::new(
            field,
            "must be Unix epoch seconds as a string or integer",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
            .single()
            .expect("valid test date")
    }

    #[test]
    fn rfc3339_zulu_and_colon_offsets() {
        let expected = utc(2026, 11, 25, 10, 0, 0);
        assert_eq!(parse_timestamp("t", "2026-11-25T10:00:00Z"), Ok(expected));
        assert_eq!(
            parse_timestamp("t", "2026-11-25T10:00:00+00:00"),
            Ok(expected)
        );
        assert_eq!(
            parse_timestamp("t", "2026-11-25T12:00:00+02:00"),
            Ok(expected)
        );
    }

    #[test]
    fn rfc3339_fractional_seconds() {
        let parsed = parse_timestamp("t", "2026-11-25T10:00:00.123456Z").expect("parses");
        assert_eq!(parsed.timestamp_subsec_micros(), 123_456);
        assert_eq!(parsed.timestamp(), utc(2026, 11, 25, 10, 0, 0).timestamp());
    }

    #[test]
    fn infobip_offset_without_colon() {
        let parsed = parse_timestamp("t", "2019-07-19T11:21:27.861+0000").expect("parses");
        assert_eq!(parsed.timestamp(), utc(2019, 7, 19, 11, 21, 27).timestamp());
        assert_eq!(parsed.timestamp_subsec_millis(), 861);
    }

    #[test]
    fn infobip_offset_without_fraction() {
        assert_eq!(
            parse_timestamp("t", "2019-07-19T11:21:27+0000"),
            Ok(utc(2019, 7, 19, 11, 21, 27))
        );
    }

    #[test]
    fn positive_and_negative_compact_offsets() {
        assert_eq!(
            parse_timestamp("t", "2019-07-19T16:51:27.000+0530"),
            Ok(utc(2019, 7, 19, 11, 21, 27))
        );
        assert_eq!(
            parse_timestamp("t", "2019-07-19T08:21:27-0300"),
            Ok(utc(2019, 7, 19, 11, 21, 27))
        );
        assert_eq!(
            parse_timestamp("t", "2019-07-19T08:21:27-03:00"),
            Ok(utc(2019, 7, 19, 11, 21, 27))
        );
    }

    #[test]
    fn garbage_timestamps_name_the_field() {
        for bad in [
            "",
            "yesterday",
            "2019-07-19",
            "2019-07-19T11:21:27",
            "2019-07-19T11:21:27.861",
            "2019-13-19T11:21:27Z",
            "2019-07-19T25:21:27+0000",
            "1732528800",
            "2019-07-19T11:21:27.861+000",
        ] {
            let error = parse_timestamp("results[0].receivedAt", bad).expect_err(bad);
            assert_eq!(error.field, "results[0].receivedAt", "{bad}");
        }
    }

    #[test]
    fn epoch_seconds_string() {
        assert_eq!(
            parse_epoch_seconds("ts", "1732528800"),
            Ok(utc(2024, 11, 25, 10, 0, 0))
        );
        assert_eq!(parse_epoch_seconds("ts", "0"), Ok(utc(1970, 1, 1, 0, 0, 0)));
    }

    #[test]
    fn epoch_seconds_garbage() {
        for bad in [
            "",
            " 1",
            "1 ",
            "-1",
            "+1",
            "1.5",
            "abc",
            "99999999999999999999999",
        ] {
            let error = parse_epoch_seconds("ts", bad).expect_err(bad);
            assert_eq!(error.field, "ts");
        }
        // Fits in i64 but is beyond chrono's representable range.
        assert!(parse_epoch_seconds("ts", "9223372036854775807").is_err());
    }

    #[test]
    fn epoch_value_string_or_integer() {
        let expected = Ok(utc(2024, 11, 25, 10, 0, 0));
        assert_eq!(
            parse_epoch_value("ts", &Value::from("1732528800")),
            expected
        );
        assert_eq!(
            parse_epoch_value("ts", &Value::from(1_732_528_800_i64)),
            expected
        );
    }

    #[test]
    fn epoch_value_refuses_other_json() {
        for bad in [
            Value::Null,
            Value::from(true),
            Value::from(-5),
            Value::from(1.5),
            Value::from(u64::MAX),
            serde_json::json!([1]),
            serde_json::json!({"s": 1}),
        ] {
            assert_eq!(
                parse_epoch_value("ts", &bad).map_err(|e| e.field),
                Err("ts".into())
            );
        }
    }

    proptest! {
        #[test]
        fn timestamp_parsers_never_panic(text in ".{0,40}") {
            let _ = parse_timestamp("f", &text);
            let _ = parse_epoch_seconds("f", &text);
        }

        #[test]
        fn compact_offset_form_round_trips(seconds in 0_i64..4_102_444_800, millis in 0_u32..1000) {
            let time = DateTime::from_timestamp(seconds, millis * 1_000_000).expect("in range");
            let text = time.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string();
            prop_assert_eq!(parse_timestamp("f", &text), Ok(time));
        }

        #[test]
        fn epoch_digits_round_trip(seconds in 0_i64..4_102_444_800) {
            let parsed = parse_epoch_seconds("f", &seconds.to_string()).expect("in range");
            prop_assert_eq!(parsed.timestamp(), seconds);
        }
    }
}
