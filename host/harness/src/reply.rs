//! [`Reply`]: a builder for the answer to an http call a filter dispatched.

use wasmgate_abi::{HeaderMap, HttpCallResponse};

/// The response to an http call, built fluently and handed to
/// [`crate::HttpStream::respond_http_call`] or [`crate::Filter::respond_http_call`].
///
/// ```
/// use wasmgate_harness::Reply;
/// let reply = Reply::status(200).header("x-auth", "ok").body("welcome");
/// let response: wasmgate_abi::HttpCallResponse = reply.into();
/// assert_eq!(response.headers.get_str(":status"), Some("200"));
/// assert_eq!(response.body, b"welcome");
/// ```
#[derive(Clone, Debug)]
pub struct Reply {
    response: HttpCallResponse,
}

impl Reply {
    /// A response with this HTTP status (the `:status` pseudo header).
    pub fn status(status: u16) -> Reply {
        let mut headers = HeaderMap::new();
        headers.add(":status", status.to_string());
        Reply {
            response: HttpCallResponse {
                headers,
                ..HttpCallResponse::default()
            },
        }
    }

    /// Adds a response header (name stored in lower case).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Reply {
        self.response
            .headers
            .add(name.into().to_ascii_lowercase(), value.into());
        self
    }

    /// Sets the response body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.response.body = body.into();
        self
    }

    /// Adds a response trailer (name stored in lower case).
    pub fn trailer(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Reply {
        self.response
            .trailers
            .add(name.into().to_ascii_lowercase(), value.into());
        self
    }
}

impl From<Reply> for HttpCallResponse {
    fn from(reply: Reply) -> HttpCallResponse {
        reply.response
    }
}
