//! What kind of answer a question asks for, read from how it opens: a count ("how
//! many"), an amount, a duration, a time ("when", "at what age"), a person, a reason, a
//! method ("how do I", "where do I", "what's the best way to", "tips for"), a yes or
//! no ("is it hard", "how hard is it"). "Which" and "what is" say nothing by themselves.
//! Two questions on the same subject that ask for different kinds of answer are
//! different questions ("When did the war end?" / "How many died in the war?"), however
//! close they embed; a paraphrase keeps the kind, or says it in words this does not
//! read (then nothing is decided).

/// Openings that only ask politely, skipped before reading the question.
const POLITE: &[&[&str]] = &[
    &["can", "you", "tell", "me"],
    &["could", "you", "tell", "me"],
    &["can", "you", "explain"],
    &["could", "you", "explain"],
    &["can", "you", "show", "me"],
    &["do", "you", "know"],
    &["please", "tell", "me"],
    &["tell", "me"],
    &["i", "want", "to", "know"],
    &["i'd", "like", "to", "know"],
    &["i", "wonder"],
    &["please"],
    &["hey"],
    &["hi"],
    &["quick", "question"],
];

/// Units of time ("how many minutes": a duration).
const DURATIONS: &[&str] =
    &["seconds", "minutes", "hours", "days", "weeks", "months", "years", "time", "decades", "nights"];

/// "how ADJECTIVE is …": the question "is it ADJECTIVE …" asks.
const DEGREES: &[&str] = &[
    "hard",
    "difficult",
    "easy",
    "safe",
    "dangerous",
    "risky",
    "expensive",
    "cheap",
    "good",
    "bad",
    "important",
    "healthy",
    "common",
    "rare",
    "likely",
    "accurate",
    "reliable",
    "effective",
    "useful",
    "necessary",
];

/// Words that open a yes-or-no question.
const YES_NO: &[&str] = &[
    "is", "are", "was", "were", "can", "could", "does", "do", "did", "should", "will", "would", "may", "must", "has",
    "have", "am",
];

/// The kind of answer `words` (lower-cased, in order) asks for, when its opening says.
pub fn asks(words: &[String]) -> Option<&'static str> {
    let mut w: Vec<&str> = words.iter().map(String::as_str).collect();
    while let Some(skip) = POLITE.iter().find(|p| w.len() > p.len() && w[..p.len()] == ***p) {
        w.drain(..skip.len());
    }
    let second = w.get(1).copied().unwrap_or("");
    let third = w.get(2).copied().unwrap_or("");
    Some(match *w.first()? {
        "how" => match second {
            // "how many minutes" is a duration, "how many times" a frequency
            "many" | "much" if DURATIONS.contains(&third) => "duration",
            "many" if third == "times" => "frequency",
            "many" => "count",
            "much" => "amount",
            "long" => "duration",
            "old" | "soon" => "time",
            "early" | "late" => "duration",
            "far" => "distance",
            "often" | "frequently" => "frequency",
            "come" => "reason",
            "big" | "large" | "tall" | "heavy" | "fast" | "high" | "deep" | "wide" => "size",
            // "how hard is …" asks what "is it hard …" does
            adjective if DEGREES.contains(&adjective) => "yes_no",
            _ => "method",
        },
        "when" => "time",
        // "where do I enter it" asks how to
        "where" => "method",
        "who" | "whom" | "whose" => "person",
        "why" => "reason",
        "what" | "what's" | "whats" => {
            if matches!(second, "time" | "year" | "day" | "date" | "age" | "month" | "century") {
                "time"
            } else if w.iter().skip(1).take(5).any(|x| matches!(*x, "way" | "ways" | "process" | "steps")) {
                "method"
            } else {
                return None;
            }
        }
        "at" | "in" if second == "what" => match third {
            "age" | "time" | "year" | "point" | "month" | "temperature" => "time",
            _ => return None,
        },
        "tips" | "steps" | "ways" => "method",
        first if YES_NO.contains(&first) => "yes_no",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::asks;

    fn kind(text: &str) -> Option<&'static str> {
        let words: Vec<String> = text
            .split(|c: char| !(c.is_alphanumeric() || c == '\''))
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        asks(&words)
    }

    #[test]
    fn openings_name_the_kind_of_answer() {
        for (text, want) in [
            ("How many people live in Tokyo?", Some("count")),
            ("How much do soccer players earn?", Some("amount")),
            ("When did World War II end?", Some("time")),
            ("At what age do children start talking?", Some("time")),
            ("In what year did the war end?", Some("time")),
            ("Who took the first picture of a black hole?", Some("person")),
            ("Which guitar should a beginner buy?", None),
            ("How many minutes should I boil an egg?", Some("duration")),
            ("How many times a day does a puppy eat?", Some("frequency")),
            ("How difficult is German?", Some("yes_no")),
            ("How do I learn to play guitar?", Some("method")),
            ("What's the best way to ask for a raise?", Some("method")),
            ("What is the process to appeal a parking fine?", Some("method")),
            ("Tips for getting crisp pictures in the dark", Some("method")),
            ("Is it safe to take ibuprofen?", Some("yes_no")),
            ("Can you tell me the status of my order?", None),
            ("Could you tell me where my order is?", Some("method")),
            ("What is a black hole?", None),
            ("Differentiate x^2", None),
            ("Please, how far is the Moon?", Some("distance")),
        ] {
            assert_eq!(kind(text), want, "{text}");
        }
    }
}
