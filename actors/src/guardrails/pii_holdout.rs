//! The PII scanner on a second labelled set, written after the rules were fixed against
//! `pii_eval.rs` and run once as a held-out measurement (BENCHMARKS.md): phone numbers of
//! twelve other regions typed by hand in the ways people write them (not libphonenumber's
//! example numbers, not its formatter's spellings: German slashes, Dutch dashes, `tel:`
//! links, US parentheses, extensions, `0044`), US SSNs after other context words, and
//! hard negatives of other kinds (flight numbers, CVEs, RFCs, screen sizes, patents,
//! tax ids of firms, coordinates, timestamps). A value counts only when `phonenumber`
//! says the number is valid for its region; the others are listed apart.

use std::collections::HashMap;

use super::pii::{Action, Entity, Scanner};
use super::pii_eval::{measure, Measured};

const REGIONS: &[&str] = &["PL", "SE", "CH", "BE", "AT", "IE", "ZA", "KR", "SG", "NZ", "PT", "AR"];

/// (text, the number as written, its region) — phones
const PHONES: &[(&str, &str, &str)] = &[
    ("Zadzwoń do mnie: {}", "+48 512 345 678", "PL"),
    ("biuro {} (pon-pt)", "22 123 45 67", "PL"),
    ("Ring mig på {} i kväll", "070-123 45 67", "SE"),
    ("växel: {}", "+46 8 123 456 78", "SE"),
    ("Rufen Sie uns an: {}", "+41 44 668 18 00", "CH"),
    ("Tel. {} (Zentrale)", "044 668 18 00", "CH"),
    ("mobile suisse {}", "+41 (0)79 123 45 67", "CH"),
    ("Bel me op {}", "0470 12 34 56", "BE"),
    ("secrétariat: {}", "+32 2 555 12 12", "BE"),
    ("erreichbar unter {}", "0664 1234567", "AT"),
    ("Büro Wien {}", "+43 1 5336633", "AT"),
    ("Text me on {} please", "087 123 4567", "IE"),
    ("Dublin office: {}", "+353 1 234 5678", "IE"),
    ("WhatsApp {}", "082 123 4567", "ZA"),
    ("Cape Town desk {}", "+27 21 123 4567", "ZA"),
    ("연락처 {}", "010-1234-5678", "KR"),
    ("Seoul office {}", "+82 2-312-3456", "KR"),
    ("call {} anytime", "9123 4567", "SG"),
    ("SG hotline: {}", "+65 6123 4567", "SG"),
    ("Kia ora, ring {}", "021 123 4567", "NZ"),
    ("Auckland: {}", "+64 9 123 4567", "NZ"),
    ("Liga-me para {}", "912 345 678", "PT"),
    ("Lisboa {}", "+351 21 123 4567", "PT"),
    ("Llamame al {}", "+54 9 11 2345-6789", "AR"),
    ("oficina {}", "011 4123-4567", "AR"),
    ("US desk (ext. 204): {}", "+1 (202) 555-0143", "US"),
    ("click tel:{} to call", "+12025550143", "US"),
    ("Phone {} x204", "202.555.0143", "US"),
    ("UK line {}", "0044 20 7946 0958", "GB"),
    ("Berlin {}", "030/12345678", "DE"),
    ("Rotterdam {}", "010-1234567", "NL"),
    ("Paris: {}", "01.42.68.53.00", "FR"),
];

const SSNS: &[&str] = &[
    "SSN no. 219-09-9999 on file",
    "social sec # 078 05 1120",
    "tax id (SSN): 536228472",
    "Her Social Security Number is 457-55-5462.",
    "ssn=123-45-6780&name=jo",
    "SS# 301-24-1133",
];

const HARD_NEGATIVES: &[&str] = &[
    "flight LH 2034 departs at 07:45",
    "fixed in CVE-2024-3094",
    "see RFC 9110, section 15.5.20",
    "screen 1920x1080 at 144 Hz",
    "patent US 10,123,456 B2",
    "GSTIN 22AAAAA0000A1Z5",
    "VAT DE 129273398",
    "position -33.8688, 151.2093",
    "logged at 2024-05-01T14:30:22Z",
    "track 12 of 15, 3:45 long",
    "Dewey 004.678 and LoC QA76.9",
    "years 1999-2004 and 2010-2015",
    "balance 12 345 678,90 EUR",
    "run 4 of 1024, epoch 0032",
    "container a3f9 2c1d 77e0",
    "BIN 4111 11, last four 1111? no: token tok_2201 8811",
    "postcode SW1A 1AA, box 4411",
    "order 2024-0501-7788 for 3 items",
    "EAN 4006381333931",
    "gas meter 0712 4455 981",
    "the score was 2-1 then 3-3",
    "KB5034441 failed with 0x80070643",
    "parcel 00340434161234567890",
    "grid 512 512 512 voxels",
    "bus 155, stop 40612",
];

#[test]
fn held_out_recall_and_false_alarms() {
    let actions: HashMap<Entity, Action> = [Entity::Phone, Entity::Ssn, Entity::Card, Entity::Iban, Entity::Ip]
        .into_iter()
        .map(|e| (e, Action::Redact))
        .collect();
    let mut regions: Vec<String> = REGIONS.iter().map(|r| r.to_string()).collect();
    regions.extend(["US", "GB", "DE", "NL", "FR"].map(String::from));
    let s = Scanner::with_regions(actions, &[], &regions).unwrap();
    let (mut values, mut invalid) = (Vec::new(), Vec::new());
    for (sentence, number, region) in PHONES {
        let id: phonenumber::country::Id = region.parse().unwrap();
        let valid = phonenumber::parse(Some(id), number).is_ok_and(|n| phonenumber::is_valid(&n));
        let text = sentence.replace("{}", number);
        if valid {
            values.push((text, Entity::Phone));
        } else {
            invalid.push(text);
        }
    }
    values.extend(SSNS.iter().map(|t| (t.to_string(), Entity::Ssn)));
    let Measured { recall, fp, missed, alarms } = measure(&s, &values, HARD_NEGATIVES);
    println!("held out: {} valid values: recall {recall:.3}; missed {missed:#?}", values.len());
    println!("not valid for their region (not counted): {invalid:#?}");
    println!("held out: {} hard negatives: false-positive rate {fp:.3}; {alarms:#?}", HARD_NEGATIVES.len());
    assert!(values.len() >= 30);
    // its one held-out run (2026-12-05): recall 0.973, false alarms 0.320 (the issue's
    // target is 0.05): held here against regressions, not as a bar that is met
    assert!(recall >= 0.97, "recall {recall:.3}");
    assert!(fp <= 0.33, "false positives {fp:.3}");
}
