//! The DATA decoder, whole against pieces; only CRLF.CRLF ends the data.
//! The checks live in `postel_proto::sim::checks`, where the normal test
//! suite replays this target's corpus through them too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| postel_proto::sim::checks::data(data));
