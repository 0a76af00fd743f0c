//! One SQL query per measure request: the measure's numerator and denominator for every
//! area of a geography level in one period, optionally within a parent area and split by
//! up to two breakdowns, as columns
//! `area_code, <breakdown columns>, [esp_age_band,] numerator, denominator`.
//!
//! The query is an ordinary aggregate over people's records: the numerator is a COUNT of
//! people or events, or a SUM of cost; the denominator a COUNT of distinct people; both in
//! one GROUP BY. So the engine's disclosure control protects it like any commissioner's
//! query (each group needs k people, counts 1-7 are suppressed, the rest rounded and, for
//! noised roles, noised), and the measures service computes values and intervals from the
//! *released* counts.
//!
//! Nothing a caller sends is pasted into SQL unchecked: levels, breakdowns and measures
//! are closed enums, periods are typed dates, and area codes must be 1-16 ASCII letters
//! or digits ([`AreaCode`]).

use super::areas::{AreaCode, Level};
use super::catalogue::{Definition, Measure, ValueType};
use super::dimensions::{Dimension, UNKNOWN};
use super::periods::Period;
use chrono::NaiveDate;

use crate::QueryError;

/// The most breakdowns one request may combine: beyond two the rows explode and almost
/// every cell is suppressed (ehrQL warns the same).
pub const MAX_BREAKDOWNS: usize = 2;

/// The name of the extra group column of a directly standardised rate's query.
pub const ESP_AGE_BAND_COLUMN: &str = "esp_age_band";

/// The SQL expression of an area code at `level`, over population `p` and organisations `o`.
fn area_expr(level: Level) -> &'static str {
    match level {
        Level::Practice => "p.practice",
        Level::Pcn => "o.pcn",
        Level::SubIcb => "o.sub_icb",
        Level::Icb => "o.icb",
        Level::Region => "'ALL'",
    }
}

/// The SQL expression of a breakdown's category code over population `p`, as of `on`.
/// Each yields exactly the codes of [`Dimension::frame`].
fn dimension_expr(dimension: Dimension, on: &str) -> String {
    match dimension {
        Dimension::AgeBand => age_band_expr(on),
        // Never NULL, so a NULL in a totals query always means "rolled up".
        Dimension::Sex => format!("COALESCE(p.sex, '{UNKNOWN}')"),
        Dimension::ImdDecile => format!("COALESCE(CAST(p.imd_decile AS VARCHAR), '{UNKNOWN}')"),
        Dimension::Ethnicity => "COALESCE(p.ethnicity_group, 'not_stated')".into(),
    }
}

/// Five-year age band at `on`: `age_band_5` gives exactly the ESP2013 band codes.
fn age_band_expr(on: &str) -> String {
    format!("COALESCE(age_band_5(age_on(p.birth_month, {on})), '{UNKNOWN}')")
}

/// What to compute a measure for.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub level: Level,
    pub period: Period,
    /// Only areas within this parent (e.g. the practices of one PCN); its level must be
    /// above `level`.
    pub parent: Option<(Level, AreaCode)>,
    /// Only these areas (of `level`); empty for all.
    pub areas: Vec<AreaCode>,
    /// At most [`MAX_BREAKDOWNS`] distinct breakdowns, in the order of their columns.
    pub breakdown: Vec<Dimension>,
    /// Also every total: each area's total and its totals by fewer breakdowns, and the
    /// same over all the areas asked for together (the comparator: the parent, or the
    /// region), as grouping sets in one query. Rolled-up columns are NULL in those rows.
    /// Disclosure control sees the totals beside their breakdowns in one answer, so it
    /// suppresses secondary cells across them.
    pub totals: bool,
    /// The data's reference date: registers and the population are judged on it when the
    /// period ends later (a period still running, or one beyond the data).
    pub data_as_of: Option<NaiveDate>,
}

impl Request {
    /// Every area of `level` in `period`, no breakdown.
    pub fn new(level: Level, period: Period) -> Request {
        Request {
            level,
            period,
            parent: None,
            areas: Vec::new(),
            breakdown: Vec::new(),
            totals: false,
            data_as_of: None,
        }
    }

    /// Judge registers and the registered population on `date` when the period ends
    /// after it: the data's reference date, beyond which nothing is known.
    pub fn as_of(mut self, date: NaiveDate) -> Request {
        self.data_as_of = Some(date);
        self
    }

    /// The day registers and the registered population are judged on: the period's end,
    /// or the data's date if that is earlier.
    pub fn judged_on(&self) -> NaiveDate {
        match self.data_as_of {
            Some(date) => self.period.end().min(date),
            None => self.period.end(),
        }
    }

