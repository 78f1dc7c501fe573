//! The per-request caller: read once from the `Authorization` header (HTTP) or the websocket's
//! `connection_init` payload, then available to every resolver.

use std::net::{IpAddr, SocketAddr};

use axum::http::{HeaderMap, HeaderValue};

use uuid::Uuid;

use super::TokenKeys;
use crate::error::{Error, Result};

/// A signed-in caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The user's id.
    pub user_id: Uuid,
    /// Whether the token was issued to an admin.
    pub is_admin: bool,
    /// When the token expires, seconds since the epoch.
    pub expires_at: i64,
    /// The session the token belongs to (none for tokens of older releases); ending it ends the
    /// caller's websockets too.
    pub session_id: Option<Uuid>,
}

/// Who is calling.
///
/// A request with a bad token is not anonymous: anything that asks who is calling gets
/// UNAUTHENTICATED, so a client learns its token went bad instead of silently seeing less. Only
/// operations that need no identity (signup, login, refresh) ignore it.
#[derive(Clone, Debug, Default)]
pub enum Viewer {
    /// No credentials were sent.
    #[default]
    Anonymous,
    /// A valid access token.
    User(Identity),
    /// Credentials were sent but are not valid.
    Invalid,
}

impl Viewer {
    /// Reads an `Authorization` value: `Bearer <jwt>` (the scheme is case-insensitive; a bare token
    /// is accepted too, for websocket clients that send `token`).
    pub fn from_credentials(value: Option<&str>, keys: &TokenKeys) -> Self {
        let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
            return Self::Anonymous;
        };
        let token = match value.split_once(' ') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
            Some(_) => return Self::Invalid,
            None => value,
        };
        match keys.verify(token) {
            Ok(claims) => Self::User(Identity {
                user_id: claims.sub,
                is_admin: claims.role == "ADMIN",
                expires_at: claims.exp,
                session_id: claims.sid,
            }),
            Err(_) => Self::Invalid,
        }
    }

    /// Reads an `Authorization` header as [`Viewer::from_credentials`] does; one that is not
    /// visible ASCII (no token is) was sent and is not valid.
    pub fn from_header(header: Option<&HeaderValue>, keys: &TokenKeys) -> Self {
        match header.map(HeaderValue::to_str) {
            None => Self::Anonymous,
            Some(Ok(value)) => Self::from_credentials(Some(value), keys),
            Some(Err(_)) => Self::Invalid,
        }
    }

    /// The caller if signed in; `None` if anonymous; UNAUTHENTICATED for a bad token.
    pub fn identity(&self) -> Result<Option<Identity>> {
        match self {
            Self::Anonymous => Ok(None),
            Self::User(identity) => Ok(Some(*identity)),
            Self::Invalid => Err(Error::Unauthenticated("invalid or expired access token")),
        }
    }

    /// The caller, who must be signed in.
    pub fn require(&self) -> Result<Identity> {
        self.identity()?
            .ok_or(Error::Unauthenticated("sign in to do this"))
    }
}

/// The client's network address, for per-address rate limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl ClientAddr {
    /// The client of a request: the peer, or the last `X-Forwarded-For` hop when a trusted proxy
    /// sets it (`trust_proxy`: only behind a proxy that adds the hop it saw). Several header lines
    /// are one list in order (RFC 9110, 5.3), and a proxy may add its own line after the client's:
    /// the hop is the last of the last line, never one the client wrote.
    pub fn from_request(headers: &HeaderMap, peer: SocketAddr, trust_proxy: bool) -> Self {
        if trust_proxy {
            let forwarded = headers
                .get_all("x-forwarded-for")
                .iter()
                .next_back()
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .and_then(|hop| hop_address(hop.trim()));
            if let Some(address) = forwarded {
                return Self(address);
            }
        }
        Self(peer.ip())
    }
}

/// The address of one `X-Forwarded-For` hop: an address, or an address and port as some proxies
/// write it (`1.2.3.4:5678`, `[2001:db8::1]:5678`).
fn hop_address(hop: &str) -> Option<IpAddr> {
    hop.parse()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|socket| socket.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn only_trusted_proxies_name_the_client() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 10.0.0.9"),
        );
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let addr = |trust| {
            ClientAddr::from_request(&headers, peer, trust)
                .0
                .to_string()
        };
        assert_eq!(addr(false), "127.0.0.1");
        assert_eq!(addr(true), "10.0.0.9");
    }

    #[test]
    fn the_hop_is_read_off_the_last_header_line() {
        let mut headers = HeaderMap::new();
        // The client's own line first, then the one its proxy added.
        headers.append("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        headers.append("x-forwarded-for", HeaderValue::from_static("10.0.0.9"));
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let client = ClientAddr::from_request(&headers, peer, true);
        assert_eq!(client.0.to_string(), "10.0.0.9");
    }

    #[test]
    fn a_hop_written_with_its_port_names_its_address() {
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        for (hop, address) in [
            ("10.0.0.9:5678", "10.0.0.9"),
            ("[2001:db8::7]:443", "2001:db8::7"),
            ("2001:db8::7", "2001:db8::7"),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert("x-forwarded-for", HeaderValue::from_static(hop));
            let client = ClientAddr::from_request(&headers, peer, true);
            assert_eq!(client.0.to_string(), address, "{hop}");
        }
    }
}
