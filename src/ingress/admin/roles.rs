//! Who calls the admin API and what they may do: the admin credential (everything), or
//! a web console session: an admin, a team admin (their team's keys and usage) or a
//! viewer (their team's keys and usage, read-only). A role comes from the single sign-on
//! token the session was opened with (`switchyard_role` claim), or is `admin` for a
//! session opened with the admin key.

use actix_web::HttpRequest;
use switchyard_actors::pipeline::credential;
use switchyard_actors::GatewayError;

use super::super::respond::header;
use crate::app::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    TeamAdmin,
    Viewer,
}

impl Role {
    /// A token's `switchyard_role` claim; anything else is a viewer.
    pub fn from_claim(claim: Option<&str>) -> Role {
        match claim {
            Some("admin") => Role::Admin,
            Some("team_admin") => Role::TeamAdmin,
            _ => Role::Viewer,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::TeamAdmin => "team_admin",
            Role::Viewer => "viewer",
        }
    }
}

/// An authenticated admin API caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub role: Role,
    /// The team a team admin or viewer is held to.
    pub team: Option<String>,
    /// Who, for the audit trail.
    pub who: String,
}

impl Principal {
    pub fn admin(who: &str) -> Principal {
        Principal { role: Role::Admin, team: None, who: who.to_string() }
    }

    fn refuse(message: &str) -> GatewayError {
        GatewayError::Forbidden { code: "role_not_allowed", message: message.to_string() }
    }

    /// Everything but keys and usage needs the admin role.
    pub fn require_admin(&self) -> Result<(), GatewayError> {
        match self.role {
            Role::Admin => Ok(()),
            _ => Err(Self::refuse("this needs the admin role")),
        }
    }

    /// Changing keys needs the admin or team admin role.
    pub fn require_write(&self) -> Result<(), GatewayError> {
        match self.role {
            Role::Admin | Role::TeamAdmin => Ok(()),
            Role::Viewer => Err(Self::refuse("a viewer changes nothing")),
        }
    }

    /// Whether this caller sees what belongs to `team`.
    pub fn sees(&self, team: Option<&str>) -> bool {
        self.role == Role::Admin || (self.team.is_some() && self.team.as_deref() == team)
    }

    /// Whether this caller sees what key `key_id` did (`teams`: key id -> team; a JWT
    /// caller's id names its own).
    pub fn sees_key(&self, key_id: &str, teams: &std::collections::HashMap<String, String>) -> bool {
        self.sees(crate::usage::team_of(key_id, teams).as_deref())
    }

    /// The team a key or prompt this caller creates belongs to: a team admin's own
    /// (another is refused).
    pub fn team_of_new(&self, asked: Option<String>) -> Result<Option<String>, GatewayError> {
        match self.role {
            Role::Admin => Ok(asked),
            _ if asked.is_none() || asked == self.team => Ok(self.team.clone()),
            _ => Err(Self::refuse("a team admin creates keys and prompts of their own team only")),
        }
    }
}

/// The caller: the admin credential, else a console session (with its CSRF token for a
/// change). 404 while the admin API is off.
pub fn principal(req: &HttpRequest, state: &AppState) -> Result<Principal, GatewayError> {
    let expected = state.engine.runtime().config.server.admin_key_sha256.clone().ok_or(GatewayError::NotFound)?;
    match credential(&header(req)) {
        None => state.console.principal(req).unwrap_or(Err(GatewayError::MissingKey)),
        Some(c) if switchyard_config::hash_key(c) != expected => Err(GatewayError::InvalidKey),
        Some(_) => Ok(Principal::admin("admin")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_see_and_change_their_team_only() {
        let admin = Principal::admin("a");
        let lead = Principal { role: Role::TeamAdmin, team: Some("research".into()), who: "l".into() };
        let viewer = Principal { role: Role::Viewer, team: Some("research".into()), who: "v".into() };
        assert!(admin.sees(Some("ops")) && admin.sees(None));
        assert!(lead.sees(Some("research")) && !lead.sees(Some("ops")) && !lead.sees(None));
        assert!(lead.require_write().is_ok() && lead.require_admin().is_err());
        assert!(viewer.require_write().is_err());
        assert_eq!(lead.team_of_new(None).unwrap().as_deref(), Some("research"));
        assert!(lead.team_of_new(Some("ops".into())).is_err());
        // a key's team from the keys' teams, or from a JWT caller's own id
        let teams = std::collections::HashMap::from([("k1".to_string(), "research".to_string())]);
        assert!(lead.sees_key("k1", &teams) && lead.sees_key("jwt:eve@research", &teams));
        assert!(!lead.sees_key("k2", &teams) && !lead.sees_key("jwt:eve@ops", &teams) && admin.sees_key("k2", &teams));
        assert_eq!(Role::from_claim(Some("admin")), Role::Admin);
        assert_eq!(Role::from_claim(Some("root")), Role::Viewer);
    }
}
