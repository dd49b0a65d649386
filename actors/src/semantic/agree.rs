//! The check that two prompts close in meaning also agree on what embeddings blur:
//! their numbers (in order), negation, units (in the direction asked) and named
//! entities. "Convert 5 miles to km" and "convert 50 miles to km" embed almost alike; a
//! cached answer to one must never answer the other.

use std::collections::HashSet;

/// What a prompt says that its answer depends on word for word.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Salient {
    /// Numbers in order of appearance, normalized (`1,000` and `1000.0` are `1000`).
    numbers: Vec<String>,
    /// It holds a negation (`not`, `never`, `n't`, `without`, …).
    negated: bool,
    /// Units in order, the one asked for ("how many km …") last.
    units: Vec<&'static str>,
    /// Capitalized words after a sentence's first, acronyms, and words mixing letters
    /// and digits, lower-cased.
    entities: Vec<String>,
    /// Every word, lower-cased (possessive `'s` removed).
    words: Vec<String>,
    /// Words joined by a connector ("X to Y", "X into Y", "X divided by Y"), in order,
    /// units canonical.
    joined: Vec<(String, String)>,
    /// The unit asked for: "how many km …", else the unit after the last "to", "into"
    /// or "in" ("100 F in Celsius").
    target: Option<&'static str>,
    /// The kind of answer its opening asks for (`asks.rs`).
    asks: Option<&'static str>,
}

/// Why two prompts disagree.
pub type Disagreement = &'static str;

const NEGATIONS: &[&str] =
    &["not", "no", "never", "without", "none", "nobody", "nothing", "neither", "nor", "cannot", "nowhere", "except"];

/// Roman numerals read after a name.
const ROMAN: &[&str] = &["I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII"];

/// Ordinals, read as numbers when they are part of a name.
const ORDINALS: &[&str] =
    &["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth"];

/// Words that join two others in an order that matters.
const CONNECTORS: &[&str] = &["to", "into", "by", "than", "minus", "over", "per", "vs", "versus", "on", "from"];

const NUMBER_WORDS: &[(&str, &str)] = &[
    ("zero", "0"),
    ("two", "2"),
    ("three", "3"),
    ("four", "4"),
    ("five", "5"),
    ("six", "6"),
    ("seven", "7"),
    ("eight", "8"),
    ("nine", "9"),
    ("ten", "10"),
    ("eleven", "11"),
    ("twelve", "12"),
    ("thirteen", "13"),
    ("fourteen", "14"),
    ("fifteen", "15"),
    ("sixteen", "16"),
    ("seventeen", "17"),
    ("eighteen", "18"),
    ("nineteen", "19"),
    ("twenty", "20"),
    ("thirty", "30"),
    ("forty", "40"),
    ("fifty", "50"),
    ("sixty", "60"),
    ("seventy", "70"),
    ("eighty", "80"),
    ("ninety", "90"),
    ("hundred", "100"),
    ("thousand", "1000"),
    ("million", "1000000"),
    ("billion", "1000000000"),
    ("dozen", "12"),
    ("half", "0.5"),
    ("twice", "2"),
    ("double", "2"),
    ("triple", "3"),
];

