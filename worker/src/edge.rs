//! The edge: routes `/rooms/:room/*` to the room's Durable Object after everything that can be
//! checked without waking it. The policy is `roomcast_protocol::api` (pure, tested natively);
//! this file only reads the platform (headers, vars, the URL, the rate limiter, the clock,
//! randomness), asks the policy, and carries out the answer. The identity the room trusts travels
//! in a header the edge sets on a request it builds itself, so a client cannot forge it.

use crate::{http, platform};
use roomcast_protocol::api::admission::{self, offers_subprotocol, AuthConfig, Upgrade};
use roomcast_protocol::api::call::{RoomRequest, CALL_PATH};
use roomcast_protocol::api::client_ip::{self, Runtime, UpgradeBudget};
use roomcast_protocol::api::creation;
use roomcast_protocol::api::{
    dev_token, origin, query, request_url, Endpoint, Refusal, RefusalKind, Route, CONNECT_HEADER, EDGE_VARS, SESSION_HEADER,
};
use roomcast_protocol::config::RoomConfig;
use worker::{Env, Headers, Method, Request, Response, Result};

/// Why a request was not answered normally: the policy refused it, or the platform failed.
enum Failure {
    Refused(Refusal),
    Platform(worker::Error),
}

impl From<Refusal> for Failure {
    fn from(r: Refusal) -> Failure {
        Failure::Refused(r)
    }
}

impl From<worker::Error> for Failure {
    fn from(e: worker::Error) -> Failure {
        Failure::Platform(e)
    }
}

impl From<serde_json::Error> for Failure {
    fn from(e: serde_json::Error) -> Failure {
        Failure::Platform(e.into())
    }
}

/// The room's answer as the runtime's own Response object (see [`api_call`]).
type Outcome = std::result::Result<web_sys::Response, Failure>;

