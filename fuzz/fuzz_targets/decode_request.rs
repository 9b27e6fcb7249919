//! Fuzzes the server's decode path for a client's byte stream: `parse_frame` splits the input
//! into frames, the first decodes as a `ConnectRequest`, every later one as a `RequestHeader`
//! and a request body. Besides panics, it reports any decoded value that does not survive
//! re-encoding (see `proto/tests/common/stream.rs`, which `cargo test` also runs over the seed
//! corpus in `fuzz/corpus-seed/decode_request/`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../proto/tests/common/stream.rs"]
mod stream;

fuzz_target!(|data: &[u8]| {
    stream::decode_stream(data);
});