/// Unit spellings and the unit they name.
const UNITS: &[(&str, &str)] = &[
    ("mile", "mi"),
    ("miles", "mi"),
    ("mi", "mi"),
    ("km", "km"),
    ("kms", "km"),
    ("kilometer", "km"),
    ("kilometers", "km"),
    ("kilometre", "km"),
    ("kilometres", "km"),
    ("meter", "m"),
    ("meters", "m"),
    ("metre", "m"),
    ("metres", "m"),
    ("cm", "cm"),
    ("centimeter", "cm"),
    ("centimeters", "cm"),
    ("centimetres", "cm"),
    ("mm", "mm"),
    ("millimeters", "mm"),
    ("inch", "in"),
    ("inches", "in"),
    ("foot", "ft"),
    ("feet", "ft"),
    ("ft", "ft"),
    ("yard", "yd"),
    ("yards", "yd"),
    ("kg", "kg"),
    ("kgs", "kg"),
    ("kilogram", "kg"),
    ("kilograms", "kg"),
    ("kilo", "kg"),
    ("kilos", "kg"),
    ("gram", "g"),
    ("grams", "g"),
    ("g", "g"),
    ("pound", "lb"),
    ("pounds", "lb"),
    ("lb", "lb"),
    ("lbs", "lb"),
    ("ounce", "oz"),
    ("ounces", "oz"),
    ("oz", "oz"),
    ("ton", "t"),
    ("tons", "t"),
    ("tonnes", "t"),
    ("liter", "l"),
    ("liters", "l"),
    ("litre", "l"),
    ("litres", "l"),
    ("ml", "ml"),
    ("milliliters", "ml"),
    ("gallon", "gal"),
    ("gallons", "gal"),
    ("cup", "cup"),
    ("cups", "cup"),
    ("tablespoon", "tbsp"),
    ("tablespoons", "tbsp"),
    ("tbsp", "tbsp"),
    ("teaspoon", "tsp"),
    ("teaspoons", "tsp"),
    ("tsp", "tsp"),
    ("celsius", "c"),
    ("c", "c"),
    ("f", "f"),
    ("centigrade", "c"),
    ("fahrenheit", "f"),
    ("kelvin", "k"),
    ("second", "s"),
    ("seconds", "s"),
    ("minute", "min"),
    ("minutes", "min"),
    ("hour", "h"),
    ("hours", "h"),
    ("day", "d"),
    ("days", "d"),
    ("week", "wk"),
    ("weeks", "wk"),
    ("month", "mo"),
    ("months", "mo"),
    ("year", "yr"),
    ("years", "yr"),
    ("byte", "b"),
    ("bytes", "b"),
    ("kb", "kb"),
    ("kilobytes", "kb"),
    ("mb", "mb"),
    ("megabytes", "mb"),
    ("gb", "gb"),
    ("gigabytes", "gb"),
    ("tb", "tb"),
    ("terabytes", "tb"),
    ("mph", "mph"),
    ("kph", "kmh"),
    ("kmh", "kmh"),
    ("dollar", "usd"),
    ("dollars", "usd"),
    ("usd", "usd"),
    ("euro", "eur"),
    ("euros", "eur"),
    ("eur", "eur"),
    ("yen", "jpy"),
    ("jpy", "jpy"),
    ("gbp", "gbp"),
    ("sterling", "gbp"),
    ("rupee", "inr"),
    ("rupees", "inr"),
    ("inr", "inr"),
    ("percent", "%"),
    ("%", "%"),
    ("$", "usd"),
    ("€", "eur"),
    ("£", "gbp"),
    ("¥", "jpy"),
];

fn unit(word: &str) -> Option<&'static str> {
    UNITS.iter().find(|(w, _)| *w == word).map(|(_, u)| *u)
}

/// A number as written, normalized: separators dropped, trailing zeros of a fraction
/// dropped.
fn normalize_number(s: &str) -> String {
    let s: String = s.chars().filter(|c| *c != ',' && *c != '_').collect();
    match s.split_once('.') {
        Some((int, frac)) => {
            let frac = frac.trim_end_matches('0');
            let int = match int.trim_start_matches('0') {
                "" => "0",
                t => t,
            };
            if frac.is_empty() {
                int.to_string()
            } else {
                format!("{int}.{frac}")
            }
        }
        None => match s.trim_start_matches('0') {
            "" => "0".to_string(),
            t => t.to_string(),
        },
    }
}

