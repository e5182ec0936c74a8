//! Fuzz target for the ONNX importer: arbitrary bytes must give a model or an error, never a
//! panic; models that import must export, re-import and build an interpreter (or report an
//! unsupported op) without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = mfq::onnx::from_bytes(data, None, "fuzz") {
        let _ = mfq::ir::dump::dump_model(&m);
        if let Ok(bytes) = mfq::onnx::to_bytes(&m) {
            let _ = mfq::onnx::from_bytes(&bytes, None, "fuzz-reexport");
        }
        let _ = mfq::interp::Interpreter::new(&m);
    }
});
