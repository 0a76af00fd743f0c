//! Between the wire (`poplar.measures.v1`) and the measure catalogue's own types. Every
//! enum the caller sends is checked here: an unspecified or unknown value is a bad
//! request, never a default.

use poplar_proto::measures::v1 as pb;
use poplar_queries::measures::{
    self, CiMethod, Dimension, Level, Measure, PeriodKind, Polarity, Significance, ValueType,
};

use crate::EngineError;

pub(super) fn level(value: i32) -> Result<Level, EngineError> {
    match pb::AreaLevel::try_from(value) {
        Ok(pb::AreaLevel::Practice) => Ok(Level::Practice),
        Ok(pb::AreaLevel::Pcn) => Ok(Level::Pcn),
        Ok(pb::AreaLevel::SubIcb) => Ok(Level::SubIcb),
        Ok(pb::AreaLevel::Icb) => Ok(Level::Icb),
        Ok(pb::AreaLevel::Region) => Ok(Level::Region),
        Ok(pb::AreaLevel::Unspecified) | Err(_) => Err(EngineError::InvalidRequest(
            "choose an area level: practice, PCN, sub-ICB, ICB or region".into(),
        )),
    }
}

pub(super) fn level_to_wire(level: Level) -> pb::AreaLevel {
    match level {
        Level::Practice => pb::AreaLevel::Practice,
        Level::Pcn => pb::AreaLevel::Pcn,
        Level::SubIcb => pb::AreaLevel::SubIcb,
        Level::Icb => pb::AreaLevel::Icb,
        Level::Region => pb::AreaLevel::Region,
    }
}

pub(super) fn dimension(value: i32) -> Result<Dimension, EngineError> {
    match pb::Dimension::try_from(value) {
        Ok(pb::Dimension::AgeBand) => Ok(Dimension::AgeBand),
        Ok(pb::Dimension::Sex) => Ok(Dimension::Sex),
        Ok(pb::Dimension::ImdDecile) => Ok(Dimension::ImdDecile),
        Ok(pb::Dimension::Ethnicity) => Ok(Dimension::Ethnicity),
        Ok(pb::Dimension::Unspecified) | Err(_) => Err(EngineError::InvalidRequest(
            "unknown breakdown: use age band, sex, IMD decile or ethnicity".into(),
        )),
    }
}

pub(super) fn dimension_to_wire(dimension: Dimension) -> pb::Dimension {
    match dimension {
        Dimension::AgeBand => pb::Dimension::AgeBand,
        Dimension::Sex => pb::Dimension::Sex,
        Dimension::ImdDecile => pb::Dimension::ImdDecile,
        Dimension::Ethnicity => pb::Dimension::Ethnicity,
    }
}

pub(super) fn period_kind(value: i32) -> Result<PeriodKind, EngineError> {
    match pb::PeriodType::try_from(value) {
        Ok(pb::PeriodType::Month) => Ok(PeriodKind::Month),
        Ok(pb::PeriodType::Quarter) => Ok(PeriodKind::Quarter),
        Ok(pb::PeriodType::FinancialYear) => Ok(PeriodKind::FinancialYear),
        Ok(pb::PeriodType::Unspecified) | Err(_) => Err(EngineError::InvalidRequest(
            "choose a period type: month, quarter or financial year".into(),
        )),
    }
}

pub(super) fn period_to_wire(period: &measures::Period) -> pb::Period {
    let kind = match period.kind() {
        PeriodKind::Month => pb::PeriodType::Month,
        PeriodKind::Quarter => pb::PeriodType::Quarter,
        PeriodKind::FinancialYear => pb::PeriodType::FinancialYear,
    };
    pb::Period {
        r#type: kind as i32,
        start: period.start().to_string(),
        end: period.end().to_string(),
        label: period.label(),
    }
}

