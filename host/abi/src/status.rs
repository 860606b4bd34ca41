//! ABI constants: [`Status`] codes returned to the guest, [`Action`]s it returns, and the
//! buffer, map, stream and metric type numbers of proxy-wasm 0.2.x.

/// `proxy_status_t`: what a host function returns to the guest.
///
/// The Rust SDK 0.2.x panics on any status it does not expect for a given call, so each
/// host function only returns the statuses listed for it in the SDK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Status {
    /// Success.
    Ok = 0,
    /// The key, buffer, property or queue does not exist.
    NotFound = 1,
    /// An argument is invalid (unknown upstream, bad context id, ...).
    BadArgument = 2,
    /// A value could not be serialized.
    SerializationFailure = 3,
    /// A value could not be parsed.
    ParseFailure = 4,
    /// The queue is empty.
    Empty = 7,
    /// Compare-and-swap failed.
    CasMismatch = 8,
    /// The host could not do it.
    InternalFailure = 10,
}

impl Status {
    /// The raw code.
    pub const fn code(self) -> u32 {
        self as u32
    }
}

/// What a stream callback tells the host to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Continue processing (proxy-wasm `CONTINUE` = 0).
    Continue,
    /// Stop iteration until the filter resumes the stream (proxy-wasm `PAUSE` = 1).
    Pause,
}

impl Action {
    /// Decodes the guest's return value; other values are invalid.
    pub fn from_code(code: u32) -> Option<Action> {
        match code {
            0 => Some(Action::Continue),
            1 => Some(Action::Pause),
            _ => None,
        }
    }
}

/// `proxy_buffer_type_t` values.
pub(crate) mod buffer {
    pub const HTTP_REQUEST_BODY: u32 = 0;
    pub const HTTP_RESPONSE_BODY: u32 = 1;
    pub const HTTP_CALL_RESPONSE_BODY: u32 = 4;
    pub const VM_CONFIGURATION: u32 = 6;
    pub const PLUGIN_CONFIGURATION: u32 = 7;
}

/// `proxy_map_type_t` values.
pub(crate) mod map {
    pub const HTTP_REQUEST_HEADERS: u32 = 0;
    pub const HTTP_REQUEST_TRAILERS: u32 = 1;
    pub const HTTP_RESPONSE_HEADERS: u32 = 2;
    pub const HTTP_RESPONSE_TRAILERS: u32 = 3;
    pub const HTTP_CALL_RESPONSE_HEADERS: u32 = 6;
    pub const HTTP_CALL_RESPONSE_TRAILERS: u32 = 7;
    /// The highest map type of the ABI; anything above is BAD_ARGUMENT, as in Envoy.
    pub const MAX: u32 = HTTP_CALL_RESPONSE_TRAILERS;
}

/// `proxy_stream_type_t` values.
pub(crate) mod stream_type {
    pub const HTTP_REQUEST: u32 = 0;
    pub const HTTP_RESPONSE: u32 = 1;
    pub const DOWNSTREAM: u32 = 2;
    pub const UPSTREAM: u32 = 3;
}
