//! Money in micro-cents (1/1,000,000 of a cent, SPEC §6): dollars for display and parsing,
//! and the checked conversions money code uses instead of saturating.

/// Micro-cents in one cent.
pub const MICRO_CENTS_PER_CENT: i64 = 1_000_000;

/// An amount that does not fit where it has to go: never clamped, always an error that says
/// what it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {value} does not fit in {target}")]
pub struct OutOfRange {
    /// What the amount is, in words (e.g. "job 12:1's charge").
    pub what: String,
    /// The value as text.
    pub value: String,
    /// The type it had to fit in.
    pub target: &'static str,
}

/// Converts `value` to `T`, or names `what` in the error: for micro-cents, free minutes and
/// minutes, where a silent `unwrap_or` would bill a wrong amount.
pub fn convert<T, U>(value: U, what: impl FnOnce() -> String) -> Result<T, OutOfRange>
where
    T: TryFrom<U>,
    U: Copy + std::fmt::Display,
{
    T::try_from(value).map_err(|_| OutOfRange {
        what: what(),
        value: value.to_string(),
        target: std::any::type_name::<T>(),
    })
}

/// Micro-cents as dollars with `decimals` decimals (at most 8), rounded half away from zero.
pub fn dollars(micro_cents: i64, decimals: u32) -> String {
    let decimals = decimals.min(8);
    // $1 = 100 cents = 100,000,000 micro-cents.
    let per_unit = 10_u128.pow(8 - decimals);
    let scaled = (u128::from(micro_cents.unsigned_abs()) + per_unit / 2) / per_unit;
    let base = 10_u128.pow(decimals);
    let (whole, fraction) = (scaled / base, scaled % base);
    let sign = if micro_cents < 0 && scaled > 0 {
        "-"
    } else {
        ""
    };
    if decimals == 0 {
        format!("{sign}{whole}")
    } else {
        format!(
            "{sign}{whole}.{fraction:0width$}",
            width = decimals as usize
        )
    }
}

/// Parses dollars (`12.34`, `0.000001`, `-5`) into micro-cents, exactly: no floating point.
pub fn parse_dollars(input: &str) -> Option<i64> {
    let text = input.trim().trim_start_matches('$');
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() && fraction.is_empty()
        || fraction.len() > 8
        || !whole.chars().all(|c| c.is_ascii_digit())
        || !fraction.chars().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let fraction: i64 = format!("{fraction:0<8}").parse().ok()?;
    let micro_cents = whole.checked_mul(100_000_000)?.checked_add(fraction)?;
    Some(if negative { -micro_cents } else { micro_cents })
}

/// The fewest decimals (2 to 8) at which `lines`, each rounded, add up to `total` rounded, so a
/// table never lists lines whose sum differs from the total under them. At 8 decimals every
/// micro-cent shows, so that always adds up when `total` is the lines' sum.
pub fn decimals_that_add_up(lines: &[i64], total: i64) -> u32 {
    (2..8)
        .find(|&decimals| {
            let unit = 10_i128.pow(8 - decimals);
            let round = |v: i64| (i128::from(v) * 2 + unit * i128::from(v.signum())) / (2 * unit);
            lines.iter().map(|&line| round(line)).sum::<i128>() == round(total)
        })
        .unwrap_or(8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_keep_every_micro_cent() {
        assert_eq!(dollars(3_000_000, 6), "0.030000");
        assert_eq!(dollars(4_500_000, 2), "0.05", "rounded half up");
        assert_eq!(dollars(1, 8), "0.00000001");
        assert_eq!(dollars(1_000_000_000, 2), "10.00");
        assert_eq!(dollars(123_456_789_012, 6), "1234.567890");
        assert_eq!(dollars(-250_000_000, 2), "-2.50");
        assert_eq!(dollars(-4_500_000, 2), "-0.05");
        assert_eq!(dollars(-1, 2), "0.00", "no minus sign on a rounded zero");
    }

    #[test]
    fn dollars_parse_exactly() {
        assert_eq!(parse_dollars("10.00"), Some(1_000_000_000));
        assert_eq!(parse_dollars("$0.03"), Some(3_000_000));
        assert_eq!(parse_dollars("0.00000001"), Some(1));
        assert_eq!(parse_dollars("-2.5"), Some(-250_000_000));
        assert_eq!(
            parse_dollars("1.000000001"),
            None,
            "finer than a micro-cent"
        );
        assert_eq!(parse_dollars("ten"), None);
        assert_eq!(parse_dollars(""), None);
    }

    #[test]
    fn listed_lines_add_up_to_the_total_shown() {
        // Three lines of half a cent: $0.01 each at 2 decimals, under a $0.02 total.
        let lines = [500_000, 500_000, 500_000];
        let decimals = decimals_that_add_up(&lines, 1_500_000);
        assert_eq!(decimals, 3);
        assert_eq!(dollars(500_000, decimals), "0.005");
        assert_eq!(dollars(1_500_000, decimals), "0.015");
        // Whole cents stay at 2 decimals.
        assert_eq!(decimals_that_add_up(&[3_000_000, 9_000_000], 12_000_000), 2);
        // The measured case of the review: $3.26 of lines under a $3.27 total.
        let lines = [100_400_000, 100_400_000, 126_400_000];
        let total: i64 = lines.iter().sum();
        let decimals = decimals_that_add_up(&lines, total);
        let shown: i64 = lines
            .iter()
            .map(|&l| parse_dollars(&dollars(l, decimals)).expect("parses"))
            .sum();
        assert_eq!(
            shown,
            parse_dollars(&dollars(total, decimals)).expect("parses")
        );
        assert_eq!(decimals_that_add_up(&[], 0), 2);
    }

    #[test]
    fn conversions_that_do_not_fit_name_what_they_are() {
        let ok: Result<u64, _> = convert(5_i64, || "job 1:1's charge".to_owned());
        assert_eq!(ok, Ok(5));
        let err = convert::<u64, i64>(-5, || "job 1:1's charge".to_owned()).expect_err("negative");
        assert_eq!(err.to_string(), "job 1:1's charge: -5 does not fit in u64");
        let err = convert::<i64, u128>(u128::MAX, || "job 2:1's free minutes".to_owned())
            .expect_err("too large");
        assert!(
            err.to_string().starts_with("job 2:1's free minutes: "),
            "{err}"
        );
    }
}