pub(super) fn significance_to_wire(significance: Significance) -> pb::Significance {
    match significance {
        Significance::NotCompared => pb::Significance::NotCompared,
        Significance::Similar => pb::Significance::Similar,
        Significance::Higher => pb::Significance::Higher,
        Significance::Lower => pb::Significance::Lower,
        Significance::Better => pb::Significance::Better,
        Significance::Worse => pb::Significance::Worse,
    }
}

fn value_type_to_wire(value_type: ValueType) -> pb::ValueType {
    match value_type {
        ValueType::Proportion => pb::ValueType::Proportion,
        ValueType::CrudeRate => pb::ValueType::CrudeRate,
        ValueType::DirectlyStandardisedRate => pb::ValueType::Dsr,
        ValueType::Count => pb::ValueType::Count,
        ValueType::CostPerHead => pb::ValueType::CostPerHead,
    }
}

fn polarity_to_wire(polarity: Polarity) -> pb::Polarity {
    match polarity {
        Polarity::HighIsGood => pb::Polarity::HighIsGood,
        Polarity::LowIsGood => pb::Polarity::LowIsGood,
        Polarity::NoJudgement => pb::Polarity::NoJudgement,
    }
}

/// A measure's definition as the catalogue holds it.
pub(super) fn definition(measure: &Measure) -> pb::MeasureDefinition {
    pb::MeasureDefinition {
        id: measure.id.clone(),
        title: measure.title.clone(),
        description: measure.description.clone(),
        value_type: value_type_to_wire(measure.value_type) as i32,
        multiplier: measure.multiplier,
        polarity: polarity_to_wire(measure.polarity) as i32,
        unit: measure.unit.clone(),
        numerator_text: measure.numerator_text.clone(),
        denominator_text: measure.denominator_text.clone(),
        ci_method: match measure.ci_method {
            CiMethod::None => String::new(),
            method => method.name().to_string(),
        },
        codelists: measure.codelists.iter().map(|c| c.to_string()).collect(),
        levels: Level::ALL.into_iter().map(|l| level_to_wire(l) as i32).collect(),
        dimensions: measure
            .dimensions()
            .iter()
            .map(|d| dimension_to_wire(*d) as i32)
            .collect(),
        standard_population: measure.standard_population.unwrap_or_default().to_string(),
    }
}

/// A catalogue error caused by what the caller sent, as a bad request. The caller's text
/// is not echoed: an error message is no place for whatever a client typed.
pub(super) fn bad_request(error: poplar_queries::QueryError) -> EngineError {
    use poplar_queries::QueryError as Q;
    let message = match error {
        Q::UnknownMeasure(_) => "no measure has that id: ListMeasures lists them".to_string(),
        Q::InvalidPeriod(_) => {
            "invalid period: use a label such as 2024/25, 2024/25 Q4 or 2025-03, and a range that runs forwards"
                .to_string()
        }
        Q::InvalidAreaCode(_) => "an area code is 1-16 letters or digits".to_string(),
        Q::UnknownLevel(_) | Q::UnknownDimension(_) | Q::InvalidBreakdown(_) | Q::InvalidParent { .. } => {
            error.to_string()
        }
        // Not the caller's doing: a build defect.
        Q::MalformedCodelist { .. } | Q::UnknownCodelist(_) => return EngineError::Codelists(error),
    };
    EngineError::InvalidRequest(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_and_unknown_enums_are_bad_requests() {
        assert!(level(0).is_err());
        assert!(level(99).is_err());
        assert!(dimension(0).is_err());
        assert!(period_kind(-1).is_err());
        for l in Level::ALL {
            assert_eq!(level(level_to_wire(l) as i32).ok(), Some(l));
        }
        for d in Dimension::ALL {
            assert_eq!(dimension(dimension_to_wire(d) as i32).ok(), Some(d));
        }
    }

    #[test]
    fn a_bad_area_code_is_not_echoed() {
        let error = bad_request(poplar_queries::QueryError::InvalidAreaCode("<script>".into()));
        assert!(!error.to_string().contains("<script>"), "{error}");
        assert!(matches!(error, EngineError::InvalidRequest(_)));
    }
}
