//! Every identifier in a synthetic region's input, collected so that tests can assert
//! that none of them lands (and pick real NHS numbers for opt-out lists).

use poplar_loaders::synth::SynthOutput;
use std::collections::HashSet;

/// Every identifier in the input, as a test can find them.
pub struct Identifiers {
    pub nhs_numbers: HashSet<String>,
    pub words: HashSet<String>,
    pub phrases: HashSet<String>,
    /// All phrases but dates at once (dates of birth are also ordinary event dates;
    /// day-precision birth dates are checked separately: birth_month is always the 1st).
    pub phrase_matcher: Option<aho_corasick::AhoCorasick>,
}

pub fn input_identifiers(region: &SynthOutput) -> Identifiers {
    let mut ids = Identifiers {
        nhs_numbers: HashSet::new(),
        words: HashSet::new(),
        phrases: HashSet::new(),
        phrase_matcher: None,
    };
    for source in std::fs::read_dir(&region.deliveries).expect("dir") {
        for delivery in std::fs::read_dir(source.expect("e").path()).expect("dir") {
            let dir = delivery.expect("e").path();
            if let Ok(text) = std::fs::read_to_string(dir.join("patients.csv")) {
                let mut reader = csv::Reader::from_reader(text.as_bytes());
                for row in reader.records() {
                    let row = row.expect("row");
                    ids.nhs_numbers.insert(row[0].replace(' ', ""));
                    ids.words.insert(row[1].to_string());
                    ids.words.insert(row[2].to_string());
                    ids.phrases.insert(row[6].to_string()); // address line
                    ids.phrases.insert(row[8].to_string()); // postcode
                    ids.phrases.insert(row[8].replace(' ', ""));
                    ids.phrases.insert(row[9].to_string()); // phone
                    ids.phrases.insert(row[3].to_string()); // full date of birth
                }
            }
            if let Ok(text) = std::fs::read_to_string(dir.join("Patient.ndjson")) {
                for line in text.lines() {
                    let v: serde_json::Value = serde_json::from_str(line).expect("json");
                    ids.nhs_numbers
                        .insert(v["identifier"][0]["value"].as_str().expect("nhs").replace(' ', ""));
                    ids.words
                        .insert(v["name"][0]["family"].as_str().expect("family").to_string());
                    ids.words
                        .insert(v["name"][0]["given"][0].as_str().expect("given").to_string());
                    ids.phrases
                        .insert(v["address"][0]["line"][0].as_str().expect("line").to_string());
                    let postcode = v["address"][0]["postalCode"].as_str().expect("postcode");
                    ids.phrases.insert(postcode.to_string());
                    ids.phrases.insert(postcode.replace(' ', ""));
                    ids.phrases
                        .insert(v["telecom"][0]["value"].as_str().expect("phone").to_string());
                    ids.phrases.insert(v["birthDate"].as_str().expect("dob").to_string());
                }
            }
        }
    }
    let searchable: Vec<&String> = ids
        .phrases
        .iter()
        .filter(|p| !(p.len() == 10 && p.as_bytes()[4] == b'-'))
        .collect();
    ids.phrase_matcher = Some(aho_corasick::AhoCorasick::new(searchable).expect("automaton"));
    ids
}
