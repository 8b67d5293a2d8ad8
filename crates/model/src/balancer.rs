//! Load balancing through HAProxy: an instance whose copies run HAProxy declares where its
//! Runtime API listens ([`LoadBalancer`]); an instance served through it names it
//! ([`BalancerLink`]) with the backend and the port its copies answer on. Buoy keeps that
//! backend's servers equal to the copies that run (see `engine::balance` and
//! `node::balancer`).

use serde::{Deserialize, Serialize};

use crate::error::StateError;

/// "This instance's copies run HAProxy, with the Runtime API at `admin_socket`."
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadBalancer {
    /// The admin socket of HAProxy's `stats socket PATH level admin` line, on each host
    /// (`{host}` is replaced by the host's name). Default: Debian's `/run/haproxy/admin.sock`.
    #[serde(default = "debian_socket")]
    #[schemars(length(min = 1, max = 200))]
    pub admin_socket: String,
    /// HAProxy's configuration file (`{host}` as above): Buoy rewrites the servers between
    /// `# buoy:begin BACKEND` and `# buoy:end BACKEND` there, so a reload keeps them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 200))]
    pub config: Option<String>,
}

fn debian_socket() -> String {
    "/run/haproxy/admin.sock".into()
}

/// "Serve my running copies through backend `backend` of load balancer `instance`, at
/// `port` on each copy's host."
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BalancerLink {
    /// The instance (by name) that runs HAProxy: it has `load_balancer`.
    #[schemars(extend("pattern" = crate::object::DNS_NAME_PATTERN))]
    pub instance: String,
    /// The HAProxy backend (declared in its configuration file).
    #[schemars(length(min = 1, max = 63), extend("pattern" = "^[A-Za-z0-9._:-]+$"))]
    pub backend: String,
    /// The port each copy serves on, at its host's address.
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
}

impl LoadBalancer {
    pub fn validate(&self) -> Result<(), StateError> {
        for (field, path) in [
            ("load_balancer.admin_socket", Some(&self.admin_socket)),
            ("load_balancer.config", self.config.as_ref()),
        ] {
            if let Some(p) = path
                && (!p.starts_with('/') || p.len() > 200 || p.contains('\0'))
            {
                return Err(StateError::invalid(
                    field,
                    "an absolute path, up to 200 bytes",
                ));
            }
        }
        Ok(())
    }

    /// The socket on host `host`.
    pub fn socket_on(&self, host: &str) -> String {
        self.admin_socket.replace("{host}", host)
    }

    /// The configuration file on host `host`.
    pub fn config_on(&self, host: &str) -> Option<String> {
        self.config.as_ref().map(|c| c.replace("{host}", host))
    }
}

impl BalancerLink {
    pub fn validate(&self, own_name: &str) -> Result<(), StateError> {
        crate::object::check_dns_like_name("balancer.instance", &self.instance)?;
        if self.instance == own_name {
            return Err(StateError::unprocessable(
                "balancer.instance",
                "an instance cannot balance itself: name the instance that runs HAProxy",
            ));
        }
        let ok = !self.backend.is_empty()
            && self.backend.len() <= 63
            && self
                .backend
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c));
        if !ok {
            return Err(StateError::invalid(
                "balancer.backend",
                "an HAProxy backend name: 1 to 63 letters, digits, '.', '_', ':' or '-'",
            ));
        }
        if self.port == 0 {
            return Err(StateError::invalid("balancer.port", "must be 1 to 65535"));
        }
        Ok(())
    }
}
