//! Postcode → LSOA → IMD decile, from files in the published layouts:
//! - ONS "Postcode to OA, LSOA, MSOA and LAD (best fit)" lookup (2011 geography):
//!   `pcd7,pcd8,pcds,dointr,doterm,usertype,oa11cd,lsoa11cd,msoa11cd,ladcd,lsoa11nm,msoa11nm,ladnm,ladnmw`
//! - MHCLG English Indices of Deprivation 2019, File 1:
//!   `LSOA code (2011),LSOA name (2011),Local Authority District code (2019),
//!    Local Authority District name (2019),Index of Multiple Deprivation (IMD) Rank,
//!    Index of Multiple Deprivation (IMD) Decile`
//!
//! The full postcode is used only as a key here and is dropped; only LSOA and decile land.

use std::collections::HashMap;
use std::path::Path;

use crate::LoaderError;

pub const ONS_POSTCODE_HEADER: [&str; 14] = [
    "pcd7", "pcd8", "pcds", "dointr", "doterm", "usertype", "oa11cd", "lsoa11cd", "msoa11cd", "ladcd", "lsoa11nm",
    "msoa11nm", "ladnm", "ladnmw",
];

pub const IMD_HEADER: [&str; 6] = [
    "LSOA code (2011)",
    "LSOA name (2011)",
    "Local Authority District code (2019)",
    "Local Authority District name (2019)",
    "Index of Multiple Deprivation (IMD) Rank",
    "Index of Multiple Deprivation (IMD) Decile",
];

/// The geography a postcode resolves to (borrowed from the lookup: it is copied only
/// into the row buffer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Area<'a> {
    pub lsoa: &'a str,
    pub imd_decile: Option<i32>,
}

#[derive(Debug, Default)]
pub struct PostcodeLookup {
    lsoa_by_postcode: HashMap<String, String>,
    decile_by_lsoa: HashMap<String, i32>,
}

/// Postcodes compare without spaces and in upper case (`ab1 2cd` = `AB12CD`).
pub fn postcode_key(raw: &str) -> String {
    raw.chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

fn check_header(path: &Path, found: &csv::StringRecord, want: &[&str]) -> Result<(), LoaderError> {
    let found: Vec<&str> = found.iter().map(str::trim).collect();
    if found != want {
        return Err(LoaderError::Lookup {
            path: path.display().to_string(),
            reason: format!("unexpected header: expected {}", want.join(",")),
        });
    }
    Ok(())
}

impl PostcodeLookup {
    pub fn from_files(postcodes: &Path, imd: &Path) -> Result<Self, LoaderError> {
        let mut lookup = Self::default();
        let bad = |path: &Path, reason: String| LoaderError::Lookup {
            path: path.display().to_string(),
            reason,
        };

        let mut reader = csv::Reader::from_path(postcodes).map_err(|e| bad(postcodes, e.to_string()))?;
        check_header(
            postcodes,
            reader.headers().map_err(|e| bad(postcodes, e.to_string()))?,
            &ONS_POSTCODE_HEADER,
        )?;
        for (i, row) in reader.records().enumerate() {
            let row = row.map_err(|e| bad(postcodes, format!("line {}: {e}", i + 2)))?;
            let (Some(pcds), Some(lsoa)) = (row.get(2), row.get(7)) else {
                return Err(bad(postcodes, format!("line {}: missing pcds or lsoa11cd", i + 2)));
            };
            if !lsoa.is_empty() {
                lookup.lsoa_by_postcode.insert(postcode_key(pcds), lsoa.to_string());
            }
        }

        let mut reader = csv::Reader::from_path(imd).map_err(|e| bad(imd, e.to_string()))?;
        check_header(imd, reader.headers().map_err(|e| bad(imd, e.to_string()))?, &IMD_HEADER)?;
        for (i, row) in reader.records().enumerate() {
            let row = row.map_err(|e| bad(imd, format!("line {}: {e}", i + 2)))?;
            let lsoa = row.get(0).unwrap_or_default();
            let decile = row
                .get(5)
                .and_then(|d| d.trim().parse::<i32>().ok())
                .filter(|d| (1..=10).contains(d))
                .ok_or_else(|| bad(imd, format!("line {}: IMD decile is not 1-10", i + 2)))?;
            lookup.decile_by_lsoa.insert(lsoa.to_string(), decile);
        }
        Ok(lookup)
    }

    pub fn area(&self, postcode: &str) -> Option<Area<'_>> {
        let lsoa = self.lsoa_by_postcode.get(&postcode_key(postcode))?;
        Some(Area {
            lsoa,
            imd_decile: self.decile_by_lsoa.get(lsoa).copied(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn resolves_postcodes_in_any_spacing_and_rejects_wrong_headers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pc = dir.path().join("pc.csv");
        let imd = dir.path().join("imd.csv");
        let mut f = std::fs::File::create(&pc).expect("create");
        writeln!(f, "{}", ONS_POSTCODE_HEADER.join(",")).expect("write");
        writeln!(
            f,
            "PL1 1AA,PL1  1AA,PL1 1AA,201001,,0,E00000001,E01000001,E02000001,E08000001,Area 001A,Area 001,Area,"
        )
        .expect("write");
        let mut g = std::fs::File::create(&imd).expect("create");
        writeln!(g, "\"{}\"", IMD_HEADER.join("\",\"")).expect("write");
        writeln!(g, "E01000001,Area 001A,E08000001,Area,1234,3").expect("write");
        let lookup = PostcodeLookup::from_files(&pc, &imd).expect("loads");
        let area = lookup.area("pl11aa").expect("found");
        assert_eq!(area.lsoa, "E01000001");
        assert_eq!(area.imd_decile, Some(3));
        assert!(lookup.area("ZZ9 9ZZ").is_none());

        std::fs::write(&imd, "lsoa,decile\nE01000001,3\n").expect("write");
        let err = PostcodeLookup::from_files(&pc, &imd).expect_err("bad header");
        assert!(err.to_string().contains("unexpected header"), "{err}");
    }
}
