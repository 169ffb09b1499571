//! Connector API messages (`protocols/connector-api.md`): what connectors send, and the
//! per-connection replies (`welcome`, `result`, `error`, `pong`). The fanned-out messages (`event`,
//! `status`, `gap`, `snapshot`) are built once by the hub (`hub::message`).

use crate::hub::{AgentState, Command, ForwardingType};
use crate::model::{LoginId, Text};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// A message from a connector.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// First message: authenticate and name the Login IDs to serve.
    Hello {
        /// Bearer token.
        token: String,
        /// Login IDs (or user-name aliases) to serve.
        login_ids: Vec<String>,
        /// Last `seq` processed, per Login ID, to resume from.
        #[serde(default)]
        resume: HashMap<String, u64>,
        /// Free-form client name and version, for logs.
        #[serde(default)]
        client: Option<String>,
    },
    /// Place a call from the Login ID's device.
    MakeCall {
        /// Correlation id, echoed in the `result`.
        #[serde(default)]
        id: Option<serde_json::Value>,
        /// Login ID acting.
        login_id: String,
        /// Number to call.
        to: String,
    },
    /// Answer an alerting call.
    Answer {
        /// Correlation id.
        #[serde(default)]
        id: Option<serde_json::Value>,
        /// Login ID acting.
        login_id: String,
        /// The call.
        call_id: String,
    },
    /// Hang up.
    Clear {
        /// Correlation id.
        #[serde(default)]
        id: Option<serde_json::Value>,
        /// Login ID acting.
        login_id: String,
        /// The call.
        call_id: String,
    },
    /// Hold a call.
    Hold {
        /// Correlation id.
        #[serde(default)]
        id: Option<serde_json::Value>,
        /// Login ID acting.
        login_id: String,
        /// The call.
        call_id: String,
    },
    /// Retrieve a held call.
    Retrieve {
        /// Correlation id.
        #[serde(default)]
        id: Option<serde_json::Value>,
        /// Login ID acting.
        login_id: String,
        /// The call.
        call_id: String,
    },
    /// Blind transfer.
    SingleStepTransfer {
        /// Correlation id.
        #[serde(default)]
        id: Option<serde_json::Value>,
        /// Login ID acting.
        login_id: String,
        /// The call.
        call_id: String,
        /// Destination.
        to: String,
    },
    /// Hold a call and call someone to consult.
    Consult {
        /// Correlation id.
        #[serde(default)]
        id: Option<serde_json::Value>,
        /// Login ID acting.
        login_id: String,
        /// The call to hold.
        call_id: String,
        /// Who to consult.
        to: String,
    },
    /// Connect the held call with the active one and leave.
    Transfer {
        /// Correlation id.
        #[serde(default)]
        id: Option<serde_json::Value>,
        /// Login ID acting.
        login_id: String,
        /// The held call.
        held_call_id: String,
        /// The active call.
        active_call_id: String,
    },
    /// Join the held call and the active one.
    Conference {
        /// Correlation id.
        #[serde(default)]
        id: Option<serde_json::Value>,
        /// Login ID acting.
        login_id: String,
        /// The held call.
        held_call_id: String,
        /// The active call.
        active_call_id: String,
    },
    /// Send an alerting call elsewhere.
    Deflect {
        /// Correlation id.
        #[serde(default)]
        id: Option<serde_json::Value>,
        /// Login ID acting.
        login_id: String,
        /// The call.
        call_id: String,
        /// Destination.
        to: String,
    },
    /// Do-not-disturb on or off.
    SetDoNotDisturb {
        /// Correlation id.
        #[serde(default)]
        id: Option<serde_json::Value>,
        /// Login ID acting.
        login_id: String,
        /// On or off.
        on: bool,
    },
    /// Call forwarding on or off.
    SetForwarding {
        /// Correlation id.
        #[serde(default)]
        id: Option<serde_json::Value>,
        /// Login ID acting.
        login_id: String,
        /// Which forwarding.
        forwarding_type: ForwardingType,
        /// On or off.
        on: bool,
        /// Destination (to turn it on).
        #[serde(default)]
        to: Option<String>,
    },
    /// Agent state.
    SetAgentState {
        /// Correlation id.
        #[serde(default)]
        id: Option<serde_json::Value>,
        /// Login ID acting.
        login_id: String,
        /// Requested state.
        state: AgentState,
        /// Agent id, if the PBX needs one.
        #[serde(default)]
        agent_id: Option<String>,
    },
    /// Application-level ping; answered with `pong`.
    Ping {
        /// Echoed.
        #[serde(default)]
        id: Option<serde_json::Value>,
    },
}

/// A call-control request taken apart: correlation id, acting Login ID, command.
pub type CommandRequest = (Option<serde_json::Value>, String, Command);

