//! Reporting periods: calendar months, NHS financial-year quarters and financial years
//! (1 April to 31 March), each with inclusive ISO start and end dates and the label NHS
//! publications use ("2024-03", "2023/24 Q4", "2023/24").
//!
//! A period's end is the reference date of everything measured "as at" it (register
//! membership, the registered population); events are counted from its start to its end
//! inclusive.

use chrono::{Datelike, NaiveDate};
use std::fmt;
use std::str::FromStr;

use crate::QueryError;

/// The earliest and latest financial years Poplar accepts: four-digit years whose labels
/// and SQL date literals are unambiguous.
const FIRST_YEAR: i32 = 1900;
const LAST_YEAR: i32 = 2199;

/// The most periods one trend may hold (ten years of months): a guard against a request
/// that would plan thousands of queries.
pub const MAX_TREND_PERIODS: usize = 120;

/// The length of a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PeriodKind {
    Month,
    Quarter,
    FinancialYear,
}

/// One reporting period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Period {
    /// A calendar month, e.g. March 2024 ("2024-03").
    Month { year: i32, month: u32 },
    /// A quarter of the financial year starting 1 April `fy_start`: Q1 is April to June,
    /// Q4 January to March of the next calendar year ("2023/24 Q4" is Jan-Mar 2024).
    Quarter { fy_start: i32, quarter: u32 },
    /// The financial year 1 April `fy_start` to 31 March of the next year ("2023/24").
    FinancialYear { fy_start: i32 },
}

fn year_in_range(year: i32) -> Result<i32, QueryError> {
    if (FIRST_YEAR..=LAST_YEAR).contains(&year) {
        Ok(year)
    } else {
        Err(QueryError::InvalidPeriod(format!(
            "year {year} is outside {FIRST_YEAR}-{LAST_YEAR}"
        )))
    }
}

impl Period {
    pub fn month(year: i32, month: u32) -> Result<Period, QueryError> {
        if !(1..=12).contains(&month) {
            return Err(QueryError::InvalidPeriod(format!("month {month} is not 1-12")));
        }
        Ok(Period::Month {
            year: year_in_range(year)?,
            month,
        })
    }

    /// Quarter `quarter` (1-4) of the financial year starting in April of `fy_start`.
    pub fn quarter(fy_start: i32, quarter: u32) -> Result<Period, QueryError> {
        if !(1..=4).contains(&quarter) {
            return Err(QueryError::InvalidPeriod(format!("quarter {quarter} is not 1-4")));
        }
        Ok(Period::Quarter {
            fy_start: year_in_range(fy_start)?,
            quarter,
        })
    }

    /// The financial year starting 1 April `fy_start`.
    pub fn financial_year(fy_start: i32) -> Result<Period, QueryError> {
        Ok(Period::FinancialYear {
            fy_start: year_in_range(fy_start)?,
        })
    }

    /// The period of `kind` that contains `date`.
    pub fn containing(kind: PeriodKind, date: NaiveDate) -> Result<Period, QueryError> {
        let fy_start = if date.month() >= 4 {
            date.year()
        } else {
            date.year() - 1
        };
        match kind {
            PeriodKind::Month => Period::month(date.year(), date.month()),
            PeriodKind::Quarter => Period::quarter(fy_start, (date.month() + 8) % 12 / 3 + 1),
            PeriodKind::FinancialYear => Period::financial_year(fy_start),
        }
    }

    pub fn kind(&self) -> PeriodKind {
        match self {
            Period::Month { .. } => PeriodKind::Month,
            Period::Quarter { .. } => PeriodKind::Quarter,
            Period::FinancialYear { .. } => PeriodKind::FinancialYear,
        }
    }

    /// The calendar (year, month) of the period's first month, and its length in months.
    fn span(&self) -> (i32, u32, u32) {
        match *self {
            Period::Month { year, month } => (year, month, 1),
            Period::Quarter { fy_start, quarter } => {
                let first = 4 + 3 * (quarter - 1);
                if first > 12 {
                    (fy_start + 1, first - 12, 3)
                } else {
                    (fy_start, first, 3)
                }
            }
            Period::FinancialYear { fy_start } => (fy_start, 4, 12),
        }
    }

    /// The first day, inclusive.
    pub fn start(&self) -> NaiveDate {
        let (year, month, _) = self.span();
        first_of(year, month)
    }