/// Splits into words: letters and digits (with `.`/`,` inside numbers, `'` inside
/// words), currency and percent signs as words of their own.
fn words(text: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut sentence_start = true;
    let mut starts = true;
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let next = chars.get(i + 1).copied();
        let inner = |c: char| {
            (c == '.' || c == ',')
                && cur.chars().last().is_some_and(|p| p.is_ascii_digit())
                && next.is_some_and(|n| n.is_ascii_digit())
                || (c == '\'' || c == '’') && !cur.is_empty() && next.is_some_and(char::is_alphabetic)
                // "part-time", "e-mail": one word
                || c == '-' && cur.chars().last().is_some_and(char::is_alphabetic) && next.is_some_and(char::is_alphabetic)
        };
        if c.is_alphanumeric() || inner(c) {
            cur.push(if c == '’' { '\'' } else { c });
            continue;
        }
        if !cur.is_empty() {
            out.push((std::mem::take(&mut cur), starts));
            sentence_start = false;
        }
        if matches!(c, '$' | '€' | '£' | '¥' | '%') {
            out.push((c.to_string(), false));
        }
        if matches!(c, '.' | '?' | '!' | '\n' | ':' | ';' | '"') {
            sentence_start = true;
        }
        starts = sentence_start;
    }
    if !cur.is_empty() {
        out.push((cur, starts));
    }
    out
}

/// What `text` says word for word.
pub fn salient(text: &str) -> Salient {
    let mut s = Salient::default();
    let ws = words(text);
    let lower: Vec<String> = ws
        .iter()
        .map(|(w, _)| {
            let l = w.to_lowercase();
            l.strip_suffix("'s").map(str::to_string).unwrap_or(l)
        })
        .collect();
    for (i, ((w, starts), l)) in ws.iter().zip(&lower).enumerate() {
        if l.ends_with("n't") || NEGATIONS.contains(&l.as_str()) {
            s.negated = true;
        }
        if w.chars().next().is_some_and(|c| c.is_ascii_digit()) {
            // "5km", "10kg": the number, then the unit glued to it
            let split = w.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ',')).unwrap_or(w.len());
            s.numbers.push(normalize_number(&w[..split]));
            if let Some(u) = unit(&l[split..]) {
                s.units.push(u);
            } else if split < w.len() {
                s.entities.push(l.clone());
            }
            continue;
        }
        if let Some((_, n)) = NUMBER_WORDS.iter().find(|(word, _)| *word == l) {
            s.numbers.push((*n).to_string());
            continue;
        }
        let after_name = i > 0 && ws[i - 1].0.chars().next().is_some_and(char::is_uppercase) && !ws[i - 1].1;
        // a Roman numeral after a name ("World War II", "Henry VIII"); else "I" is the pronoun
        if let Some(n) = ROMAN.iter().position(|r| *r == w.as_str()).filter(|_| after_name || w != "I") {
            s.numbers.push((n + 1).to_string());
            continue;
        }
        if w == "I" || w.starts_with("I'") {
            continue;
        }
        // a capitalized ordinal names something ("the Second World War", "Fifth Avenue")
        let capital = w.chars().next().is_some_and(char::is_uppercase) && !*starts;
        let names_next = ws.get(i + 1).is_some_and(|(n, _)| n.chars().next().is_some_and(char::is_uppercase));
        if let Some(n) = ORDINALS.iter().position(|o| *o == l).filter(|_| capital || names_next) {
            s.numbers.push((n + 1).to_string());
            continue;
        }
        if let Some(u) = unit(l) {
            // single letters ("g", "m") and durations ("how many minutes") count only
            // right after a number
            let short = l.chars().count() <= 2 && l.chars().all(char::is_alphabetic);
            let duration = matches!(u, "s" | "min" | "h" | "d" | "wk" | "mo" | "yr");
            let after_number = i > 0
                && (lower[i - 1].chars().next().is_some_and(|c| c.is_ascii_digit())
                    || NUMBER_WORDS.iter().any(|(w, _)| *w == lower[i - 1]));
            let named = matches!(l.as_str(), "km" | "kg" | "cm" | "mm" | "ml" | "lb" | "oz" | "ft");
            if after_number || (!duration && (!short || named)) {
                s.units.push(u);
            }
            continue;
        }
        let upper = w.chars().filter(|c| c.is_uppercase()).count();
        let acronym = upper >= 2 && w.chars().count() >= 2;
        let mixed = w.chars().any(|c| c.is_ascii_digit()) && w.chars().any(char::is_alphabetic);
        let capitalized = upper >= 1 && w.chars().next().is_some_and(char::is_uppercase) && !starts;
        if acronym || mixed || capitalized || (upper >= 1 && !w.chars().next().is_some_and(char::is_uppercase)) {
            s.entities.push(l.clone());
        }
    }
    s.units.sort_unstable();
    s.target = target_unit(&lower);
    s.asks = super::asks::asks(&lower);
    // units marked, so that a unit's short name never reads as a word ("in", "m")
    let canon: Vec<String> = lower.iter().map(|w| unit(w).map_or_else(|| w.clone(), |u| format!("#{u}"))).collect();
    for (i, w) in canon.iter().enumerate() {
        if i == 0 || !CONNECTORS.contains(&w.as_str()) {
            continue;
        }
        // the unit or the word on each side ("250 US dollars to euros": usd, eur)
        let is_unit = |w: &String| w.starts_with('#');
        let after: Vec<&String> =
            canon[i + 1..].iter().filter(|n| !matches!(n.as_str(), "a" | "an" | "the")).take(2).collect();
        let next = after.iter().find(|w| is_unit(w)).or(after.first()).copied();
        let before = &canon[i.saturating_sub(2)..i];
        let prev = before.iter().rev().find(|w| is_unit(w)).unwrap_or(&canon[i - 1]);
        if let Some(next) = next.filter(|n| !CONNECTORS.contains(&n.as_str()) && !CONNECTORS.contains(&prev.as_str())) {
            s.joined.push((prev.clone(), next.clone()));
        }
    }
    // "from X … to Y": X and Y joined too
    if let (Some(f), Some(t)) = (canon.iter().position(|w| w == "from"), canon.iter().rposition(|w| w == "to")) {
        let word = |i: usize| canon[i..].iter().find(|n| !matches!(n.as_str(), "a" | "an" | "the")).cloned();
        if let (Some(x), Some(y)) = (word(f + 1), word(t + 1)) {
            if f < t {
                s.joined.push((x, y));
            }
        }
    }
    s.words = lower;
    s
}

