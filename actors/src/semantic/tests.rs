use super::*;
use crate::store::Store;
use crate::types::Usage;

fn answer(text: &str) -> CachedResponse {
    CachedResponse {
        body: text.as_bytes().to_vec(),
        provider: "p".into(),
        upstream_model: "m".into(),
        usage: Usage { input: 10, output: 20, ..Usage::default() },
    }
}

/// A unit vector pointing mostly along axis `axis`, tilted by `tilt` along the next.
fn vector(axis: usize, tilt: f32) -> Vec<f32> {
    let mut v = vec![0.0; 16];
    v[axis % 16] = 1.0;
    v[(axis + 1) % 16] = tilt;
    assert!(normalize(&mut v));
    v
}

fn entry(partition: u8, text: &str, v: Vec<f32>) -> NewEntry {
    NewEntry {
        partition: [partition; 32],
        alias: "chat".into(),
        scope: format!("key:k{partition}"),
        text: text.into(),
        vector: v,
        response: answer(text),
        ttl: Duration::from_secs(60),
    }
}

fn query<'a>(partition: &'a Partition, v: &'a [f32], text: &'a str) -> Query<'a> {
    Query { partition, vector: v, text, threshold: 0.95, candidates: 8, guards: true }
}

#[test]
fn a_near_vector_in_the_same_partition_hits() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let c = SemanticIndex::open(store.semantic.clone(), 100);
    c.insert(entry(1, "what is the capital of France", vector(0, 0.0)));
    c.insert(entry(1, "how do I boil an egg", vector(5, 0.0)));
    let q = vector(0, 0.1);
    match c.lookup(&query(&[1; 32], &q, "which city is France's capital")) {
        Lookup::Hit(h) => {
            assert_eq!(h.response, answer("what is the capital of France"));
            assert!(h.similarity > 0.99, "{}", h.similarity);
        }
        other => panic!("{other:?}"),
    }
    // another partition (another key, another system prompt) never sees it
    assert!(matches!(
        c.lookup(&query(&[2; 32], &q, "which city is France's capital")),
        Lookup::Miss { best: None, .. }
    ));
    // far below the threshold: a miss that reports how close it came
    let far = vector(0, 1.0);
    match c.lookup(&query(&[1; 32], &far, "which city is France's capital")) {
        Lookup::Miss { best: Some(b), rejected: None } => assert!(b < 0.95 && b > 0.5, "{b}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_near_vector_that_differs_in_a_number_misses() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let c = SemanticIndex::open(store.semantic.clone(), 100);
    c.insert(entry(1, "convert 5 miles to km", vector(3, 0.0)));
    let q = vector(3, 0.01);
    assert!(matches!(
        c.lookup(&query(&[1; 32], &q, "convert 50 miles to km")),
        Lookup::Miss { rejected: Some("numbers"), .. }
    ));
    let off = Query { guards: false, ..query(&[1; 32], &q, "convert 50 miles to km") };
    assert!(matches!(c.lookup(&off), Lookup::Hit(_)), "without guards the threshold alone decides");
}

#[test]
fn expiry_cap_clear_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let c = SemanticIndex::open(store.semantic.clone(), 3);
        let mut gone = entry(1, "expired", vector(9, 0.0));
        gone.ttl = Duration::ZERO;
        c.insert(gone);
        assert!(matches!(c.lookup(&query(&[1; 32], &vector(9, 0.0), "expired")), Lookup::Miss { best: None, .. }));
        for i in 0..5u8 {
            c.insert(entry(i, "kept", vector(usize::from(i), 0.0)));
        }
        assert_eq!(c.len(), 3, "the oldest are evicted above the cap");
        assert!(matches!(c.lookup(&query(&[0; 32], &vector(0, 0.0), "kept")), Lookup::Miss { .. }));
        assert!(matches!(c.lookup(&query(&[4; 32], &vector(4, 0.0), "kept")), Lookup::Hit(_)));
        assert!(c.memory_bytes() > 0);
        store.db.flush().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let c = SemanticIndex::open(store.semantic.clone(), 3);
    // the loader runs on its own thread
    for _ in 0..200 {
        if c.len() == 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(c.len(), 3, "a restart keeps the entries");
    assert!(matches!(c.lookup(&query(&[4; 32], &vector(4, 0.0), "kept")), Lookup::Hit(_)));
    assert_eq!(c.clear(None, Some("key:k4")), 1);
    assert!(matches!(c.lookup(&query(&[4; 32], &vector(4, 0.0), "kept")), Lookup::Miss { .. }));
    assert_eq!(c.clear(Some("other"), None), 0);
    assert_eq!(c.clear(Some("chat"), None), 2);
    assert!(c.is_empty());
    assert!(store.semantic.is_empty());
}

#[test]
fn large_partitions_go_through_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let c = SemanticIndex::open(store.semantic.clone(), 10_000);
    let mut s = 7u64;
    let mut rnd = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s % 2000) as f32 / 1000.0 - 1.0
    };
    let mut target = Vec::new();
    for i in 0..(SCAN_MAX + 200) {
        let v: Vec<f32> = (0..16).map(|_| rnd()).collect();
        if i == 300 {
            target = v.clone();
        }
        let mut e = entry(1, "same words", v);
        e.response = answer(&format!("answer {i}"));
        c.insert(e);
    }
    // and a partition of its own beside it
    c.insert(entry(2, "same words", target.clone()));
    assert!(normalize(&mut target));
    match c.lookup(&query(&[1; 32], &target, "same words")) {
        Lookup::Hit(h) => assert_eq!(h.response, answer("answer 300")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn other_dimensions_are_refused_not_mixed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let c = SemanticIndex::open(store.semantic.clone(), 10);
    c.insert(entry(1, "a", vector(0, 0.0)));
    c.insert(entry(1, "b", vec![1.0; 8]));
    assert_eq!(c.len(), 1);
    assert!(matches!(c.lookup(&query(&[1; 32], &[1.0; 8], "b")), Lookup::Miss { best: None, .. }));
    let mut zero = entry(1, "zero", vec![0.0; 16]);
    zero.vector = vec![0.0; 16];
    c.insert(zero);
    assert_eq!(c.len(), 1, "a zero vector is not stored");
}

#[test]
fn bulk_insert_indexes_every_entry() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let c = SemanticIndex::open(store.semantic.clone(), 100);
    let entries: Vec<NewEntry> = (0..40).map(|i| entry(1 + (i % 4) as u8, "bulk", vector(i, 0.0))).collect();
    c.insert_many(entries);
    assert_eq!(c.len(), 40);
    assert_eq!(store.semantic.len(), 40);
    // entry 6 went to partition 3 along axis 6
    assert!(matches!(c.lookup(&query(&[3; 32], &vector(6, 0.0), "bulk")), Lookup::Hit(_)));
    assert!(matches!(c.lookup(&query(&[2; 32], &vector(6, 0.0), "bulk")), Lookup::Miss { .. }));
}