    /// With every total and the comparator (see [`Request::totals`]).
    pub fn with_totals(mut self) -> Request {
        self.totals = true;
        self
    }

    /// Only people whose practice lies within the parent area. Where the hierarchy does
    /// not nest (a PCN over two sub-ICBs) this gives part of an area: to report whole
    /// areas under a parent, list them in [`Request::areas`] (as the measures service does).
    pub fn within(mut self, level: Level, code: AreaCode) -> Request {
        self.parent = Some((level, code));
        self
    }

    pub fn by(mut self, dimension: Dimension) -> Request {
        self.breakdown.push(dimension);
        self
    }
}

/// The grouping sets of a totals query: for every subset of the breakdowns (all of them
/// first), the area with that subset and then, below the region level, the subset alone
/// (over every area asked for: the comparator). A standardised rate keeps its ESP band in
/// every set. One set alone (the region, no breakdown) is an ordinary GROUP BY.
fn grouping_sets(
    request: &Request,
    area: &str,
    breakdown: &[Dimension],
    on: &str,
    value_type: ValueType,
) -> Vec<String> {
    let mut subsets: Vec<Vec<String>> = Vec::new();
    // Subsets by bit mask, largest first: all breakdowns, …, none.
    let n = breakdown.len();
    for mask in (0..(1u32 << n)).rev() {
        subsets.push(
            breakdown
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << (n - 1 - i)) != 0)
                .map(|(_, d)| dimension_expr(*d, on))
                .collect(),
        );
    }
    let esp = (value_type == ValueType::DirectlyStandardisedRate).then(|| age_band_expr(on));
    let set = |area: Option<&str>, subset: &[String]| -> String {
        let columns: Vec<&str> = area
            .into_iter()
            .chain(subset.iter().map(String::as_str))
            .chain(esp.as_deref())
            .collect();
        format!("({})", columns.join(", "))
    };
    let mut sets = Vec::new();
    if request.level != Level::Region {
        sets.extend(subsets.iter().map(|s| set(Some(area), s)));
    }
    sets.extend(subsets.iter().map(|s| set(None, s)));
    sets
}

