//! Long-term conditions the generator gives people, calibrated so that register prevalence
//! lands near England's QOF figures, rising with age and deprivation, and clustered in the
//! same people (a shared frailty factor) so that multimorbidity looks real.

use super::vocab::AGE_PYRAMID;

/// One condition: its diagnosis cluster, optional resolved cluster, target prevalence
/// among registered people aged `min_age`+, and how risk rises with age.
#[derive(Debug, Clone, Copy)]
pub struct Condition {
    pub cluster: &'static str,
    pub resolved: Option<&'static str>,
    /// Share of diagnosed people who later get a resolved code.
    pub resolved_share: f64,
    pub target: f64,
    /// Register age floor (the denominator's too).
    pub min_age: u32,
    /// Risk is zero below this age.
    pub onset_age: u32,
    /// Log-risk slope per year of age above `onset_age` (capped at 85).
    pub age_slope: f64,
}

const fn c(cluster: &'static str, target: f64, min_age: u32, onset_age: u32, age_slope: f64) -> Condition {
    Condition {
        cluster,
        resolved: None,
        resolved_share: 0.0,
        target,
        min_age,
        onset_age,
        age_slope,
    }
}

/// QOF 2023/24 England prevalence, approximately (register / list size or age band).
pub const CONDITIONS: &[Condition] = &[
    c("DM_COD", 0.070, 17, 17, 0.040),
    Condition {
        resolved: Some("HYPRES_COD"),
        resolved_share: 0.08,
        ..c("HYP_COD", 0.140, 0, 25, 0.055)
    },
    c("AST_COD", 0.060, 6, 3, 0.000),
    Condition {
        resolved: Some("COPDRES_COD"),
        resolved_share: 0.04,
        ..c("COPD_COD", 0.020, 0, 35, 0.070)
    },
    c("CHD_COD", 0.030, 0, 35, 0.075),
    c("AFIB_COD", 0.020, 0, 40, 0.095),
    // CKD stage 3-5: codes from CKD_COD that are not stage 1-2 (see `ckd_stage_3_to_5`).
    c("CKD_COD", 0.040, 18, 30, 0.090),
    c("HF_COD", 0.010, 0, 40, 0.095),
    c("DEM_COD", 0.008, 0, 60, 0.150),
    c("DEPR_COD", 0.130, 18, 18, -0.004),
    c("STRK_COD", 0.018, 0, 30, 0.075),
    c("EPIL_COD", 0.008, 18, 1, 0.000),
    c("MH_COD", 0.0095, 0, 18, -0.005),
    c("LD_COD", 0.0055, 0, 0, -0.010),
    c("NDH_COD", 0.050, 18, 30, 0.035),
    c("OSTEO_COD", 0.009, 50, 50, 0.060),
    c("RARTH_COD", 0.008, 16, 25, 0.025),
    c("PAD_COD", 0.006, 0, 45, 0.070),
    c("PALCARE_COD", 0.005, 0, 40, 0.090),
];

pub fn relative_risk(condition: &Condition, age: u32) -> f64 {
    if age < condition.onset_age {
        return 0.0;
    }
    let years = f64::from(age.min(85) - condition.onset_age);
    (condition.age_slope * years).exp()
}

/// Deprivation multiplier: IMD decile 1 (most deprived) 1.35 down to decile 10 at 0.77.
pub fn deprivation_multiplier(decile: u8) -> f64 {
    1.35 - 0.065 * f64::from(decile.saturating_sub(1))
}

/// Mean deprivation multiplier over deciles 1-10 (practices are spread evenly).
fn mean_deprivation() -> f64 {
    (1..=10u8).map(deprivation_multiplier).sum::<f64>() / 10.0
}

/// The base probability that makes expected prevalence among people aged `min_age`+
/// equal the target (before capping), given risk shape, deprivation and a mean-one frailty.
pub fn base_probability(condition: &Condition) -> f64 {
    let (mut weight, mut risk) = (0.0, 0.0);
    for (i, (start, share)) in AGE_PYRAMID.iter().enumerate() {
        let end = AGE_PYRAMID.get(i + 1).map_or(100, |(s, _)| *s);
        for age in *start..end {
            if age >= condition.min_age {
                let w = share / f64::from(end - start);
                weight += w;
                risk += w * relative_risk(condition, age);
            }
        }
    }
    let mean_risk = if weight > 0.0 { risk / weight } else { 1.0 };
    let inflation = 1.0 / (1.0 - condition.resolved_share);
    condition.target * inflation / (mean_risk.max(1e-9) * mean_deprivation())
}
