//! The live dashboard at `/`, served by both listeners (SPEC §9): one page of plain
//! HTML, CSS and JavaScript embedded in the binary (no CDN, no font, no framework), fed by
//! the server-sent events of `GET /v1/live` (`live.rs`), and acting only through the
//! API's existing operator endpoints with the bearer token the user pastes in.
//!
//! Owns: the page's routes (`/`, `/assets/NAME`), their headers (content types,
//! revalidation with an `ETag`, a Content-Security-Policy that allows no inline script or
//! style and no other origin, `nosniff`, no framing, no referrer), the live feed, and
//! `GET /v1/whoami`, which tells the page whether its token is accepted.
//! Must not: act on a service itself, or take a credential from anything but what the
//! gate already checks (`http.rs`: the `Authorization` header over TCP). The page keeps
//! the token in `sessionStorage` and sends it only in that header.

mod live;

use axum::Router;
use axum::extract::{Extension, Path as UrlPath};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

pub(super) use live::Live;
pub use live::{EVERY, MAX_CLIENTS, RECENT_ENTRIES};

use super::server::{ApiError, ApiResult, AppState, Peer, json};
use crate::ledger::Caller;
use crate::render as output;
use crate::service::operator;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const INDEX: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    body: include_bytes!("index.html"),
};

/// What `/assets/NAME` serves.
const ASSETS: &[Asset] = &[
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("app.css"),
    },
    Asset {
        name: "icon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("icon.svg"),
    },
];

/// Only this origin's script, style, images and connections; nothing inline, no
/// plugins, no `<base>`, no form submission, no framing by another page.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The page and its files: always revalidated (`no-cache` with an `ETag`), so a new
/// binary's page is never mixed with an old script, and an unchanged one costs a 304.
const CACHE_CONTROL: &str = "no-cache";

/// The dashboard's routes, merged into the API's (`server::routes`).
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/assets/{name}", get(asset))
        .route("/v1/live", get(live::stream))
        .route("/v1/whoami", get(whoami))
}

async fn index(headers: HeaderMap) -> Response {
    serve(&INDEX, &headers)
}

async fn asset(UrlPath(name): UrlPath<String>, headers: HeaderMap) -> ApiResult {
    ASSETS
        .iter()
        .find(|a| a.name == name)
        .map(|a| serve(a, &headers))
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no asset `{name}`")))
}

/// 64-bit FNV-1a of the file: its validator, the same for the same bytes in any build.
fn etag(body: &[u8]) -> String {
    let hash = body.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("\"{hash:016x}\"")
}

fn serve(asset: &Asset, request: &HeaderMap) -> Response {
    let tag = etag(asset.body);
    let unchanged = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let t = t.trim();
            t == "*" || t.trim_start_matches("W/") == tag
        });
    let mut response = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
    };
    let headers = response.headers_mut();
    if let Ok(tag) = HeaderValue::from_str(&tag) {
        headers.insert(header::ETAG, tag);
    }
    for (name, value) in [
        (header::CACHE_CONTROL, CACHE_CONTROL),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            header::HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        (
            header::HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// `GET /v1/whoami`: who the API takes the caller for. Over TCP it is behind the token
/// like every route that is not a public read, so a 200 tells the page its token is
/// accepted; on the control socket it names the peer's user.
async fn whoami(Extension(peer): Extension<Peer>) -> ApiResult {
    let caller = match peer {
        Peer::Local { uid: Some(uid) } => operator::caller_of(uid),
        Peer::Remote { addr } => Caller::token(addr),
        Peer::Local { uid: None } => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "the caller's credentials are unknown (not a unix socket peer)",
            ));
        }
    };
    Ok(json(&serde_json::json!({
        "version": output::JSON_VERSION,
        "uid": caller.uid,
        "user": caller.user,
        "from": caller.from,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_files_fit_a_first_load_of_150_kb() {
        let total: usize = INDEX.body.len() + ASSETS.iter().map(|a| a.body.len()).sum::<usize>();
        assert!(total < 150 * 1024, "{total} bytes");
    }

    #[test]
    fn the_page_references_exactly_its_embedded_files_and_nothing_inline() {
        let page = std::str::from_utf8(INDEX.body).expect("utf-8");
        for asset in ASSETS {
            assert!(
                page.contains(&format!("/assets/{}", asset.name)),
                "{}",
                asset.name
            );
        }
        // What the CSP would block anyway: an inline script or style, an inline handler,
        // another origin.
        for banned in [
            "<style",
            " style=",
            " onclick=",
            " onload=",
            "http://",
            "https://",
            "javascript:",
        ] {
            assert!(!page.contains(banned), "index.html contains {banned:?}");
        }
        assert!(!page.contains("<script>"), "an inline script");
    }

    #[test]
    fn an_etag_is_the_same_for_the_same_bytes() {
        assert_eq!(etag(b"abc"), etag(b"abc"));
        assert_ne!(etag(b"abc"), etag(b"abd"));
        assert_eq!(etag(b"").len(), 18);
    }
}
