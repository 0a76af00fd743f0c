//! QOF long-term-condition registers, as SQL over Poplar's canonical tables.
//!
//! The QOF rule: a person is on a register on a reference date when they have a code from
//! the diagnosis cluster on or before that date and, where the register has a resolved
//! cluster, no resolved code *after* their latest diagnosis code; and they are alive and
//! registered with a practice on that date and at least the register's minimum age.
//! CKD stages 3-5 has no resolved cluster: of the person's CKD codes (CKD_COD, stages 3-5,
//! and CKD1AND2_COD, stages 1-2), the latest must be a stage 3-5 code; a later stage 1-2
//! code takes them off the register.

/// One register's definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Register {
    /// Identifier used in view names (`register_<id>`) and in `register_membership`.
    pub id: &'static str,
    pub name: &'static str,
    pub diagnosis: &'static str,
    /// Codes that take a person off the register when later than the latest diagnosis.
    pub resolved: Option<&'static str>,
    /// Codes of the same condition that, when they are the person's latest, mean "not on
    /// this register" (CKD stages 1-2 for the stage 3-5 register).
    pub excluded_latest: Option<&'static str>,
    pub min_age: u32,
}

const fn register(id: &'static str, name: &'static str, diagnosis: &'static str, min_age: u32) -> Register {
    Register {
        id,
        name,
        diagnosis,
        resolved: None,
        excluded_latest: None,
        min_age,
    }
}

/// The registers Poplar serves.
pub const REGISTERS: &[Register] = &[
    register("diabetes", "Diabetes mellitus", "DM_COD", 17),
    Register {
        resolved: Some("HYPRES_COD"),
        ..register("hypertension", "Hypertension", "HYP_COD", 0)
    },
    register("asthma", "Asthma", "AST_COD", 6),
    Register {
        resolved: Some("COPDRES_COD"),
        ..register("copd", "Chronic obstructive pulmonary disease", "COPD_COD", 0)
    },
    register("chd", "Coronary heart disease", "CHD_COD", 0),
    register("atrial_fibrillation", "Atrial fibrillation", "AFIB_COD", 0),
    Register {
        excluded_latest: Some("CKD1AND2_COD"),
        ..register("ckd", "Chronic kidney disease stages 3-5", "CKD_COD", 18)
    },
    register("heart_failure", "Heart failure", "HF_COD", 0),
    register("dementia", "Dementia", "DEM_COD", 0),
    register("depression", "Depression", "DEPR_COD", 18),
    register("stroke_tia", "Stroke and transient ischaemic attack", "STRK_COD", 0),
];

/// Registration and life status on the reference date `{ref}`, one row per person:
/// their practice is the one whose registration covers the date.
pub fn registered_population_sql(reference: &str) -> String {
    format!(
        "SELECT person_id, registered_practice AS practice, birth_month, sex, ethnicity_group, lsoa, imd_decile \
         FROM patients \
         WHERE registered_practice IS NOT NULL \
           AND registration_start <= {reference} \
           AND (registration_end IS NULL OR registration_end >= {reference}) \
           AND (death_month IS NULL OR death_month > {reference})"
    )
}

/// Each person's latest code date per codelist, on or before `reference`: the one scan of
/// `clinical_events` every register is judged from. Columns `person_id, codelist, latest`.
pub fn latest_codes_sql(reference: &str) -> String {
    format!(
        "SELECT e.person_id, c.codelist, max(e.event_date) AS latest \
         FROM clinical_events e JOIN codelists c ON e.snomed_code = c.code \
         WHERE e.event_date <= {reference} GROUP BY e.person_id, c.codelist"
    )
}

/// Every register's members on `reference`, judged from `latest_codes` (see
/// [`latest_codes_sql`]): `person_id, practice, register, latest_code_date`.
pub fn membership_sql(latest_codes: &str, reference: &str) -> String {
    REGISTERS
        .iter()
        .map(|r| r.sql(latest_codes, reference))
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

impl Register {
    /// People on this register on `reference` (a SQL date expression), judged from
    /// `latest_codes` (see [`latest_codes_sql`]) and the registered population:
    /// `person_id, practice, register, latest_code_date`.
    ///
    /// "No resolved code after the latest diagnosis" is "latest resolved <= latest
    /// diagnosis"; for CKD 3-5, "the latest CKD code is stage 3-5" is "latest stage 1-2
    /// <= latest stage 3-5" (on the same day a stage 3-5 code is recorded).
    pub fn sql(&self, latest_codes: &str, reference: &str) -> String {
        let off = self.resolved.or(self.excluded_latest);
        let (join, condition) = match off {
            Some(cluster) => (
                format!("LEFT JOIN {latest_codes} x ON x.person_id = d.person_id AND x.codelist = '{cluster}'"),
                " AND (x.latest IS NULL OR x.latest <= d.latest)".to_string(),
            ),
            None => (String::new(), String::new()),
        };
        format!(
            "SELECT d.person_id, r.practice, '{id}' AS register, d.latest AS latest_code_date \
             FROM {latest_codes} d JOIN ({population}) r ON r.person_id = d.person_id {join} \
             WHERE d.codelist = '{diagnosis}' AND age_on(r.birth_month, {reference}) >= {min_age}{condition}",
            id = self.id,
            population = registered_population_sql(reference),
            diagnosis = self.diagnosis,
            min_age = self.min_age,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codelists::codelist;

    #[test]
    fn every_register_names_shipped_clusters() {
        for r in REGISTERS {
            for cluster in [Some(r.diagnosis), r.resolved, r.excluded_latest].into_iter().flatten() {
                assert!(codelist(cluster).is_ok(), "{} uses unknown {cluster}", r.id);
            }
        }
    }

    #[test]
    fn register_ids_are_unique_identifiers() {
        let mut ids: Vec<&str> = REGISTERS.iter().map(|r| r.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), REGISTERS.len());
        assert!(
            ids.iter()
                .all(|id| id.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        );
    }
}
