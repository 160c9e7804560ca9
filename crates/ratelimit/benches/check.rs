//! `cargo bench -p ratelimit`: the cost of one check, and how checks on distinct keys scale
//! across threads.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ratelimit::{Quota, RateLimiter};

fn limiter() -> RateLimiter {
    // Generous enough that every check passes: we measure the check, not refusals.
    RateLimiter::new(
        Quota::new(u32::MAX, Duration::from_secs(1)).expect("a valid quota"),
        10_000,
    )
}

fn single_thread(c: &mut Criterion) {
    let mut group = c.benchmark_group("check");
    group.throughput(Throughput::Elements(1));
    let l = limiter();
    group.bench_function("hot key", |b| {
        b.iter(|| l.check(black_box("user:3f2a9c"), 1))
    });

    let keys: Vec<String> = (0..10_000)
        .map(|i| format!("ip:10.0.{}.{}", i / 256, i % 256))
        .collect();
    for key in &keys {
        l.check(key, 1);
    }
    // A fixed pseudo-random walk over the 10,000 keys (no RNG cost inside the loop).
    let order: Vec<usize> = (0..10_000).map(|i| (i * 7_919) % 10_000).collect();
    let mut at = 0;
    group.bench_function("random key of 10,000", |b| {
        b.iter(|| {
            at = (at + 1) % order.len();
            l.check(black_box(&keys[order[at]]), 1)
        })
    });
    group.finish();
}

fn two_threads(c: &mut Criterion) {
    let mut group = c.benchmark_group("distinct keys");
    for threads in [1usize, 2] {
        group.throughput(Throughput::Elements(threads as u64));
        group.bench_function(format!("{threads} thread(s), one check each"), |b| {
            b.iter_custom(|iterations| {
                let l = Arc::new(limiter());
                let start = Instant::now();
                let handles: Vec<_> = (0..threads)
                    .map(|t| {
                        let l = Arc::clone(&l);
                        std::thread::spawn(move || {
                            let keys: Vec<String> = (0..64).map(|i| format!("t{t}-k{i}")).collect();
                            for i in 0..iterations {
                                black_box(l.check(&keys[(i % 64) as usize], 1));
                            }
                        })
                    })
                    .collect();
                for h in handles {
                    h.join().expect("bench thread");
                }
                start.elapsed()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, single_thread, two_threads);
criterion_main!(benches);
