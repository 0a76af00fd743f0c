//! The QOF SNOMED CT clusters Poplar ships (copied from NHS England's primary care
//! domain reference sets; see `queries/codelists/README.md` for versions).

use crate::QueryError;

/// One shipped cluster: its QOF name, what it marks, and its CSV text.
#[derive(Debug, Clone, Copy)]
pub struct Cluster {
    /// QOF cluster name, e.g. `DM_COD`.
    pub name: &'static str,
    /// What a code in this cluster records.
    pub description: &'static str,
    csv: &'static str,
}

macro_rules! cluster {
    ($name:literal, $file:literal, $description:literal) => {
        Cluster {
            name: $name,
            description: $description,
            csv: include_str!(concat!("../codelists/", $file)),
        }
    };
}

/// Every cluster Poplar ships, in a stable order.
pub const CLUSTERS: &[Cluster] = &[
    cluster!("AFIB_COD", "afib_cod.csv", "atrial fibrillation diagnosis"),
    cluster!("AST_COD", "ast_cod.csv", "asthma diagnosis"),
    cluster!("CHD_COD", "chd_cod.csv", "coronary heart disease diagnosis"),
    cluster!(
        "CKD_COD",
        "ckd_cod.csv",
        "chronic kidney disease diagnosis (stages 1-5)"
    ),
    cluster!("CKD1AND2_COD", "ckd1and2_cod.csv", "chronic kidney disease stage 1-2"),
    cluster!("COPD_COD", "copd_cod.csv", "COPD diagnosis"),
    cluster!("COPDRES_COD", "copdres_cod.csv", "COPD resolved"),
    cluster!("DEM_COD", "dem_cod.csv", "dementia diagnosis"),
    cluster!("DEPR_COD", "depr_cod.csv", "depression diagnosis"),
    cluster!("DM_COD", "dm_cod.csv", "diabetes diagnosis"),
    cluster!("EPIL_COD", "epil_cod.csv", "epilepsy diagnosis"),
    cluster!("HF_COD", "hf_cod.csv", "heart failure diagnosis"),
    cluster!("HYP_COD", "hyp_cod.csv", "hypertension diagnosis"),
    cluster!("HYPRES_COD", "hypres_cod.csv", "hypertension resolved"),
    cluster!("LD_COD", "ld_cod.csv", "learning disability"),
    cluster!("MH_COD", "mh_cod.csv", "serious mental illness diagnosis"),
    cluster!("NDH_COD", "ndh_cod.csv", "non-diabetic hyperglycaemia"),
    cluster!("OSTEO_COD", "osteo_cod.csv", "osteoporosis diagnosis"),
    cluster!("PAD_COD", "pad_cod.csv", "peripheral arterial disease diagnosis"),
    cluster!("PALCARE_COD", "palcare_cod.csv", "palliative care"),
    cluster!("RARTH_COD", "rarth_cod.csv", "rheumatoid arthritis diagnosis"),
    cluster!("SBP_COD", "sbp_cod.csv", "systolic blood pressure (numeric value)"),
    cluster!("STRK_COD", "strk_cod.csv", "stroke and TIA diagnosis"),
];

/// One SNOMED CT concept in a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code {
    /// SNOMED CT concept id (always fits 64 bits).
    pub id: u64,
    pub term: String,
}

/// A parsed cluster.
#[derive(Debug, Clone)]
pub struct Codelist {
    pub cluster: &'static str,
    pub description: &'static str,
    pub codes: Vec<Code>,
}

impl Codelist {
    pub fn contains(&self, id: u64) -> bool {
        self.codes.iter().any(|c| c.id == id)
    }
}

impl Cluster {
    /// Parse this cluster's shipped `code,term` CSV.
    pub fn parse(&self) -> Result<Codelist, QueryError> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(self.csv.as_bytes());
        let mut codes = Vec::new();
        for (index, record) in reader.records().enumerate() {
            let line = index + 2;
            let malformed = |reason: String| QueryError::MalformedCodelist {
                cluster: self.name,
                line,
                reason,
            };
            let record = record.map_err(|e| malformed(e.to_string()))?;
            let id = record
                .get(0)
                .ok_or_else(|| malformed("missing code".into()))?
                .trim()
                .parse::<u64>()
                .map_err(|e| malformed(format!("code is not a SNOMED CT id: {e}")))?;
            let term = record.get(1).unwrap_or_default().trim().to_string();
            codes.push(Code { id, term });
        }
        Ok(Codelist {
            cluster: self.name,
            description: self.description,
            codes,
        })
    }
}

/// Parse one shipped cluster by its QOF name (case-insensitive).
pub fn codelist(name: &str) -> Result<Codelist, QueryError> {
    CLUSTERS
        .iter()
        .find(|c| c.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| QueryError::UnknownCodelist(name.to_string()))?
        .parse()
}

/// Parse every shipped cluster.
pub fn all_codelists() -> Result<Vec<Codelist>, QueryError> {
    CLUSTERS.iter().map(Cluster::parse).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_cluster_parses_and_is_non_empty() {
        let lists = all_codelists().expect("shipped codelists parse");
        assert_eq!(lists.len(), CLUSTERS.len());
        for list in &lists {
            assert!(!list.codes.is_empty(), "{} is empty", list.cluster);
        }
    }

    #[test]
    fn lookup_is_case_insensitive_and_rejects_unknown_names() {
        let dm = codelist("dm_cod").expect("DM_COD ships");
        assert!(dm.contains(111552007));
        assert!(matches!(codelist("NOPE_COD"), Err(QueryError::UnknownCodelist(_))));
    }

    #[test]
    fn resolved_clusters_do_not_overlap_their_diagnosis_clusters() {
        for (diagnosis, resolved) in [("HYP_COD", "HYPRES_COD"), ("COPD_COD", "COPDRES_COD")] {
            let d = codelist(diagnosis).expect("ships");
            let r = codelist(resolved).expect("ships");
            assert!(r.codes.iter().all(|c| !d.contains(c.id)));
        }
    }
}
