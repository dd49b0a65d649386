//! The PII scanner measured on a labelled set made here: phone numbers of thirteen
//! regions, from libphonenumber's own example numbers (fixed line and mobile), written
//! the ways people write them (national, international, E.164, dashes, dots, `(0)`,
//! no spaces), US SSNs with dashes, spaces or none (then with a context word), each in
//! a sentence; and hard negatives that look numeric but are not values (order numbers,
//! SKUs, hex nonces, versions, dates, ISBNs, tracking and invoice numbers, amounts).
//! The figures are printed (`--nocapture`) and in BENCHMARKS.md.

use std::collections::HashMap;

use phonenumber::country::Id;
use phonenumber::metadata::DATABASE;
use phonenumber::Mode;

use super::pii::{Action, Entity, Scanner};

const REGIONS: &[&str] = &["US", "GB", "DE", "FR", "IN", "BR", "ES", "IT", "NL", "CA", "AU", "JP", "MX"];

const SENTENCES: &[&str] = &[
    "Call me at {} tomorrow.",
    "My number is {}",
    "You can reach the office on {}, ask for Jane.",
    "Tel.: {}",
    "({}) is my mobile",
    "Contact: Jane Doe, {}, jane@example.com",
    "ruf mich an unter {} bitte",
    "appelle-moi au {} ce soir",
];

/// The ways one number is written.
fn spellings(n: &phonenumber::PhoneNumber) -> Vec<String> {
    let national = phonenumber::format(n).mode(Mode::National).to_string();
    let intl = phonenumber::format(n).mode(Mode::International).to_string();
    let e164 = phonenumber::format(n).mode(Mode::E164).to_string();
    let mut out = vec![national.clone(), intl.clone(), e164.clone(), intl.replace(' ', "-"), intl.replace(' ', ".")];
    out.push(format!("00{}", &e164[1..]));
    // the trunk zero in parentheses after the country code: `+44 (0)20 ...`
    if national.starts_with('0') {
        let code = n.code().value();
        out.push(format!("+{code} (0){}", national[1..].trim_start()));
    }
    out.push(national.replace(' ', ""));
    out.sort();
    out.dedup();
    out
}

fn values() -> Vec<(String, Entity)> {
    let mut out = Vec::new();
    let mut k = 0;
    for r in REGIONS {
        let id: Id = r.parse().unwrap();
        let meta = DATABASE.by_id(*r).unwrap();
        let d = meta.descriptors();
        for example in
            [d.fixed_line().and_then(|x| x.example()), d.mobile().and_then(|x| x.example())].into_iter().flatten()
        {
            let n = phonenumber::parse(Some(id), example).unwrap();
            for s in spellings(&n) {
                k += 1;
                out.push((SENTENCES[k % SENTENCES.len()].replace("{}", &s), Entity::Phone));
            }
        }
    }
    // the spellings the issue names
    for s in ["+33 6 12 36 33 31", "+33 (0)7 81 23 45 67", "+55 61 92495-0596", "+49 (0)30 901820", "+91 98765 43210"] {
        out.push((format!("Reach me on {s} after six."), Entity::Phone));
    }
    let mut rng = fastrand::Rng::with_seed(18);
    for i in 0..60 {
        let area = loop {
            let a = rng.u32(1..900);
            if a != 666 {
                break a;
            }
        };
        let (g, s) = (rng.u32(1..100), rng.u32(1..10000));
        let text = match i % 4 {
            0 => format!("My SSN is {area:03}-{g:02}-{s:04}."),
            1 => format!("social security number {area:03} {g:02} {s:04}"),
            2 => format!("SSN: {area:03}{g:02}{s:04}"),
            _ => format!("Employee record: name Jane Roe, SSN#{area:03}{g:02}{s:04}, start date next week"),
        };
        out.push((text, Entity::Ssn));
    }
    out
}