impl ClientMessage {
    /// The command this message asks for (`None` for `hello` and `ping`).
    pub fn into_command(self) -> Option<CommandRequest> {
        let t = Text::from;
        Some(match self {
            ClientMessage::Hello { .. } | ClientMessage::Ping { .. } => return None,
            ClientMessage::MakeCall { id, login_id, to } => {
                (id, login_id, Command::MakeCall { to })
            }
            ClientMessage::Answer {
                id,
                login_id,
                call_id,
            } => (
                id,
                login_id,
                Command::Answer {
                    call_id: t(call_id),
                },
            ),
            ClientMessage::Clear {
                id,
                login_id,
                call_id,
            } => (
                id,
                login_id,
                Command::Clear {
                    call_id: t(call_id),
                },
            ),
            ClientMessage::Hold {
                id,
                login_id,
                call_id,
            } => (
                id,
                login_id,
                Command::Hold {
                    call_id: t(call_id),
                },
            ),
            ClientMessage::Retrieve {
                id,
                login_id,
                call_id,
            } => (
                id,
                login_id,
                Command::Retrieve {
                    call_id: t(call_id),
                },
            ),
            ClientMessage::SingleStepTransfer {
                id,
                login_id,
                call_id,
                to,
            } => (
                id,
                login_id,
                Command::SingleStepTransfer {
                    call_id: t(call_id),
                    to,
                },
            ),
            ClientMessage::Consult {
                id,
                login_id,
                call_id,
                to,
            } => (
                id,
                login_id,
                Command::Consult {
                    call_id: t(call_id),
                    to,
                },
            ),
            ClientMessage::Transfer {
                id,
                login_id,
                held_call_id,
                active_call_id,
            } => (
                id,
                login_id,
                Command::Transfer {
                    held_call_id: t(held_call_id),
                    active_call_id: t(active_call_id),
                },
            ),
            ClientMessage::Conference {
                id,
                login_id,
                held_call_id,
                active_call_id,
            } => (
                id,
                login_id,
                Command::Conference {
                    held_call_id: t(held_call_id),
                    active_call_id: t(active_call_id),
                },
            ),
            ClientMessage::Deflect {
                id,
                login_id,
                call_id,
                to,
            } => (
                id,
                login_id,
                Command::Deflect {
                    call_id: t(call_id),
                    to,
                },
            ),
            ClientMessage::SetDoNotDisturb { id, login_id, on } => {
                (id, login_id, Command::SetDoNotDisturb { on })
            }
            ClientMessage::SetForwarding {
                id,
                login_id,
                forwarding_type,
                on,
                to,
            } => (
                id,
                login_id,
                Command::SetForwarding {
                    forwarding_type,
                    on,
                    to,
                },
            ),
            ClientMessage::SetAgentState {
                id,
                login_id,
                state,
                agent_id,
            } => (id, login_id, Command::SetAgentState { state, agent_id }),
        })
    }
}

/// A Login ID the gateway would not serve, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Rejected {
    /// As the connector sent it.
    pub login_id: String,
    /// `unknown_login_id` or `forbidden_login_id`.
    pub code: &'static str,
}

/// `welcome`.
#[derive(Debug, Serialize)]
pub struct Welcome<'a> {
    /// Always `welcome`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Id of this connection.
    pub session_id: u64,
    /// Credential name.
    pub connector: &'a str,
    /// Gateway run id: `seq` restarts when it changes.
    pub epoch: &'a str,
    /// Login IDs served, canonical.
    pub login_ids: &'a [LoginId],
    /// Login IDs refused.
    pub rejected: &'a [Rejected],
    /// Server name and version.
    pub server: &'static str,
}

/// `error`.
#[derive(Debug, Serialize)]
pub struct ErrorMsg<'a> {
    /// Always `error`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Stable code.
    pub code: &'a str,
    /// Human-readable explanation.
    pub message: &'a str,
    /// The Login ID concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_id: Option<&'a str>,
}

/// Builds an `error` message.
pub fn error(code: &str, message: &str, login_id: Option<&str>) -> Bytes {
    crate::hub::message::to_bytes(&ErrorMsg {
        kind: "error",
        code,
        message,
        login_id,
    })
}

#[derive(Serialize)]
struct ResultMsg<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a serde_json::Value>,
    command: &'a str,
    login_id: &'a str,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    call_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ResultError<'a>>,
}

#[derive(Serialize)]
struct ResultError<'a> {
    code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    csta: Option<Csta<'a>>,
}

#[derive(Serialize)]
struct Csta<'a> {
    category: &'a str,
    value: &'a str,
}

/// A `result` for a command.
pub fn result(
    id: Option<&serde_json::Value>,
    command: &str,
    login_id: &str,
    outcome: &crate::hub::CommandResult,
) -> Bytes {
    let (ok, call_id, error) = match outcome {
        Ok(o) => (true, o.call_id.as_deref(), None),
        Err(e) => (
            false,
            None,
            Some(ResultError {
                code: e.code(),
                message: e.to_string(),
                csta: e.csta().map(|(category, value)| Csta { category, value }),
            }),
        ),
    };
    crate::hub::message::to_bytes(&ResultMsg {
        kind: "result",
        id,
        command,
        login_id,
        ok,
        call_id,
        error,
    })
}

/// `pong`.
pub fn pong(id: Option<&serde_json::Value>) -> Bytes {
    #[derive(Serialize)]
    struct P<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a serde_json::Value>,
    }
    crate::hub::message::to_bytes(&P { kind: "pong", id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_client_messages() {
        let m: ClientMessage = serde_json::from_str(
            r#"{"type":"hello","token":"t","login_ids":["A"],"resume":{"A":5}}"#,
        )
        .unwrap();
        assert!(matches!(m, ClientMessage::Hello { ref resume, .. } if resume["A"] == 5));
        let m: ClientMessage =
            serde_json::from_str(r#"{"type":"make_call","id":7,"login_id":"A","to":"+4930"}"#)
                .unwrap();
        assert!(matches!(m, ClientMessage::MakeCall { .. }));
        let m: ClientMessage = serde_json::from_str(
            r#"{"type":"set_forwarding","login_id":"A","forwarding_type":"no_answer","on":true,"to":"200"}"#,
        )
        .unwrap();
        let (_, _, c) = m.into_command().unwrap();
        assert_eq!(c.name(), "set_forwarding");
        assert!(
            serde_json::from_str::<ClientMessage>(
                r#"{"type":"set_forwarding","login_id":"A","forwarding_type":"sideways","on":true}"#
            )
            .is_err()
        );
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"nope"}"#).is_err());
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"ping","extra":1}"#).is_err());
    }
}