fn quoted_codes(codes: &[AreaCode]) -> String {
    // Codes are letters and digits only (AreaCode::new), so quoting cannot be escaped.
    codes
        .iter()
        .map(|c| format!("'{}'", c.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Measure {
    /// The one query answering `request`: columns `area_code`, one string column per
    /// breakdown (named by [`Dimension::name`]), `esp_age_band` for a directly
    /// standardised rate (the caller standardises over
    /// [`ESP2013_BANDS`](super::stats::ESP2013_BANDS); `unknown` ages
    /// are left out of a standardised rate), then `numerator` and `denominator`.
    ///
    /// The denominator counts distinct people in the registered population at the period
    /// end (at least the measure's minimum age); the numerator counts people, encounters
    /// or cost among *those* people, so numerator and denominator share one population and
    /// each area is where people are registered, not where they were treated. Areas come
    /// through `organisations`: people at a practice it does not list are left out, and at
    /// PCN level so are practices with no PCN.
    pub fn sql(&self, request: &Request) -> Result<String, QueryError> {
        self.check(request)?;
        let on = super::periods::sql_date(request.judged_on());
        let area = area_expr(request.level);

        let mut select = vec![format!("{area} AS area_code")];
        let mut group = Vec::new();
        if request.level != Level::Region {
            group.push(area.to_string());
        }
        let mut order = vec!["area_code".to_string()];
        for d in &request.breakdown {
            let expr = dimension_expr(*d, &on);
            select.push(format!("{expr} AS {}", d.name()));
            group.push(expr);
            order.push(d.name().to_string());
        }
        if self.value_type == ValueType::DirectlyStandardisedRate {
            let expr = age_band_expr(&on);
            select.push(format!("{expr} AS {ESP_AGE_BAND_COLUMN}"));
            group.push(expr);
            order.push(ESP_AGE_BAND_COLUMN.to_string());
        }
        let numerator = match self.definition {
            // People: a person counts once however many rows match.
            Definition::Register(_) | Definition::Multimorbidity { .. } | Definition::SocialCareUsers => {
                "count(DISTINCT n.person_id)"
            }
            // Events: every matching encounter counts.
            Definition::Activity { .. } => "count(n.person_id)",
            Definition::Cost { .. } => "sum(n.cost)",
        };
        select.push(format!("{numerator} AS numerator"));
        select.push("count(DISTINCT p.person_id) AS denominator".into());

        let mut filters = Vec::new();
        if request.level == Level::Pcn {
            filters.push("o.pcn IS NOT NULL".to_string());
        }
        if let Some((level, code)) = &request.parent
            && *level != Level::Region
        {
            filters.push(format!(
                "{} = {}",
                area_expr(*level),
                quoted_codes(std::slice::from_ref(code))
            ));
        }
        if !request.areas.is_empty() {
            filters.push(format!("{area} IN ({})", quoted_codes(&request.areas)));
        }

        let mut sql = format!(
            "SELECT {} FROM ({}) p JOIN organisations o ON o.ods_code = p.practice LEFT JOIN ({}) n ON n.person_id = p.person_id",
            select.join(", "),
            self.denominator_sql(&on),
            self.numerator_sql(&request.period, &on),
        );
        if !filters.is_empty() {
            sql += &format!(" WHERE {}", filters.join(" AND "));
        }
        let sets = grouping_sets(request, area, &request.breakdown, &on, self.value_type);
        if request.totals && sets.len() > 1 {
            sql += &format!(" GROUP BY GROUPING SETS ({})", sets.join(", "));
        } else if !group.is_empty() {
            sql += &format!(" GROUP BY {}", group.join(", "));
        }
        sql += &format!(" ORDER BY {}", order.join(", "));
        Ok(sql)
    }

    fn check(&self, request: &Request) -> Result<(), QueryError> {
        if request.breakdown.len() > MAX_BREAKDOWNS {
            return Err(QueryError::InvalidBreakdown(format!(
                "at most {MAX_BREAKDOWNS} breakdowns at once; got {}",
                request.breakdown.len()
            )));
        }
        for (i, d) in request.breakdown.iter().enumerate() {
            if request.breakdown[..i].contains(d) {
                return Err(QueryError::InvalidBreakdown(format!("{d} is asked for twice")));
            }
            if !self.dimensions().contains(d) {
                return Err(QueryError::InvalidBreakdown(format!(
                    "{} cannot be broken down by {d}",
                    self.id
                )));
            }
        }
        if let Some((parent, _)) = &request.parent
            && *parent <= request.level
        {
            return Err(QueryError::InvalidParent {
                level: request.level.name(),
                parent: parent.name(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measures::{catalogue, measure};

    fn period() -> Period {
        "2023/24".parse().expect("period")
    }

    #[test]
    fn a_register_by_pcn_within_an_icb_by_sex() {
        let m = measure("prevalence_diabetes").expect("measure");
        let request = Request::new(Level::Pcn, period())
            .within(Level::Icb, AreaCode::new("QP1").expect("code"))
            .by(Dimension::Sex);
        let sql = m.sql(&request).expect("sql");
        assert_eq!(
            sql,
            "SELECT o.pcn AS area_code, COALESCE(p.sex, 'unknown') AS sex, count(DISTINCT n.person_id) AS numerator, count(DISTINCT p.person_id) AS denominator \
             FROM (SELECT person_id, practice, birth_month, sex, ethnicity_group, imd_decile FROM population_on(DATE '2024-03-31') WHERE age_on(birth_month, DATE '2024-03-31') >= 17) p \
             JOIN organisations o ON o.ods_code = p.practice \
             LEFT JOIN (SELECT person_id FROM registers_on(DATE '2024-03-31') WHERE register = 'diabetes') n ON n.person_id = p.person_id \
             WHERE o.pcn IS NOT NULL AND o.icb = 'QP1' \
             GROUP BY o.pcn, COALESCE(p.sex, 'unknown') ORDER BY area_code, sex"
        );
    }

    #[test]
    fn the_region_is_one_area_and_a_dsr_is_grouped_by_esp_band() {
        let m = measure("emergency_admissions_dsr").expect("measure");
        let sql = m.sql(&Request::new(Level::Region, period())).expect("sql");
        assert!(sql.starts_with("SELECT 'ALL' AS area_code, COALESCE(age_band_5(age_on(p.birth_month, DATE '2024-03-31')), 'unknown') AS esp_age_band, count(n.person_id) AS numerator"), "{sql}");
        assert!(sql.contains("GROUP BY COALESCE(age_band_5("), "{sql}");
        assert!(sql.ends_with("ORDER BY area_code, esp_age_band"), "{sql}");
        assert!(
            sql.contains("encounter_type = 'emergency' AND start_date BETWEEN DATE '2023-04-01' AND DATE '2024-03-31'")
        );
    }

    #[test]
    fn totals_are_grouping_sets_of_every_subset_with_and_without_the_area() {
        let m = measure("prevalence_diabetes").expect("measure");
        let request = Request::new(Level::Pcn, period())
            .by(Dimension::Sex)
            .by(Dimension::ImdDecile)
            .with_totals();
        let sql = m.sql(&request).expect("sql");
        let sex = "COALESCE(p.sex, 'unknown')";
        let imd = "COALESCE(CAST(p.imd_decile AS VARCHAR), 'unknown')";
        let sets = format!(
            "GROUP BY GROUPING SETS ((o.pcn, {sex}, {imd}), (o.pcn, {sex}), (o.pcn, {imd}), (o.pcn), ({sex}, {imd}), ({sex}), ({imd}), ())"
        );
        assert!(sql.contains(&sets), "{sql}");
        // The region with no breakdown is one group: no GROUP BY at all.
        let region = m
            .sql(&Request::new(Level::Region, period()).with_totals())
            .expect("sql");
        assert!(!region.contains("GROUP BY"), "{region}");
        // A standardised rate keeps its ESP band in every set.
        let dsr = measure("emergency_admissions_dsr").expect("measure");
        let sql = dsr.sql(&Request::new(Level::Icb, period()).with_totals()).expect("sql");
        let band = "COALESCE(age_band_5(age_on(p.birth_month, DATE '2024-03-31')), 'unknown')";
        assert!(
            sql.contains(&format!("GROUPING SETS ((o.icb, {band}), ({band}))")),
            "{sql}"
        );
        let plain = dsr
            .sql(&Request::new(Level::Region, period()).with_totals())
            .expect("sql");
        assert!(plain.contains(&format!("GROUP BY {band}")), "{plain}");
    }

    #[test]
    fn a_period_running_past_the_data_is_judged_on_the_data_date() {
        let m = measure("prevalence_diabetes").expect("measure");
        let data = NaiveDate::from_ymd_opt(2023, 11, 30).expect("date");
        let sql = m.sql(&Request::new(Level::Icb, period()).as_of(data)).expect("sql");
        assert!(sql.contains("registers_on(DATE '2023-11-30')"), "{sql}");
        assert!(sql.contains("population_on(DATE '2023-11-30')"), "{sql}");
        // A period that ended before the data's date is judged on its own end.
        let later = NaiveDate::from_ymd_opt(2025, 1, 31).expect("date");
        let sql = m.sql(&Request::new(Level::Icb, period()).as_of(later)).expect("sql");
        assert!(sql.contains("registers_on(DATE '2024-03-31')"), "{sql}");
        // Activity still counts the whole period.
        let ae = measure("ae_attendances").expect("measure");
        let sql = ae.sql(&Request::new(Level::Icb, period()).as_of(data)).expect("sql");
        assert!(sql.contains("BETWEEN DATE '2023-04-01' AND DATE '2024-03-31'"), "{sql}");
    }

    #[test]
    fn requests_outside_the_rules_are_refused() {
        let m = measure("gp_contacts").expect("measure");
        let three = Request::new(Level::Practice, period())
            .by(Dimension::Sex)
            .by(Dimension::AgeBand)
            .by(Dimension::Ethnicity);
        assert!(matches!(m.sql(&three), Err(QueryError::InvalidBreakdown(_))));
        let twice = Request::new(Level::Practice, period())
            .by(Dimension::Sex)
            .by(Dimension::Sex);
        assert!(matches!(m.sql(&twice), Err(QueryError::InvalidBreakdown(_))));
        let below = Request::new(Level::Pcn, period()).within(Level::Practice, AreaCode::new("F00001").expect("code"));
        assert!(matches!(m.sql(&below), Err(QueryError::InvalidParent { .. })));
        let dsr = measure("emergency_admissions_dsr").expect("measure");
        let by_age = Request::new(Level::Icb, period()).by(Dimension::AgeBand);
        assert!(matches!(dsr.sql(&by_age), Err(QueryError::InvalidBreakdown(_))));
    }

    #[test]
    fn every_measure_generates_for_every_level_and_each_allowed_breakdown() {
        for m in catalogue() {
            for level in Level::ALL {
                let plain = m.sql(&Request::new(level, period())).expect("sql");
                assert!(
                    plain.contains(" AS numerator, count(DISTINCT p.person_id) AS denominator FROM "),
                    "{plain}"
                );
                for d in m.dimensions() {
                    let mut r = Request::new(level, period()).by(*d);
                    r.areas = vec![AreaCode::new("X90001").expect("code")];
                    let sql = m.sql(&r).expect("sql");
                    assert!(sql.contains(&format!(" AS {}", d.name())), "{sql}");
                }
            }
        }
    }
}
