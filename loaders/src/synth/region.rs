//! The synthetic region's organisations and geography: the source registry, GP practices
//! with their catchment LSOAs, postcodes, and the ONS/MHCLG lookup files.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::fmt::Write as _;

use super::SynthConfig;
use super::vocab::{INWARD_LETTERS, TOWNS};
use crate::lookup::{IMD_HEADER, ONS_POSTCODE_HEADER};
use crate::registry::{FeedFormat, NHS_NUMBER_SYSTEM, OrgType, Registry, Source};

/// How many organisations of each kind the region has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrgMix {
    pub gp_practices: usize,
    pub acute_trusts: usize,
    pub mental_health_trusts: usize,
    pub community_providers: usize,
    pub social_care: usize,
}

impl Default for OrgMix {
    fn default() -> Self {
        Self {
            gp_practices: 320,
            acute_trusts: 12,
            mental_health_trusts: 6,
            community_providers: 12,
            social_care: 50,
        }
    }
}

impl OrgMix {
    pub fn total(&self) -> usize {
        self.gp_practices + self.acute_trusts + self.mental_health_trusts + self.community_providers + self.social_care
    }
}

pub struct Lsoa {
    pub code: String,
    pub decile: u8,
    pub postcodes: Vec<String>,
}

pub struct Practice {
    /// Index into `Region::registry.sources`.
    pub source: usize,
    /// Relative list size.
    pub weight: f64,
    pub lsoas: Vec<usize>,
}

pub struct Region {
    pub registry: Registry,
    pub practices: Vec<Practice>,
    /// Cumulative practice weights, for sampling a practice.
    pub practice_cumulative: Vec<f64>,
    pub acute: Vec<usize>,
    pub mental_health: Vec<usize>,
    pub community: Vec<usize>,
    pub social_care: Vec<usize>,
    pub lsoas: Vec<Lsoa>,
}

const LSOAS_PER_PRACTICE: usize = 4;
const POSTCODES_PER_LSOA: usize = 8;
const SUB_ICBS: [(&str, &str); 4] = [("9S1", "QP1"), ("9S2", "QP1"), ("9S3", "QP2"), ("9S4", "QP2")];

/// A, B, …, Z, AA, AB, … (unique for any count).
fn letters(i: usize) -> String {
    if i < 26 {
        letter(i).to_string()
    } else {
        format!("{}{}", letters(i / 26 - 1), letter(i % 26))
    }
}

fn letter(i: usize) -> char {
    (b'A' + (i % 26) as u8) as char
}