const HARD_NEGATIVES: &[&str] = &[
    "Order #100234567 shipped yesterday.",
    "Your order number is #4155552671.",
    "order ORD-2024-001234 is delayed",
    "SKU 4711-2231-XL is out of stock",
    "Part no. AB-12345678-C",
    "nonce 5f3a9c7e21b04d88 expired",
    "tx hash 0x1f2e3d4c5b6a79881726354",
    "commit 9fceb02d0ae598e95dc970b74767f19372d61af8",
    "upgrade to version 2.14.1 or 10.0.19045.3448",
    "released v1.2.3 on 2024-05-01",
    "The meeting is on 01/05/2024 at 14:30.",
    "Termin am 05.01.2024 um 9 Uhr",
    "Rendez-vous le 12.03.2024",
    "ISBN 978-3-16-148410-0",
    "tracking 1Z999AA10123456784",
    "invoice INV-2024-00042 is due",
    "amount due: $1,234,567.89",
    "the population was 83,200,000 in 2023",
    "uuid 550e8400-e29b-41d4-a716-446655440000",
    "build 20240501.3 passed",
    "room 4-112, building 7",
    "coordinates 48.8584, 2.2945",
    "ticket JIRA-20345 and PR #8812",
    "zip 94105-1804",
    "serial SN-8842-1193-2271",
    "order 7731-2209-5521-0042 confirmed",
    "checksum 3a7bd3e2360a3d29eea436fcfb7e44c735d117c4",
    "api v2/users/4155552671/profile",
    "file IMG_20240501_143022.jpg",
    "timestamp 1714572000 (unix)",
    "Score: 98765 points",
    "between pages 1012 and 1018",
    "ref 2024/05/01-0042",
    "from 2019 to 2024, revenue rose 12.5%",
    "model RTX-4090-24G",
    "The 5 2 4 6 8 sequence",
    "PIN reset code 004211",
    "lot number 231005-7A",
    "account id 123456789012 in us-east-1",
    "port 8080, pid 41558",
];

/// What a scanner found of a set: recall of its values, the share of hard negatives
/// flagged, and the texts behind each.
pub(super) struct Measured {
    pub recall: f64,
    pub fp: f64,
    pub missed: Vec<String>,
    pub alarms: Vec<String>,
}

pub(super) fn measure(s: &Scanner, values: &[(String, Entity)], negatives: &[&str]) -> Measured {
    let missed: Vec<String> =
        values.iter().filter(|(t, e)| !s.scan(t).iter().any(|f| f.entity == *e)).map(|(t, _)| t.clone()).collect();
    let alarms: Vec<String> = negatives
        .iter()
        .filter_map(|t| {
            let f = s.scan(t);
            (!f.is_empty()).then(|| format!("{t} -> {:?}", f.iter().map(|f| &t[f.start..f.end]).collect::<Vec<_>>()))
        })
        .collect();
    Measured {
        recall: 1.0 - missed.len() as f64 / values.len() as f64,
        fp: alarms.len() as f64 / negatives.len() as f64,
        missed,
        alarms,
    }
}

#[test]
fn recall_of_valid_values_and_false_alarms_on_hard_negatives() {
    let actions: HashMap<Entity, Action> = [Entity::Phone, Entity::Ssn, Entity::Card, Entity::Iban, Entity::Ip]
        .into_iter()
        .map(|e| (e, Action::Redact))
        .collect();
    let regions: Vec<String> = REGIONS.iter().map(|r| r.to_string()).collect();
    let s = Scanner::with_regions(actions, &[], &regions).unwrap();
    let values = values();
    let Measured { recall, fp, missed, alarms } = measure(&s, &values, HARD_NEGATIVES);
    println!("{} values: recall {recall:.3}; missed {missed:#?}", values.len());
    println!("{} hard negatives: false-positive rate {fp:.3}; {alarms:#?}", HARD_NEGATIVES.len());
    assert!(values.len() > 250);
    assert!(recall >= 0.99, "recall {recall:.3}: {missed:#?}");
    assert!(fp <= 0.05, "false positives {fp:.3}: {alarms:#?}");
}
