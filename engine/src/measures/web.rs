//! The dashboard's files, embedded in the binary at build time from the repository's
//! `dashboard/` directory and served on the gRPC port over plain HTTP: `/` is the page,
//! every other file is at its path under `dashboard/`, and `/poplar-descriptors.binpb` is
//! the encoded descriptors of Poplar's protocol, from which the page builds its gRPC-Web
//! client at run time (so no generated code is shipped). Nothing is fetched from anywhere
//! else: the content security policy says so to the browser too.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Uri, header};
use include_dir::{Dir, include_dir};

static DASHBOARD: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../dashboard");

/// Where the protocol's descriptors are served.
pub const DESCRIPTORS_PATH: &str = "/poplar-descriptors.binpb";

/// Same-origin everything: no inline script, no outside fetch.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        Some("txt" | "md") => "text/plain; charset=utf-8",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// The file a path names, if the dashboard has it (`/` is `index.html`).
fn file(path: &str) -> Option<(&'static [u8], &'static str)> {
    if path == DESCRIPTORS_PATH {
        return Some((poplar_proto::FILE_DESCRIPTOR_SET, content_type(path)));
    }
    let relative = match path.trim_start_matches('/') {
        "" => "index.html",
        other => other,
    };
    // include_dir paths never climb out of the directory; refuse anything that tries.
    if relative.split('/').any(|part| part == ".." || part.is_empty()) {
        return None;
    }
    DASHBOARD
        .get_file(relative)
        .map(|f| (f.contents(), content_type(relative)))
}

/// Answer a request that no gRPC service took: a gRPC call to a method the server does
/// not have is told so in gRPC's terms; anything else is a plain HTTP request for a file.
pub async fn serve(method: Method, uri: Uri, headers: HeaderMap) -> Response<Body> {
    let grpc = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if grpc {
        return unimplemented();
    }
    let mut response = if method != Method::GET && method != Method::HEAD {
        plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD are served here")
    } else {
        match file(uri.path()) {
            Some((bytes, kind)) => {
                let body = if method == Method::HEAD {
                    Body::empty()
                } else {
                    Body::from(bytes)
                };
                let mut response = Response::new(body);
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
                response
            }
            None => plain(StatusCode::NOT_FOUND, "not found"),
        }
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // The files change only with the binary; a browser re-checks so an upgrade shows.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// gRPC's "no such method": status 12 in the headers of an otherwise empty answer.
fn unimplemented() -> Response<Body> {
    let mut response = Response::new(Body::empty());
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from_static("12"));
    headers.insert("grpc-message", HeaderValue::from_static("no such service or method"));
    response
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cannot_climb_out_and_descriptors_are_served() {
        assert!(file("/../Cargo.toml").is_none());
        assert!(file("/vendor//x.js").is_none());
        assert!(file("/no-such-file.js").is_none());
        let (bytes, kind) = file(DESCRIPTORS_PATH).expect("descriptors");
        assert_eq!(bytes, poplar_proto::FILE_DESCRIPTOR_SET);
        assert_eq!(kind, "application/octet-stream");
        assert_eq!(content_type("app.js"), "text/javascript; charset=utf-8");
    }
}