    /// The last day, inclusive: the reference date for registers and population.
    pub fn end(&self) -> NaiveDate {
        let (year, month, months) = self.span();
        let index = year * 12 + (month as i32 - 1) + months as i32;
        first_of(index / 12, (index % 12 + 1) as u32)
            .pred_opt()
            .unwrap_or(NaiveDate::MIN)
    }

    /// The date registers and the registered population are taken as of.
    pub fn reference_date(&self) -> NaiveDate {
        self.end()
    }

    /// The NHS label: "2024-03", "2023/24 Q4", "2023/24".
    pub fn label(&self) -> String {
        self.to_string()
    }

    /// The next period of the same kind.
    pub fn next(&self) -> Result<Period, QueryError> {
        match *self {
            Period::Month { year, month: 12 } => Period::month(year + 1, 1),
            Period::Month { year, month } => Period::month(year, month + 1),
            Period::Quarter { fy_start, quarter: 4 } => Period::quarter(fy_start + 1, 1),
            Period::Quarter { fy_start, quarter } => Period::quarter(fy_start, quarter + 1),
            Period::FinancialYear { fy_start } => Period::financial_year(fy_start + 1),
        }
    }

    /// Every period from `from` to `to` inclusive, for a trend. Both must be the same kind,
    /// `from` no later than `to`, and at most [`MAX_TREND_PERIODS`] periods.
    pub fn range(from: Period, to: Period) -> Result<Vec<Period>, QueryError> {
        if from.kind() != to.kind() {
            return Err(QueryError::InvalidPeriod(format!(
                "a trend runs over one kind of period: {from} and {to} differ"
            )));
        }
        if from > to {
            return Err(QueryError::InvalidPeriod(format!("{from} is after {to}")));
        }
        let mut periods = vec![from];
        let mut current = from;
        while current < to {
            if periods.len() == MAX_TREND_PERIODS {
                return Err(QueryError::InvalidPeriod(format!(
                    "{from} to {to} is more than {MAX_TREND_PERIODS} periods"
                )));
            }
            current = current.next()?;
            periods.push(current);
        }
        Ok(periods)
    }

    /// The period's start as a SQL date literal, `DATE 'YYYY-MM-DD'`.
    pub fn start_sql(&self) -> String {
        sql_date(self.start())
    }

    /// The period's end as a SQL date literal, `DATE 'YYYY-MM-DD'`.
    pub fn end_sql(&self) -> String {
        sql_date(self.end())
    }
}

/// A date as a SQL literal. Dates come only from [`Period`], so the text is always
/// `DATE 'YYYY-MM-DD'` with a four-digit year.
pub(crate) fn sql_date(date: NaiveDate) -> String {
    format!("DATE '{}'", date.format("%Y-%m-%d"))
}

fn first_of(year: i32, month: u32) -> NaiveDate {
    // Years are bounded to 1900-2199 and months to 1-12 by the constructors.
    NaiveDate::from_ymd_opt(year, month, 1).unwrap_or(NaiveDate::MIN)
}

fn financial_year_label(fy_start: i32) -> String {
    format!("{fy_start}/{:02}", (fy_start + 1).rem_euclid(100))
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Period::Month { year, month } => write!(f, "{year}-{month:02}"),
            Period::Quarter { fy_start, quarter } => {
                write!(f, "{} Q{quarter}", financial_year_label(fy_start))
            }
            Period::FinancialYear { fy_start } => f.write_str(&financial_year_label(fy_start)),
        }
    }
}

/// Parse a financial year label "2023/24"; the second year must follow the first.
fn parse_financial_year(text: &str) -> Option<i32> {
    let (first, second) = text.split_once('/')?;
    if first.len() != 4 || second.len() != 2 || !(first.bytes().chain(second.bytes())).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let start: i32 = first.parse().ok()?;
    let end: i32 = second.parse().ok()?;
    (end == (start + 1).rem_euclid(100)).then_some(start)
}

impl FromStr for Period {
    type Err = QueryError;

