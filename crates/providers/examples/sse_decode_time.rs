//! How long the SSE decoder takes for one large event, fed in 8 KiB reads as a socket would
//! deliver it. Decoding is linear: doubling the event doubles the time.
//!
//! ```sh
//! cargo run --release -p providers --example sse_decode_time
//! ```

use std::collections::VecDeque;
use std::time::Instant;

use providers::sse::SseDecoder;

fn main() {
    for mib in [1usize, 2, 4, 8] {
        let mut stream = b"data: ".to_vec();
        stream.extend(std::iter::repeat_n(b'x', mib * 1024 * 1024));
        stream.extend_from_slice(b"\n\n");
        let mut decoder = SseDecoder::new(usize::MAX);
        let mut events = VecDeque::new();
        let start = Instant::now();
        for read in stream.chunks(8 * 1024) {
            if let Err(e) = decoder.feed(read, &mut events) {
                eprintln!("{e}");
                return;
            }
        }
        let elapsed = start.elapsed();
        let bytes: usize = events.iter().map(|e| e.data.len()).sum();
        println!("{mib} MiB event in 8 KiB reads: {elapsed:?} ({bytes} bytes of data)");
    }
}