impl Region {
    pub fn build(config: &SynthConfig) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x5EED_0F4E_610A);
        let mix = config.mix;
        let mut sources = Vec::with_capacity(mix.total());
        let mut practices = Vec::new();
        let mut lsoas = Vec::new();
        let sub_icb_of = |i: usize, n: usize| SUB_ICBS[(i * SUB_ICBS.len()) / n.max(1)];

        for i in 0..mix.gp_practices {
            let (sub_icb, icb) = sub_icb_of(i, mix.gp_practices);
            let pcn = i / 8;
            let fhir = rng.random_bool(config.fhir_share);
            sources.push(Source {
                ods: format!("X9{:04}", i + 1),
                name: format!(
                    "{} {} Surgery",
                    TOWNS[i % TOWNS.len()],
                    ["Medical Centre", "Health Centre", "Family Practice", "Group Practice"][i % 4]
                )
                .replace(" Surgery", ""),
                org_type: OrgType::GpPractice,
                format: if fhir { FeedFormat::FhirNdjson } else { FeedFormat::Csv },
                identifier_system: NHS_NUMBER_SYSTEM.into(),
                pcn: Some(format!("U9{:04}", pcn + 1)),
                pcn_name: Some(format!("{} PCN {}", TOWNS[pcn % TOWNS.len()], pcn + 1)),
                sub_icb: sub_icb.into(),
                icb: icb.into(),
            });
            // Each practice draws its list from a few LSOAs of similar deprivation.
            let centre: f64 = rng.random_range(1.0..10.99);
            let mut own = Vec::new();
            for _ in 0..LSOAS_PER_PRACTICE {
                let n = lsoas.len();
                let decile = (centre + gaussian(&mut rng) * 1.2).round().clamp(1.0, 10.0) as u8;
                let district = 1 + n / 40;
                let postcodes = (0..POSTCODES_PER_LSOA)
                    .map(|k| {
                        let within = (n % 40) * POSTCODES_PER_LSOA + k;
                        let l = INWARD_LETTERS.len();
                        format!(
                            "QP{district} {}{}{}",
                            within / (l * l) % 10,
                            INWARD_LETTERS[(within / l) % l] as char,
                            INWARD_LETTERS[within % l] as char
                        )
                    })
                    .collect();
                lsoas.push(Lsoa {
                    code: format!("E01{:06}", 900_001 + n),
                    decile,
                    postcodes,
                });
                own.push(n);
            }
            let weight = (gaussian(&mut rng) * 0.45).exp();
            practices.push(Practice {
                source: sources.len() - 1,
                weight,
                lsoas: own,
            });
        }
        let push = |sources: &mut Vec<Source>, kind: OrgType, n: usize, prefix: &str, label: &str| -> Vec<usize> {
            (0..n)
                .map(|i| {
                    let (sub_icb, icb) = sub_icb_of(i, n);
                    let fhir = kind == OrgType::CommunityProvider && i % 2 == 0;
                    sources.push(Source {
                        ods: if kind == OrgType::SocialCare {
                            format!("{prefix}{:02}", i + 1)
                        } else {
                            format!("{prefix}{}", letters(i))
                        },
                        name: format!("{} {label}", TOWNS[i % TOWNS.len()]),
                        org_type: kind,
                        format: if fhir { FeedFormat::FhirNdjson } else { FeedFormat::Csv },
                        identifier_system: NHS_NUMBER_SYSTEM.into(),
                        pcn: None,
                        pcn_name: None,
                        sub_icb: sub_icb.into(),
                        icb: icb.into(),
                    });
                    sources.len() - 1
                })
                .collect()
        };
        let acute = push(
            &mut sources,
            OrgType::AcuteTrust,
            mix.acute_trusts,
            "T9",
            "Hospitals NHS Trust",
        );
        let mental_health = push(
            &mut sources,
            OrgType::MentalHealthTrust,
            mix.mental_health_trusts,
            "M9",
            "Mental Health NHS Trust",
        );
        let community = push(
            &mut sources,
            OrgType::CommunityProvider,
            mix.community_providers,
            "C9",
            "Community Health Services",
        );
        let social_care = push(
            &mut sources,
            OrgType::SocialCare,
            mix.social_care,
            "LA9",
            "Council Adult Social Care",
        );
        let mut cumulative = Vec::with_capacity(practices.len());
        let mut total = 0.0;
        for p in &practices {
            total += p.weight;
            cumulative.push(total);
        }
        Region {
            registry: Registry {
                region: format!("Poplar synthetic region (seed {})", config.seed),
                sources,
            },
            practices,
            practice_cumulative: cumulative,
            acute,
            mental_health,
            community,
            social_care,
            lsoas,
        }
    }

    pub fn sample_practice(&self, rng: &mut impl Rng) -> usize {
        let total = self.practice_cumulative.last().copied().unwrap_or(1.0);
        let x = rng.random_range(0.0..total);
        self.practice_cumulative
            .partition_point(|c| *c <= x)
            .min(self.practices.len().saturating_sub(1))
    }

    /// ONS postcode → OA/LSOA/MSOA/LAD best-fit lookup, in its published column layout.
    pub fn postcode_lookup_csv(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}", ONS_POSTCODE_HEADER.join(","));
        for (n, lsoa) in self.lsoas.iter().enumerate() {
            let lad = n / 160;
            for (k, pcds) in lsoa.postcodes.iter().enumerate() {
                let (outward, inward) = pcds.split_once(' ').unwrap_or((pcds, ""));
                let pcd7 = format!("{outward:<4}{inward}");
                let pcd8 = format!("{outward:<5}{inward}");
                let _ = writeln!(
                    out,
                    "{pcd7},{pcd8},{pcds},199801,,0,E00{:06},{},E02{:06},E08{:06},Poplar {:03}{},Poplar {:03},{},",
                    900_001 + n * POSTCODES_PER_LSOA + k,
                    lsoa.code,
                    900_001 + n / 5,
                    900_001 + lad,
                    n / 5 + 1,
                    letter(n % 5),
                    n / 5 + 1,
                    TOWNS[lad % TOWNS.len()],
                );
            }
        }
        out
    }

    /// MHCLG IoD2019 File 1 layout: LSOA, LAD, IMD rank and decile.
    pub fn imd_csv(&self) -> String {
        let mut out = String::new();
        let quoted: Vec<String> = IMD_HEADER.iter().map(|h| format!("\"{h}\"")).collect();
        let _ = writeln!(out, "{}", quoted.join(","));
        for (n, lsoa) in self.lsoas.iter().enumerate() {
            let lad = n / 160;
            // England has 32,844 LSOAs; each decile spans about 3,284 ranks.
            let rank = (u32::from(lsoa.decile) - 1) * 3284 + 1 + (n as u32 * 37) % 3284;
            let _ = writeln!(
                out,
                "{},Poplar {:03}{},E08{:06},{},{rank},{}",
                lsoa.code,
                n / 5 + 1,
                letter(n % 5),
                900_001 + lad,
                TOWNS[lad % TOWNS.len()],
                lsoa.decile
            );
        }
        out
    }
}

/// A standard normal draw (Box–Muller).
pub fn gaussian(rng: &mut impl Rng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random_range(0.0..1.0);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}
