//! Functions commissioners need in SQL: age on a date, five-year and NHS age bands, and
//! the NHS financial year.

use arrow::array::{Array, ArrayRef, AsArray, Int32Array, StringArray};
use arrow::datatypes::{DataType, Date32Type, Int32Type};
use chrono::Datelike;
use deltalake::datafusion::common::{Result, plan_err};
use deltalake::datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use poplar_loaders::dates::from_date32 as date_from_days;
use std::sync::Arc;

/// Whole years from a birth month (stored as its 1st day) to a date. The day of birth is
/// not kept, so within the birth month the birthday counts as passed.
pub fn age_on(birth_month: i32, on: i32) -> Option<i32> {
    let (b, d) = (date_from_days(birth_month)?, date_from_days(on)?);
    let mut age = d.year() - b.year();
    if d.month() < b.month() {
        age -= 1;
    }
    Some(age)
}

pub fn five_year_band(age: i32) -> String {
    match age {
        a if a < 0 => "unknown".into(),
        a if a >= 90 => "90+".into(),
        a => format!("{}-{}", a / 5 * 5, a / 5 * 5 + 4),
    }
}

/// The bands NHS England publishes registered-patient counts in.
pub fn nhs_band(age: i32) -> &'static str {
    match age {
        a if a < 0 => "unknown",
        0..=4 => "0-4",
        5..=14 => "5-14",
        15..=44 => "15-44",
        45..=64 => "45-64",
        65..=74 => "65-74",
        75..=84 => "75-84",
        _ => "85+",
    }
}

/// NHS financial years run 1 April to 31 March: 2025-04-01 is in "2025/26".
pub fn financial_year(days: i32) -> Option<String> {
    let d = date_from_days(days)?;
    let start = if d.month() >= 4 { d.year() } else { d.year() - 1 };
    Some(format!("{start}/{:02}", (start + 1) % 100))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct AgeOn(Signature);

impl ScalarUDFImpl for AgeOn {
    fn name(&self) -> &str {
        "age_on"
    }
    fn signature(&self) -> &Signature {
        &self.0
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int32)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let [birth, on] = args.args.as_slice() else {
            return plan_err!("age_on(birth_month, date) takes two dates");
        };
        let (birth, on) = (birth.to_array(n)?, on.to_array(n)?);
        let (birth, on) = (birth.as_primitive::<Date32Type>(), on.as_primitive::<Date32Type>());
        let out: Int32Array = (0..n)
            .map(|i| {
                if birth.is_null(i) || on.is_null(i) {
                    None
                } else {
                    age_on(birth.value(i), on.value(i))
                }
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Band {
    name: &'static str,
    signature: Signature,
}

impl ScalarUDFImpl for Band {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let [age] = args.args.as_slice() else {
            return plan_err!("{}(age) takes one integer", self.name);
        };
        let age = arrow::compute::cast(&age.to_array(n)?, &DataType::Int32)?;
        let age = age.as_primitive::<Int32Type>();
        let five = self.name == "age_band_5";
        let out: StringArray = (0..n)
            .map(|i| {
                (!age.is_null(i)).then(|| {
                    if five {
                        five_year_band(age.value(i))
                    } else {
                        nhs_band(age.value(i)).to_string()
                    }
                })
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct FinancialYear(Signature);

impl ScalarUDFImpl for FinancialYear {
    fn name(&self) -> &str {
        "financial_year"
    }
    fn signature(&self) -> &Signature {
        &self.0
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let [d] = args.args.as_slice() else {
            return plan_err!("financial_year(date) takes one date");
        };
        let d = d.to_array(n)?;
        let d = d.as_primitive::<Date32Type>();
        let out: StringArray = (0..n)
            .map(|i| if d.is_null(i) { None } else { financial_year(d.value(i)) })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
    }
}

/// Every Poplar UDF, for registration in a session.
pub fn all() -> Vec<ScalarUDF> {
    let int = || Signature::uniform(1, vec![DataType::Int32, DataType::Int64], Volatility::Immutable);
    vec![
        ScalarUDF::new_from_impl(AgeOn(Signature::exact(
            vec![DataType::Date32, DataType::Date32],
            Volatility::Immutable,
        ))),
        ScalarUDF::new_from_impl(Band {
            name: "age_band_5",
            signature: int(),
        }),
        ScalarUDF::new_from_impl(Band {
            name: "nhs_age_band",
            signature: int(),
        }),
        ScalarUDF::new_from_impl(FinancialYear(Signature::exact(
            vec![DataType::Date32],
            Volatility::Immutable,
        ))),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn days(s: &str) -> i32 {
        poplar_loaders::dates::date32(chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date"))
    }

    #[test]
    fn age_counts_whole_years_from_the_birth_month() {
        assert_eq!(age_on(days("1950-06-01"), days("2026-05-31")), Some(75));
        assert_eq!(age_on(days("1950-06-01"), days("2026-06-01")), Some(76));
        assert_eq!(age_on(days("1950-06-01"), days("2026-06-30")), Some(76));
        assert_eq!(age_on(days("2026-01-01"), days("2026-09-30")), Some(0));
    }

    #[test]
    fn bands_and_financial_years() {
        assert_eq!(five_year_band(0), "0-4");
        assert_eq!(five_year_band(17), "15-19");
        assert_eq!(five_year_band(95), "90+");
        assert_eq!(nhs_band(14), "5-14");
        assert_eq!(nhs_band(85), "85+");
        assert_eq!(financial_year(days("2025-04-01")).as_deref(), Some("2025/26"));
        assert_eq!(financial_year(days("2026-03-31")).as_deref(), Some("2025/26"));
        assert_eq!(financial_year(days("1999-12-31")).as_deref(), Some("1999/00"));
    }
}
