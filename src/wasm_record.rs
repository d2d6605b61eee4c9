//! Glue (wasm32 only): declares the decision property and writes the
//! decision record ([`crate::metadata`]) to it, where Envoy's access log
//! (`%FILTER_STATE(wasm.mpass_guard:TYPED)%`) and RBAC's CEL read it.
//! Host calls only; the record is built by the engine's decision.

use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, Status};

use crate::metadata;

/// Declares [`metadata::PROPERTY`] as a read-only `Struct` on this root.
/// Returns false when the host refused it for another reason than that it
/// is already declared.
pub(crate) fn declare_decision_property() -> bool {
    let args = metadata::declare_property_arguments(metadata::PROPERTY, true);
    match hostcalls::call_foreign_function(metadata::DECLARE_PROPERTY, Some(&args)) {
        // BadArgument: already declared on this root (a second on_configure).
        Ok(_) | Err(Status::BadArgument) => true,
        Err(status) => {
            let _ = hostcalls::log(
                LogLevel::Error,
                &format!("mpass-guard: declare_property failed: {status:?}"),
            );
            false
        }
    }
}

#[link(wasm_import_module = "env")]
extern "C" {
    #[link_name = "proxy_set_property"]
    fn host_set_property(
        path: *const u8,
        path_len: usize,
        value: *const u8,
        value_len: usize,
    ) -> u32;
}

/// Writes the serialized record ([`metadata::DecisionRecord::encode`]) to the
/// property; the host status on failure.
pub(crate) fn publish_decision(value: &[u8]) -> Result<(), u32> {
    let path = metadata::PROPERTY.as_bytes();
    // SAFETY: both buffers outlive the call; the host only reads them.
    let status =
        unsafe { host_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) };
    if status == 0 {
        Ok(())
    } else {
        Err(status)
    }
}