/// The answer is the runtime's own Response type: an upgrade is answered with the room's response
/// object as it came (see [`connect`]); everything else is converted once at the end.
pub async fn handle(req: Request, env: Env) -> Result<web_sys::Response> {
    // The URL as the runtime serialized it, read without parsing it again (`request_url`).
    let url = req.inner().url();
    let raw_query = request_url::query(&url).to_owned();
    let method = match req.method() {
        Method::Get => roomcast_protocol::api::Method::Get,
        Method::Post => roomcast_protocol::api::Method::Post,
        Method::Delete => roomcast_protocol::api::Method::Delete,
        Method::Options => roomcast_protocol::api::Method::Options,
        _ => roomcast_protocol::api::Method::Other,
    };
    let upgrade = header(&req, "Upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
    let protocols = header(&req, "Sec-WebSocket-Protocol").unwrap_or_default();
    let outcome = match roomcast_protocol::api::route(method, request_url::path(&url)) {
        Ok(Route::DevToken) => return dev_token(&req, &env, &raw_query).map(Into::into),
        Ok(Route::Room { room, endpoint: Endpoint::Connect }) => connect(&req, &env, &room, &raw_query, &protocols, upgrade).await,
        Ok(Route::Session) => connect_session(&req, &env, &raw_query, &protocols, upgrade).await,
        Ok(Route::CloseSession { user }) => close_session(&req, &env, &user).await,
        Ok(Route::Preflight { .. }) => return preflight(&req, &env).map(Into::into),
        Ok(Route::Room { room, endpoint: Endpoint::History }) => {
            // Pages on allowed origins read history (CORS): the answer, refusals included, carries
            // their origin so the browser lets the page read it.
            let origin = header(&req, "Origin");
            let cors = origin::cors_origin(origin.as_deref(), &var(&env, "ALLOWED_ORIGINS")).map(str::to_owned);
            let answer = match api_call(req, &env, &room, Endpoint::History, &raw_query).await {
                Ok(response) => {
                    let status = response.status();
                    let retry_after = response.headers().get("Retry-After").ok().flatten();
                    let rebuilt = http::json_text(status, platform::response_text(&response).await?, cors.as_deref())?;
                    match retry_after {
                        // A read-budget 429 keeps its Retry-After, readable by the page too.
                        Some(seconds) => {
                            rebuilt.headers().set("Retry-After", &seconds)?;
                            if cors.is_some() {
                                rebuilt.headers().set("Access-Control-Expose-Headers", "Retry-After")?;
                            }
                            Ok(rebuilt)
                        }
                        None => Ok(rebuilt),
                    }
                }
                Err(Failure::Refused(r)) => http::refused(&r, cors.as_deref()),
                Err(Failure::Platform(e)) => Err(e),
            };
            return answer.map(Into::into);
        }
        Ok(Route::Room { room, endpoint }) => api_call(req, &env, &room, endpoint, &raw_query).await,
        Err(r) => Err(r.into()),
    };
    match outcome {
        Ok(response) => Ok(response),
        Err(Failure::Platform(e)) => Err(e),
        // Every refused upgrade that asked with errors=close (the SDK does: browsers cannot read a
        // refused upgrade's status or body) gets its close code, whatever refused it: the route
        // and the room name included.
        Err(Failure::Refused(r)) if upgrade && query::errors_as_close(&raw_query) => {
            http::refused_socket(&r, offers_subprotocol(&protocols)).map(Into::into)
        }
        Err(Failure::Refused(r)) => http::refused(&r, None).map(Into::into),
    }
}

/// An admitted upgrade goes to the room, and the room's response goes back as the same object:
/// rebuilt into a new Response (as `worker::Response` does), its WebSocket is pumped through one
/// more pipe in the runtime, a cost on every frame (bench/README.md).
async fn connect(
    req: &Request,
    env: &Env,
    room: &str,
    raw_query: &str,
    protocols: &str,
    upgrade: bool,
) -> std::result::Result<web_sys::Response, Failure> {
    if !upgrade {
        return Err(Refusal::new(RefusalKind::UpgradeRequired, "expected a WebSocket upgrade").into());
    }
    origin::check_socket_origin(header(req, "Origin").as_deref(), &var(env, "ALLOWED_ORIGINS"))?;
    let credentials = Credentials::of(env, var(env, "ANONYMOUS_ROOMS"));
    let config = credentials.auth();
    let upgrade = Upgrade { room, query: raw_query, protocols };
    let admitted = admission::admit(&upgrade, &config, platform::now_ms(), || platform::random_hex(12));
    // The rate check comes after the token's, so that upgrades without a valid token spend a
    // budget of their own and cannot lock out the address's users with tokens.
    let address = address_key(req, env);
    check_upgrade_rate(env, &address, UpgradeBudget::of(&admitted)).await?;
    let mut info = admitted?;
    // An anonymous connection's new rooms are counted by its address (api::creation).
    creation::record_address(&mut info, &address);
    let headers = Headers::new();
    headers.set("Upgrade", "websocket")?;
    headers.set(CONNECT_HEADER, &serde_json::to_string(&info)?)?;
    let internal = platform::internal_request("https://room/ws", "GET", &headers, None)?;
    Ok(platform::fetch_room(&env.durable_object("ROOMS")?, room, &internal).await?)
}

/// A session upgrade: the same origin, token and upgrade-rate checks as a room's, then to the
/// session object of the token's user, which answers with its own socket.
async fn connect_session(
    req: &Request,
    env: &Env,
    raw_query: &str,
    protocols: &str,
    upgrade: bool,
) -> std::result::Result<web_sys::Response, Failure> {
    if !upgrade {
        return Err(Refusal::new(RefusalKind::UpgradeRequired, "expected a WebSocket upgrade").into());
    }
    origin::check_socket_origin(header(req, "Origin").as_deref(), &var(env, "ALLOWED_ORIGINS"))?;
    let credentials = Credentials::of(env, String::new());
    let config = credentials.auth();
    let admitted = admission::admit_session(raw_query, protocols, &config, platform::now_ms(), || platform::random_hex(12));
    let budget = if admitted.is_ok() { UpgradeBudget::Token } else { UpgradeBudget::Unverified };
    check_upgrade_rate(env, &address_key(req, env), budget).await?;
    let connect = admitted?;
    let headers = Headers::new();
    headers.set("Upgrade", "websocket")?;
    headers.set(SESSION_HEADER, &serde_json::to_string(&connect)?)?;
    let internal = platform::internal_request("https://session/ws", "GET", &headers, None)?;
    Ok(platform::fetch_room(&env.durable_object("SESSIONS")?, &connect.claims.sub, &internal).await?)
}

/// `DELETE /sessions/:user` (API key only): the user's session object closes every socket of
/// theirs with 4411 and answers how many.
async fn close_session(req: &Request, env: &Env, user: &str) -> Outcome {
    let credentials = Credentials::of(env, String::new());
    let config = credentials.auth();
    let authorization = header(req, "Authorization");
    admission::authorize_api(authorization.as_deref(), &config, "", roomcast_protocol::api::Access::Key, platform::now_ms())?;
    let sessions = env.durable_object("SESSIONS")?;
    match platform::call_object(&sessions, user, "/close", "").await {
        Some(body) => Ok(http::json_text(200, body, None)?.into()),
        None => Err(Refusal::new(RefusalKind::Unavailable, "the session could not be reached").into()),
    }
}

/// The per-IP upgrade limits: the budget an upgrade spends (`client_ip::UpgradeBudget`) is held
/// by the rate-limiting binding the var `UPGRADE_LIMITER` names (default `UPGRADES_PER_IP`) for
/// upgrades admitted with a token, and `UNVERIFIED_UPGRADE_LIMITER` (default
/// `UNVERIFIED_UPGRADES_PER_IP`) for the rest. An empty `UPGRADE_LIMITER` turns both off, as the
/// load and reconnect-storm tests do, which connect thousands of clients from one address. The key
/// is the platform's `CF-Connecting-IP` when deployed and one shared key under `wrangler dev`,
/// where that header can come from the client: see `roomcast_protocol::api::client_ip`.
async fn check_upgrade_rate(env: &Env, address: &str, budget: UpgradeBudget) -> std::result::Result<(), Refusal> {
    let (normal, unverified) = (var(env, "UPGRADE_LIMITER"), var(env, "UNVERIFIED_UPGRADE_LIMITER"));
    let Some(binding) = budget.limiter(&normal, &unverified) else { return Ok(()) };
    let Ok(limiter) = env.rate_limiter(binding) else { return Ok(()) };
    match platform::rate_limit(&limiter, address).await {
        Some(false) => Err(budget.refusal()),
        // If the limiter itself fails, connections are let through rather than refused.
        _ => Ok(()),
    }
}

/// The client's address as the per-IP limits key it (`client_ip::upgrade_limit_key`). Local
/// development is told by configuration a client cannot reach: the dev-token switch, which only
/// the setup's .dev.vars sets and `wrangler deploy` never uploads.
fn address_key(req: &Request, env: &Env) -> String {
    let runtime = if dev_tokens_enabled(env) { Runtime::LocalDevelopment } else { Runtime::Production };
    client_ip::upgrade_limit_key(header(req, "CF-Connecting-IP").as_deref(), runtime).to_owned()
}

/// The HTTP API: authorize the caller, parse and check the query or body (`api::call`), and
/// forward the call in its one canonical form, with who is calling (the backend for the API key,
/// the token's own user for a token), in a request the edge builds itself. Anything refused here
/// never wakes the room.
async fn api_call(mut req: Request, env: &Env, room: &str, endpoint: Endpoint, raw_query: &str) -> Outcome {
    let credentials = Credentials::of(env, String::new());
    let config = credentials.auth();
    let authorization = header(&req, "Authorization");
    let caller = admission::authorize_api(authorization.as_deref(), &config, room, endpoint.access(), platform::now_ms())?;
    let limits = RoomConfig::from_vars(|name| env.var(name).ok().map(|v| v.to_string()));
    let body = match endpoint {
        Endpoint::Publish => {
            // Refused before it is read when it says it is too large, and read only with a length
            // (a chunked body could be any size); its text is checked again once read.
            match header(&req, "Content-Length").and_then(|l| l.trim().parse::<usize>().ok()) {
                None => return Err(Refusal::new(RefusalKind::LengthRequired, "a publish needs a Content-Length").into()),
                Some(l) if l > limits.max_publish_body() => {
                    return Err(Refusal::new(RefusalKind::TooLarge, "request body is larger than a batch may be").into())
                }
                Some(_) => Some(req.text().await?),
            }
        }
        Endpoint::Kick => Some(req.text().await?),
        _ => None,
    };
    let request = RoomRequest::build(endpoint, raw_query, body.as_deref(), caller, &limits)?;
    let internal = platform::internal_request(&format!("https://room{CALL_PATH}"), "POST", &Headers::new(), Some(&request.to_json()))?;
    Ok(platform::fetch_room(&env.durable_object("ROOMS")?, room, &internal).await?)
}

/// `OPTIONS /rooms/:room/history`: a page on an allowed origin may GET it with an Authorization
/// header; any other origin is refused.
fn preflight(req: &Request, env: &Env) -> Result<Response> {
    let origin = header(req, "Origin");
    let Some(allowed) = origin::cors_origin(origin.as_deref(), &var(env, "ALLOWED_ORIGINS")) else {
        return http::refused(&Refusal::forbidden("this origin may not read this room's history"), None);
    };
    let headers = Headers::new();
    headers.set("Access-Control-Allow-Origin", allowed)?;
    headers.set("Access-Control-Allow-Methods", "GET")?;
    headers.set("Access-Control-Allow-Headers", "Authorization")?;
    headers.set("Access-Control-Max-Age", "600")?;
    headers.set("Vary", "Origin")?;
    Ok(Response::empty()?.with_status(204).with_headers(headers))
}

/// `GET /dev/token`: only when `ROOMCAST_DEV_TOKENS` is "1" (the setup writes it into `.dev.vars`;
/// `wrangler deploy` never uploads that file), only on a loopback `Host` (or one `DEV_TOKEN_HOSTS`
/// names), and only for loopback origins and requests without an origin.
fn dev_token(req: &Request, env: &Env, raw_query: &str) -> Result<Response> {
    if !dev_tokens_enabled(env) {
        return http::refused(&Refusal::not_found("no such endpoint; see docs/PROTOCOL.md"), None);
    }
    let (given, host) = (header(req, "Origin"), header(req, "Host"));
    let cors = match origin::check_dev_token_request(given.as_deref(), host.as_deref(), &var(env, "DEV_TOKEN_HOSTS")) {
        Ok(cors) => cors,
        Err(r) => return http::refused(&r, None),
    };
    match dev_token::dev_token(raw_query, &secret(env, "ROOMCAST_SECRET"), platform::now_ms()) {
        Ok(token) => http::json_text(200, token.to_json(), cors),
        Err(r) => http::refused(&r, cors),
    }
}

fn dev_tokens_enabled(env: &Env) -> bool {
    env.var("ROOMCAST_DEV_TOKENS").map(|v| v.to_string() == "1").unwrap_or(false)
        || env.secret("ROOMCAST_DEV_TOKENS").map(|v| v.to_string() == "1").unwrap_or(false)
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

/// One of the edge's vars, or its value when unset (`api::EDGE_VARS`).
fn var(env: &Env, name: &str) -> String {
    env.var(name).map(|v| v.to_string()).unwrap_or_else(|_| EDGE_VARS.iter().find(|(n, _)| *n == name).map_or("", |(_, d)| d).to_owned())
}

/// What checks a token or an API key, read from the Worker's secrets (and the anonymous rooms an
/// upgrade may admit); one place for every route that authorizes.
struct Credentials {
    secret: String,
    previous_secret: String,
    api_key: String,
    previous_api_key: String,
    anonymous_rooms: String,
}

impl Credentials {
    fn of(env: &Env, anonymous_rooms: String) -> Credentials {
        Credentials {
            secret: secret(env, "ROOMCAST_SECRET"),
            previous_secret: secret(env, "ROOMCAST_SECRET_PREVIOUS"),
            api_key: secret(env, "ROOMCAST_API_KEY"),
            previous_api_key: secret(env, "ROOMCAST_API_KEY_PREVIOUS"),
            anonymous_rooms,
        }
    }

    fn auth(&self) -> AuthConfig<'_> {
        AuthConfig {
            secret: &self.secret,
            previous_secret: &self.previous_secret,
            api_key: &self.api_key,
            previous_api_key: &self.previous_api_key,
            anonymous_rooms: &self.anonymous_rooms,
        }
    }
}

/// A secret, or "" when it is not set (the policy treats "" as not configured).
fn secret(env: &Env, name: &str) -> String {
    env.secret(name).map(|s| s.to_string()).unwrap_or_default()
}
