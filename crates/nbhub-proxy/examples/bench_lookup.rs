//! Route lookup cost with 10 and with 10,000 routes, in-process (for bench/proxy).
//!
//! `bench_lookup`: prints `<ns per lookup, 10 routes> <ns per lookup, 10,000 routes>`, each the
//! best of five runs of a million lookups of `/user/u5/lab/tree/notebook.ipynb` (the best,
//! because anything else on the machine only ever adds time).
use std::hint::black_box;
use std::time::Instant;

use nbhub_proxy::routes::{Route, RouteTable, Target};
use serde_json::Map;

fn table(n: usize) -> RouteTable {
    let t = RouteTable::default();
    for i in 0..n {
        let target = format!("http://127.0.0.1:{}", 10000 + i % 50000);
        let mut data = Map::new();
        data.insert("target".into(), target.clone().into());
        data.insert("user".into(), format!("u{i}").into());
        let key = format!("/user/u{i}");
        t.insert(Route::new(
            &key,
            data,
            Target::parse(&target).expect("target"),
        ));
    }
    t
}

fn ns_per_lookup(t: &RouteTable) -> f64 {
    const N: u32 = 1_000_000;
    (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..N {
                let r = t.lookup(None, black_box("/user/u5/lab/tree/notebook.ipynb"));
                assert!(black_box(r).is_some());
            }
            start.elapsed().as_nanos() as f64 / f64::from(N)
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let (small, large) = (table(10), table(10_000));
    println!("{:.1} {:.1}", ns_per_lookup(&small), ns_per_lookup(&large));
}