    /// Parse a label: "2024-03" (month), "2023/24 Q4" (quarter), "2023/24" (financial year).
    fn from_str(text: &str) -> Result<Period, QueryError> {
        let invalid = || {
            QueryError::InvalidPeriod(format!(
                "{text:?} is not a period; write 2024-03, 2023/24 Q4 or 2023/24"
            ))
        };
        let text = text.trim();
        if let Some((year, quarter)) = text.split_once(" Q") {
            let fy = parse_financial_year(year).ok_or_else(invalid)?;
            let q = match quarter {
                "1" => 1,
                "2" => 2,
                "3" => 3,
                "4" => 4,
                _ => return Err(invalid()),
            };
            return Period::quarter(fy, q);
        }
        if let Some(fy) = parse_financial_year(text) {
            return Period::financial_year(fy);
        }
        if let Some((year, month)) = text.split_once('-')
            && year.len() == 4
            && month.len() == 2
            && year.bytes().chain(month.bytes()).all(|b| b.is_ascii_digit())
        {
            let year: i32 = year.parse().map_err(|_| invalid())?;
            let month: u32 = month.parse().map_err(|_| invalid())?;
            return Period::month(year, month);
        }
        Err(invalid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    fn parse(s: &str) -> Period {
        s.parse().expect("parses")
    }

    #[test]
    fn months_quarters_and_years_have_inclusive_dates_and_nhs_labels() {
        let cases = [
            ("2024-03", "2024-03-01", "2024-03-31"),
            ("2024-02", "2024-02-01", "2024-02-29"),
            ("2023-12", "2023-12-01", "2023-12-31"),
            ("2023/24 Q1", "2023-04-01", "2023-06-30"),
            ("2023/24 Q3", "2023-10-01", "2023-12-31"),
            ("2023/24 Q4", "2024-01-01", "2024-03-31"),
            ("2023/24", "2023-04-01", "2024-03-31"),
            ("1999/00", "1999-04-01", "2000-03-31"),
        ];
        for (label, start, end) in cases {
            let p = parse(label);
            assert_eq!(p.label(), label);
            assert_eq!(p.start(), date(start), "{label}");
            assert_eq!(p.end(), date(end), "{label}");
            assert_eq!(p.reference_date(), p.end());
        }
        assert_eq!(parse("2023/24 Q4").end_sql(), "DATE '2024-03-31'");
        assert_eq!(parse("2023/24").start_sql(), "DATE '2023-04-01'");
    }

    #[test]
    fn malformed_labels_are_refused() {
        for bad in [
            "",
            "2024",
            "2024-13",
            "2024-3",
            "2023/25",
            "2023/24 Q5",
            "2023/24Q4",
            "24/25",
            "2024-03-01",
            "1899-12",
            "2024-03'; DROP TABLE x",
            "２０２４-03",
        ] {
            assert!(
                matches!(bad.parse::<Period>(), Err(QueryError::InvalidPeriod(_))),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn the_period_containing_a_date() {
        let d = date("2024-02-15");
        assert_eq!(Period::containing(PeriodKind::Month, d).expect("ok").label(), "2024-02");
        assert_eq!(
            Period::containing(PeriodKind::Quarter, d).expect("ok").label(),
            "2023/24 Q4"
        );
        assert_eq!(
            Period::containing(PeriodKind::FinancialYear, d).expect("ok").label(),
            "2023/24"
        );
        let d = date("2024-04-01");
        assert_eq!(
            Period::containing(PeriodKind::Quarter, d).expect("ok").label(),
            "2024/25 Q1"
        );
        let d = date("2024-09-30");
        assert_eq!(
            Period::containing(PeriodKind::Quarter, d).expect("ok").label(),
            "2024/25 Q2"
        );
    }

    #[test]
    fn trends_are_consecutive_periods_of_one_kind() {
        let labels = |from: &str, to: &str| -> Vec<String> {
            Period::range(parse(from), parse(to))
                .expect("range")
                .iter()
                .map(Period::label)
                .collect()
        };
        assert_eq!(
            labels("2023-11", "2024-02"),
            ["2023-11", "2023-12", "2024-01", "2024-02"]
        );
        assert_eq!(
            labels("2022/23 Q4", "2023/24 Q2"),
            ["2022/23 Q4", "2023/24 Q1", "2023/24 Q2"]
        );
        assert_eq!(labels("2021/22", "2023/24"), ["2021/22", "2022/23", "2023/24"]);
        assert_eq!(labels("2024-03", "2024-03"), ["2024-03"]);
        assert!(Period::range(parse("2024-03"), parse("2024-02")).is_err());
        assert!(Period::range(parse("2024-03"), parse("2023/24")).is_err());
        assert!(Period::range(parse("2000-01"), parse("2020-01")).is_err(), "too long");
        // Consecutive periods tile time: each starts the day after the last ends.
        let months = Period::range(parse("2023-01"), parse("2024-12")).expect("range");
        for pair in months.windows(2) {
            assert_eq!(pair[0].end().succ_opt(), Some(pair[1].start()));
        }
    }
}
