//! The connection's authentication hooks (see [`crate::auth`]): the CONNECT's
//! authentication (password or enhanced), the AUTH exchange and re-authentication, and the
//! authorizer's checks. A child module of the connection driver, kept apart from it.

use std::sync::Arc;
use std::time::Duration;

use tern_codec::{Auth, AuthProperties, Connect, ReasonCode};

use super::{Connection, now};
use crate::auth::{Access, AuthExchange, AuthMethod, AuthStep, ConnectInfo, Decision};

/// A CONNECT that passed authentication.
pub(super) struct Authenticated {
    pub(super) connect: Box<Connect>,
    /// The username the authorizer uses.
    pub(super) username: Option<String>,
    /// CONNACK's Authentication Data (enhanced authentication).
    pub(super) data: Option<bytes::Bytes>,
}

/// An enhanced authentication exchange in progress.
pub(super) struct Exchange {
    method: Arc<dyn AuthMethod>,
    steps: Box<dyn AuthExchange>,
    /// The CONNECT it decides on; `None` for a re-authentication.
    connect: Option<Box<Connect>>,
}

impl Connection {
    /// The CONNECT as the authentication hooks see it.
    pub(super) fn connect_info<'a>(
        &'a self,
        connect: &'a Connect,
        username: Option<&'a str>,
    ) -> ConnectInfo<'a> {
        ConnectInfo {
            client_id: connect.client_id.as_str(),
            username,
            password: connect.password.as_deref(),
            peer: self.info.peer,
            listener: self.info.listener_addr(),
            protocol: connect.protocol,
            tls_identity: self.info.tls_identity.as_deref(),
        }
    }

    /// Authenticates a CONNECT: `Some` to accept it now, `None` when it was refused or an
    /// enhanced authentication exchange continues.
    pub(super) async fn authenticate(&mut self, connect: Box<Connect>) -> Option<Authenticated> {
        // CONNECT's, or the client certificate's identity (`use_identity_as_username`).
        let username = self
            .info
            .username(connect.username.as_ref())
            .unwrap_or(None)
            .map(|u| u.to_string());
        if let Some(name) = connect.properties.authentication_method.clone() {
            let Some(method) = self.shared.auth.method(&name).cloned() else {
                // Not offered [MQTT-4.12.0-1] (the server "MAY send a CONNACK with 0x8C").
                self.refuse(&connect, ReasonCode::BadAuthenticationMethod);
                return None;
            };
            let mut steps = method.start(&self.connect_info(&connect, username.as_deref()));
            let step = steps.step(connect.properties.authentication_data.as_deref());
            self.exchange = Some(Box::new(Exchange {
                method,
                steps,
                connect: Some(connect),
            }));
            return self.on_auth_step(step);
        }
        let allow_anonymous = self
            .info
            .allow_anonymous
            .unwrap_or(self.shared.auth.allow_anonymous);
        if username.is_none() && !allow_anonymous {
            tracing::info!(conn = self.id, client_id = %connect.client_id, peer = %self.info.peer, "anonymous client not allowed");
            self.refuse(&connect, ReasonCode::NotAuthorized);
            return None;
        }
        // A client identified by its certificate needs no password.
        if !self.info.identity_as_username
            && let Some(authenticator) = self.shared.auth.authenticator.clone()
        {
            let refusal = match self
                .check_password(authenticator, &connect, &username)
                .await
            {
                Some(Decision::Allow) => None,
                Some(Decision::BadCredentials) => Some(ReasonCode::BadUserNameOrPassword),
                Some(_) => Some(ReasonCode::NotAuthorized),
                // Too many checks waiting: 0x89 Server busy (3.1.1: 3 Server unavailable).
                None if connect.protocol.is_v5() => Some(ReasonCode::ServerBusy),
                None => Some(ReasonCode::ServerUnavailable),
            };
            if let Some(reason) = refusal {
                tracing::info!(conn = self.id, client_id = %connect.client_id, username = %username.as_deref().unwrap_or("-"), peer = %self.info.peer, "authentication failed");
                self.refuse(&connect, reason);
                return None;
            }
        }
        Some(Authenticated {
            connect,
            username,
            data: None,
        })
    }

    /// Runs the authenticator on a blocking thread (a password hash costs milliseconds),
    /// at most `auth.max_concurrent_checks` at once; `None` if no slot freed up within the
    /// connect timeout.
    pub(super) fn check_password(
        &self,
        authenticator: Arc<dyn crate::auth::Authenticator>,
        connect: &Connect,
        username: &Option<String>,
    ) -> impl Future<Output = Option<Decision>> + Send + 'static {
        let wait = self.shared.config.limits.connect_timeout;
        let checks = self.shared.auth.checks.clone();
        let client_id = connect.client_id.to_string();
        let username = username.clone();
        let password = connect.password.clone();
        let (peer, listener, protocol) =
            (self.info.peer, self.info.listener_addr(), connect.protocol);
        let tls_identity = self.info.tls_identity.clone();
        async move {
            let permit = if wait > 0 {
                tokio::time::timeout(Duration::from_secs(wait), checks.acquire_owned())
                    .await
                    .ok()?
            } else {
                checks.acquire_owned().await
            }
            .ok()?;
            let decision = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                authenticator.authenticate(&ConnectInfo {
                    client_id: &client_id,
                    username: username.as_deref(),
                    password: password.as_deref(),
                    peer,
                    listener,
                    protocol,
                    tls_identity: tls_identity.as_deref(),
                })
            })
            .await;
            // A panicking authenticator refuses the client.
            Some(decision.unwrap_or(Decision::NotAuthorized))
        }
    }

    /// Answers the client with what the exchange said; `Some` when a CONNECT is accepted.
    pub(super) fn on_auth_step(&mut self, step: AuthStep) -> Option<Authenticated> {
        let now = now();
        let reauth = self.exchange.as_ref().is_some_and(|e| e.connect.is_none());
        match step {
            AuthStep::Continue(data) => {
                let auth = Auth {
                    reason_code: ReasonCode::ContinueAuthentication,
                    properties: AuthProperties {
                        authentication_data: Some(data),
                        ..AuthProperties::default()
                    },
                };
                if let Err(e) = self.session.auth(now, auth) {
                    tracing::error!(conn = self.id, "cannot send AUTH: {e}");
                    self.session.handle_transport_closed(now);
                }
                None
            }
            AuthStep::Success { username, data } => {
                let exchange = self.exchange.take()?;
                self.auth_method = Some(Box::new(exchange.method));
                match exchange.connect {
                    Some(connect) => Some(Authenticated {
                        connect,
                        username,
                        data,
                    }),
                    None => {
                        // Re-authentication: the identity may not change.
                        if self
                            .identity
                            .as_ref()
                            .is_some_and(|i| i.username != username)
                        {
                            tracing::info!(conn = self.id, client_id = %self.session.client_id(), "re-authentication as another user: refused");
                            self.close(ReasonCode::NotAuthorized);
                            return None;
                        }
                        let auth = Auth {
                            reason_code: ReasonCode::Success,
                            properties: AuthProperties {
                                authentication_data: data,
                                ..AuthProperties::default()
                            },
                        };
                        if let Err(e) = self.session.auth(now, auth) {
                            tracing::error!(conn = self.id, "cannot send AUTH: {e}");
                            self.session.handle_transport_closed(now);
                        }
                        None
                    }
                }
            }
            _ => {
                let exchange = self.exchange.take()?;
                tracing::info!(conn = self.id, method = exchange.method.name(), peer = %self.info.peer, reauth, "enhanced authentication failed");
                match exchange.connect {
                    // [MQTT-4.12.0-4]: CONNACK with a reason code of 0x80 or above, then close.
                    Some(connect) => self.refuse(&connect, ReasonCode::NotAuthorized),
                    // A failed re-authentication: DISCONNECT 0x87 [MQTT-4.12.1-2].
                    None => self.close(ReasonCode::NotAuthorized),
                }
                None
            }
        }
    }

    /// An AUTH from the client: the next step of the exchange, or a re-authentication.
    pub(super) async fn on_auth(&mut self, auth: Auth) {
        if auth.reason_code == ReasonCode::ReAuthenticate {
            // The engine checked that it names CONNECT's method [MQTT-4.12.1-1].
            let method = self.auth_method.as_deref().cloned();
            let (Some(method), true) = (method, self.accepted) else {
                self.close(ReasonCode::ProtocolError);
                return;
            };
            let client_id = self.session.client_id().to_string();
            let username = self.identity.as_ref().and_then(|i| i.username.clone());
            let info = ConnectInfo {
                client_id: &client_id,
                username: username.as_deref(),
                password: None,
                peer: self.info.peer,
                listener: self.info.listener_addr(),
                protocol: self.session.version(),
                tls_identity: self.info.tls_identity.as_deref(),
            };
            let steps = method.start(&info);
            self.exchange = Some(Box::new(Exchange {
                method,
                steps,
                connect: None,
            }));
        }
        let Some(exchange) = self.exchange.as_mut() else {
            // AUTH Continue with no exchange in progress.
            self.close(ReasonCode::ProtocolError);
            return;
        };
        let step = exchange
            .steps
            .step(auth.properties.authentication_data.as_deref());
        if let Some(authenticated) = self.on_auth_step(step) {
            self.complete_connect(authenticated).await;
        }
    }

    /// Whether this client may do `access` on `topic`.
    pub(super) fn allowed(&self, access: Access, topic: &str) -> bool {
        self.shared
            .auth
            .allows(self.identity.as_deref(), access, topic)
    }
}
