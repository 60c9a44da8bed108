//! The raw HTTP/1.1 request parser behind `phi-gateway scan --http` (request line, headers,
//! chunked and Content-Length bodies), then `Engine::scan_request` over every part (path,
//! query, headers, body) with the default rule pack, as the command does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phi_gateway::engine::{http, ScanOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(req) = http::parse_request(data) else {
        return;
    };
    // The body is cut out of the input, never invented.
    assert!(req.body.len() <= data.len());
    let options = ScanOptions::route(None).explained(true);
    let _ = phi_gateway_fuzz::engine().scan_request(&req, &phi_gateway_fuzz::limits(), &options);
});