/// The unit a prompt asks for (see [`Salient::target`]).
fn target_unit(words: &[String]) -> Option<&'static str> {
    let asked = words
        .windows(3)
        .find_map(|w| (w[0] == "how" && matches!(w[1].as_str(), "many" | "much")).then(|| unit(&w[2])).flatten());
    asked.or_else(|| {
        let mut target = None;
        for (i, w) in words.iter().enumerate() {
            if matches!(w.as_str(), "to" | "into" | "in") {
                let next = words[i + 1..].iter().find(|n| {
                    !matches!(n.as_str(), "a" | "an" | "the" | "degrees")
                        && !n.starts_with(|c: char| c.is_ascii_digit())
                });
                if let Some(u) = next.and_then(|n| unit(n)) {
                    target = Some(u);
                }
            }
        }
        target
    })
}

/// Whether one prompt's answer may answer the other: `Err` names what differs.
pub fn agree(a: &Salient, b: &Salient) -> Result<(), Disagreement> {
    if a.numbers != b.numbers {
        return Err("numbers");
    }
    if a.negated != b.negated {
        return Err("negation");
    }
    if a.units != b.units {
        return Err("units");
    }
    if let (Some(x), Some(y)) = (a.target, b.target) {
        if x != y {
            return Err("direction");
        }
    }
    // the same two words joined the other way round ("producers to consumers")
    if a.joined.iter().any(|(x, y)| x != y && b.joined.iter().any(|(p, q)| p == y && q == x)) {
        return Err("direction");
    }
    // the same sentence with two words trading places: their roles changed ("a gas stove
    // to electric" / "an electric stove to gas")
    let article = |w: &&String| !matches!(w.as_str(), "a" | "an" | "the");
    let plain_a: Vec<&String> = a.words.iter().filter(article).collect();
    let plain_b: Vec<&String> = b.words.iter().filter(article).collect();
    if plain_a.len() == plain_b.len() {
        let diff: Vec<usize> = (0..plain_a.len()).filter(|&i| plain_a[i] != plain_b[i]).collect();
        if let [i, j] = diff[..] {
            if plain_a[i] == plain_b[j] && plain_a[j] == plain_b[i] {
                return Err("direction");
            }
        }
    }
    // the same sentence with one word swapped: that word is the question
    // ("the atomic number of carbon" / "of nitrogen", "git rebase" / "git merge")
    if plain_a.len() == plain_b.len() {
        let mut diff = plain_a.iter().zip(&plain_b).filter(|(x, y)| x != y);
        if let (Some((x, y)), None) = (diff.next(), diff.next()) {
            let inflection = x.starts_with(y.as_str()) || y.starts_with(x.as_str());
            if !inflection {
                return Err("substitution");
            }
        }
    }
    let words_a: HashSet<&str> = a.words.iter().map(String::as_str).collect();
    let words_b: HashSet<&str> = b.words.iter().map(String::as_str).collect();
    // "unsafe" beside "safe": a negation spelled as a prefix
    for (x, y) in [(&words_a, &words_b), (&words_b, &words_a)] {
        let flipped = x.iter().any(|w| {
            ["un", "in", "im", "il", "ir", "dis", "non"]
                .iter()
                .any(|p| w.strip_prefix(p).is_some_and(|stem| stem.len() >= 3 && y.contains(stem) && !x.contains(stem)))
        });
        if flipped {
            return Err("negation");
        }
    }
    // a plural spells the same entity ("ETF", "ETFs")
    let named = |e: &str, words: &HashSet<&str>| {
        words.contains(e)
            || words.contains(format!("{e}s").as_str())
            || e.strip_suffix('s').is_some_and(|s| words.contains(s))
    };
    if a.entities.iter().any(|e| !named(e, &words_b)) || b.entities.iter().any(|e| !named(e, &words_a)) {
        return Err("entities");
    }
    // the same entities in other roles: joined to the same word, each names another
    // ("Spain declared war on England" / "England declared war on Spain")
    let entities_a: HashSet<&str> = a.entities.iter().map(String::as_str).collect();
    let entities_b: HashSet<&str> = b.entities.iter().map(String::as_str).collect();
    if entities_a == entities_b && entities_a.len() >= 2 {
        let swapped = a.joined.iter().any(|(x, y)| {
            entities_a.contains(y.as_str())
                && b.joined.iter().any(|(p, q)| p == x && q != y && entities_a.contains(q.as_str()))
        });
        if swapped {
            return Err("direction");
        }
    }
    // the same subject, another kind of answer asked for ("when did it end" / "how
    // many died")
    match (a.asks, b.asks) {
        (Some(x), Some(y)) if x != y => Err("question"),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(a: &str, b: &str) -> Result<(), Disagreement> {
        agree(&salient(a), &salient(b))
    }

    #[test]
    fn paraphrases_agree() {
        for (a, b) in [
            ("Convert 5 miles to km", "How many km is 5 miles?"),
            ("How many grams are in 3 pounds?", "3 pounds in grams"),
            ("What is the capital of France?", "Which city is France's capital?"),
            ("Paris population?", "How many people live in Paris?"),
            ("Explain recursion simply", "Can you explain recursion in simple terms?"),
            ("What's 1,000 divided by 8?", "what is 1000 / 8"),
            ("Give me three tips for sleep", "3 tips to sleep better"),
            ("When did World War II end?", "In what year did the Second World War end?"),
            ("How is an index fund different from an ETF?", "What separates index funds from ETFs?"),
            (
                "Do I need a visa to visit Canada from the UK?",
                "Is a visa required for UK citizens travelling to Canada?",
            ),
        ] {
            assert_eq!(check(a, b), Ok(()), "{a} | {b}");
        }
    }

    #[test]
    fn one_changed_detail_disagrees() {
        for (a, b, why) in [
            ("Convert 5 miles to km", "Convert 50 miles to km", "numbers"),
            ("Convert 5 miles to km", "Convert 5 km to miles", "direction"),
            ("Is it safe to eat raw eggs?", "Is it not safe to eat raw eggs?", "negation"),
            ("Which foods contain gluten?", "Which foods don't contain gluten?", "negation"),
            ("What is the capital of France?", "What is the capital of Germany?", "substitution"),
            ("What is the capital of France?", "Which city is the capital of Germany?", "entities"),
            ("Flights from Paris to London", "Flights from London to Paris", "direction"),
            ("Did Spain declare war on England?", "Did England declare war on Spain?", "direction"),
            (
                "Is it safe to eat raw eggs when pregnant?",
                "Why is it unsafe to eat raw eggs when pregnant?",
                "negation",
            ),
            ("When did World War I end?", "When did World War II end?", "numbers"),
            ("What is 7 minus 3?", "What is 3 minus 7?", "numbers"),
            ("Convert 100 USD to EUR", "Convert 100 EUR to USD", "direction"),
            ("Convert 250 US dollars to euros", "Convert 250 euros to US dollars", "direction"),
            ("What is 100 degrees Fahrenheit in Celsius?", "What is 100 degrees Celsius in Fahrenheit?", "direction"),
            ("Did Spain declare war on England in 1585?", "Did England declare war on Spain in 1585?", "direction"),
            (
                "Can I turn a gas stove into an electric one?",
                "Can I turn an electric stove into a gas one?",
                "direction",
            ),
            (
                "How do I switch from part-time to full-time?",
                "How do I switch from full-time to part-time?",
                "direction",
            ),
            ("Weather in NYC", "Weather in LA", "substitution"),
            ("Weather in NYC today", "What is the weather like in LA today?", "entities"),
        ] {
            assert_eq!(check(a, b), Err(why), "{a} | {b}");
        }
    }

    #[test]
    fn numbers_are_normalized() {
        assert_eq!(salient("pay $1,000.50 now").numbers, vec!["1000.5"]);
        assert_eq!(salient("5km or 007").numbers, vec!["5", "7"]);
        assert_eq!(salient("5km").units, vec!["km"]);
        assert_eq!(salient("a dozen eggs").numbers, vec!["12"]);
        assert_eq!(
            salient("When did World War II end?").numbers,
            vec!["2"],
            "{:?}",
            salient("When did World War II end?")
        );
        assert_eq!(salient("the Second World War").numbers, vec!["2"]);
    }
}

#[cfg(test)]
mod pairs {
    /// The guards alone on a split of `ops/semantic_cache/pairs.jsonl`
    /// (`SPLIT=tune cargo test -p switchyard-actors guards_on_pairs -- --nocapture`).
    #[test]
    fn guards_on_pairs() {
        let split = std::env::var("SPLIT").unwrap_or_else(|_| "tune".into());
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../ops/semantic_cache/pairs.jsonl");
        let text = std::fs::read_to_string(path).unwrap();
        let (mut kept, mut paraphrases, mut caught, mut negatives) = (0, 0, 0, 0);
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if v["split"] != split.as_str() {
                continue;
            }
            let (a, b) = (v["a"].as_str().unwrap(), v["b"].as_str().unwrap());
            let verdict = super::agree(&super::salient(a), &super::salient(b));
            if v["same"] == true {
                paraphrases += 1;
                if verdict.is_ok() {
                    kept += 1;
                } else {
                    println!("paraphrase rejected ({verdict:?}): {a} | {b}");
                }
            } else {
                negatives += 1;
                if verdict.is_err() {
                    caught += 1;
                } else {
                    println!("negative passed: {a} | {b}");
                }
            }
        }
        println!("{split}: paraphrases kept {kept}/{paraphrases}, negatives caught {caught}/{negatives}");
    }
}
