//! Call-control commands from connectors, on their way to a link, and their outcomes.

use crate::model::Text;
use thiserror::Error;
use tokio::sync::oneshot;

/// Forwarding types (CSTA `ForwardingType`), named for connectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum ForwardingType {
    Immediate,
    Busy,
    NoAnswer,
    DoNotDisturb,
    ImmediateInternal,
    ImmediateExternal,
    BusyInternal,
    BusyExternal,
    NoAnswerInternal,
    NoAnswerExternal,
}

impl ForwardingType {
    /// The ECMA-323 token.
    pub fn csta(self) -> &'static str {
        match self {
            ForwardingType::Immediate => "forwardImmediate",
            ForwardingType::Busy => "forwardBusy",
            ForwardingType::NoAnswer => "forwardNoAns",
            ForwardingType::DoNotDisturb => "forwardDND",
            ForwardingType::ImmediateInternal => "forwardImmInt",
            ForwardingType::ImmediateExternal => "forwardImmExt",
            ForwardingType::BusyInternal => "forwardBusyInt",
            ForwardingType::BusyExternal => "forwardBusyExt",
            ForwardingType::NoAnswerInternal => "forwardNoAnsInt",
            ForwardingType::NoAnswerExternal => "forwardNoAnsExt",
        }
    }
}

/// Agent states a connector may request (CSTA `requestedAgentState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum AgentState {
    LoggedOn,
    LoggedOff,
    Ready,
    NotReady,
    WorkingAfterCall,
}

impl AgentState {
    /// The ECMA-323 token.
    pub fn csta(self) -> &'static str {
        match self {
            AgentState::LoggedOn => "loggedOn",
            AgentState::LoggedOff => "loggedOff",
            AgentState::Ready => "ready",
            AgentState::NotReady => "notReady",
            AgentState::WorkingAfterCall => "workingAfterCall",
        }
    }
}

/// A call-control command for a Login ID's own device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Place a call from the device to `to`.
    MakeCall {
        /// Number to call.
        to: String,
    },
    /// Answer an alerting call.
    Answer {
        /// The call.
        call_id: Text,
    },
    /// Hang up the device's connection.
    Clear {
        /// The call.
        call_id: Text,
    },
    /// Put a call on hold.
    Hold {
        /// The call.
        call_id: Text,
    },
    /// Take a call off hold.
    Retrieve {
        /// The call.
        call_id: Text,
    },
    /// Blind transfer of a call to `to`.
    SingleStepTransfer {
        /// The call.
        call_id: Text,
        /// Destination.
        to: String,
    },
    /// Hold a call and call `to` (the consultation call).
    Consult {
        /// The call to hold.
        call_id: Text,
        /// Who to consult.
        to: String,
    },
    /// Connect a held call with the active (consultation) call and leave.
    Transfer {
        /// The held call.
        held_call_id: Text,
        /// The active call.
        active_call_id: Text,
    },
    /// Join a held call and the active call into a conference.
    Conference {
        /// The held call.
        held_call_id: Text,
        /// The active call.
        active_call_id: Text,
    },
    /// Send an alerting call elsewhere.
    Deflect {
        /// The call.
        call_id: Text,
        /// Destination.
        to: String,
    },
    /// Turn do-not-disturb on or off.
    SetDoNotDisturb {
        /// On or off.
        on: bool,
    },
    /// Turn call forwarding on or off.
    SetForwarding {
        /// Which forwarding.
        forwarding_type: ForwardingType,
        /// On or off.
        on: bool,
        /// Destination (needed to turn it on).
        to: Option<String>,
    },
    /// Change the agent state.
    SetAgentState {
        /// The state.
        state: AgentState,
        /// Agent id, if the PBX needs one.
        agent_id: Option<String>,
    },
}

impl Command {
    /// Name for the connector protocol, logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Command::MakeCall { .. } => "make_call",
            Command::Answer { .. } => "answer",
            Command::Clear { .. } => "clear",
            Command::Hold { .. } => "hold",
            Command::Retrieve { .. } => "retrieve",
            Command::SingleStepTransfer { .. } => "single_step_transfer",
            Command::Consult { .. } => "consult",
            Command::Transfer { .. } => "transfer",
            Command::Conference { .. } => "conference",
            Command::Deflect { .. } => "deflect",
            Command::SetDoNotDisturb { .. } => "set_do_not_disturb",
            Command::SetForwarding { .. } => "set_forwarding",
            Command::SetAgentState { .. } => "set_agent_state",
        }
    }

    /// The calls it acts on; each must be up at the Login ID's device.
    pub fn call_ids(&self) -> Vec<&Text> {
        match self {
            Command::Answer { call_id }
            | Command::Clear { call_id }
            | Command::Hold { call_id }
            | Command::Retrieve { call_id }
            | Command::SingleStepTransfer { call_id, .. }
            | Command::Consult { call_id, .. }
            | Command::Deflect { call_id, .. } => vec![call_id],
            Command::Transfer {
                held_call_id,
                active_call_id,
            }
            | Command::Conference {
                held_call_id,
                active_call_id,
            } => vec![held_call_id, active_call_id],
            Command::MakeCall { .. }
            | Command::SetDoNotDisturb { .. }
            | Command::SetForwarding { .. }
            | Command::SetAgentState { .. } => vec![],
        }
    }

    /// Checks arguments the PBX would refuse less clearly.
    pub fn validate(&self) -> Result<(), CommandError> {
        let number = |what: &str, n: &str| {
            if n.trim().is_empty() || n.chars().count() > 128 || n.chars().any(char::is_control) {
                Err(CommandError::Invalid(format!(
                    "`{what}` must be 1-128 printable characters"
                )))
            } else {
                Ok(())
            }
        };
        match self {
            Command::MakeCall { to }
            | Command::SingleStepTransfer { to, .. }
            | Command::Consult { to, .. }
            | Command::Deflect { to, .. } => number("to", to),
            Command::SetForwarding { on: true, to, .. } => match to {
                Some(t) => number("to", t),
                None => Err(CommandError::Invalid(
                    "turning forwarding on needs `to`".into(),
                )),
            },
            Command::SetForwarding { to: Some(t), .. } => number("to", t),
            Command::SetAgentState {
                agent_id: Some(a), ..
            } => number("agent_id", a),
            Command::Transfer {
                held_call_id,
                active_call_id,
            }
            | Command::Conference {
                held_call_id,
                active_call_id,
            } if held_call_id == active_call_id => Err(CommandError::Invalid(
                "held_call_id and active_call_id must differ".into(),
            )),
            _ => Ok(()),
        }
    }
}

/// A command on its way to a link, with the channel for its outcome.
#[derive(Debug)]
pub struct LinkRequest {
    /// Device to act on.
    pub device: Text,
    /// What to do.
    pub command: Command,
    /// Where the outcome goes.
    pub reply: oneshot::Sender<CommandResult>,
}

/// What a successful command returns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandOk {
    /// The call created or acted on, when the PBX says.
    pub call_id: Option<Text>,
}

/// Outcome of a command.
pub type CommandResult = Result<CommandOk, CommandError>;

/// Why a command failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommandError {
    /// The Login ID is not served by this connection or does not exist.
    #[error("login id not served by this connection")]
    Forbidden,
    /// The PBX link is not up.
    #[error("the PBX link is down")]
    LinkDown,
    /// The device is not monitored (monitor failed or still starting).
    #[error("the device is not monitored: {0}")]
    NotMonitored(String),
    /// The link's command queue is full.
    #[error("the PBX link is busy; retry later")]
    Busy,
    /// The call is not one of the Login ID's calls.
    #[error("no such call at this Login ID's device")]
    UnknownCall,
    /// The PBX refused the request (CSTA error category and value).
    #[error("the PBX refused: {category}/{value}")]
    Rejected {
        /// Error category (`operation`, `stateIncompatibility`, …).
        category: String,
        /// Error value (`invalidCallID`, `invalidObjectState`, …).
        value: String,
    },
    /// No answer from the PBX in time.
    #[error("the PBX did not answer in time")]
    Timeout,
    /// A bad argument.
    #[error("invalid argument: {0}")]
    Invalid(String),
}

impl CommandError {
    /// Stable code for the connector protocol and metrics. A PBX refusal maps its CSTA error to
    /// the closest code (`protocols/connector-api.md` lists the table).
    pub fn code(&self) -> &'static str {
        match self {
            CommandError::Forbidden => "forbidden",
            CommandError::LinkDown => "link_down",
            CommandError::NotMonitored(_) => "not_monitored",
            CommandError::Busy => "busy",
            CommandError::UnknownCall => "unknown_call",
            CommandError::Rejected { category, value } => csta_code(category, value),
            CommandError::Timeout => "timeout",
            CommandError::Invalid(_) => "invalid",
        }
    }

    /// The PBX's own error, for a refusal.
    pub fn csta(&self) -> Option<(&str, &str)> {
        match self {
            CommandError::Rejected { category, value } => Some((category, value)),
            _ => None,
        }
    }
}

/// Maps a `CSTAErrorCode` to a connector error code.
fn csta_code(category: &str, value: &str) -> &'static str {
    match category {
        "stateIncompatibility" => "invalid_state",
        "security" => "not_permitted",
        // The standard's own spelling, and the correct one.
        "systemResourceAvailibility"
        | "systemResourceAvailability"
        | "subscribedResourceAvailability"
        | "performanceManagement" => "pbx_busy",
        "operation" => {
            let v = value.to_ascii_lowercase();
            if v.starts_with("privilegeviolation") || v == "securityviolation" {
                "not_permitted"
            } else if v.contains("callid")
                || v.contains("connectionid")
                || v.contains("connectionidentifier")
            {
                "invalid_call"
            } else if v.contains("destination")
                || v.contains("calleddevice")
                || v.contains("callingdevice")
                || v.contains("deviceid")
                || v.contains("forwardingdestination")
            {
                "invalid_destination"
            } else if v == "servicenotsupported"
                || v.contains("notsupported")
                || v.contains("incompatible")
            {
                "not_supported"
            } else {
                "rejected"
            }
        }
        _ => "rejected",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csta_errors_map_to_stable_codes() {
        let e = |c: &str, v: &str| CommandError::Rejected {
            category: c.into(),
            value: v.into(),
        };
        assert_eq!(
            e("stateIncompatibility", "noCallToAnswer").code(),
            "invalid_state"
        );
        assert_eq!(e("operation", "invalidCallID").code(), "invalid_call");
        assert_eq!(e("operation", "securityViolation").code(), "not_permitted");
        assert_eq!(e("operation", "generic").code(), "rejected");
        // The documented examples (protocols/connector-api.md).
        assert_eq!(
            e("stateIncompatibility", "invalidObjectState").code(),
            "invalid_state"
        );
        assert_eq!(e("operation", "invalidConnectionID").code(), "invalid_call");
        assert_eq!(
            e("operation", "invalidDestination").code(),
            "invalid_destination"
        );
        assert_eq!(
            e("operation", "invalidDeviceID").code(),
            "invalid_destination"
        );
        assert_eq!(
            e("operation", "serviceNotSupported").code(),
            "not_supported"
        );
        assert_eq!(
            e("operation", "privilegeViolationSpecifiedDevice").code(),
            "not_permitted"
        );
        assert_eq!(
            e("systemResourceAvailibility", "resourceBusy").code(),
            "pbx_busy"
        );
        assert_eq!(e("privateErrorCode", "x").code(), "rejected");
        assert_eq!(e("operation", "generic").code(), "rejected");
    }

    #[test]
    fn validation() {
        assert!(Command::MakeCall { to: " ".into() }.validate().is_err());
        // 128 characters, not bytes (the documented limit).
        let to = |s: String| Command::MakeCall { to: s }.validate();
        assert!(to("é".repeat(128)).is_ok());
        assert!(to("1".repeat(129)).is_err());
        assert!(to("1\r2".into()).is_err());
        assert!(
            Command::MakeCall {
                to: "+49 30 1".into()
            }
            .validate()
            .is_ok()
        );
        assert!(
            Command::SetForwarding {
                forwarding_type: ForwardingType::Immediate,
                on: true,
                to: None
            }
            .validate()
            .is_err()
        );
        assert!(
            Command::SetForwarding {
                forwarding_type: ForwardingType::Busy,
                on: false,
                to: None
            }
            .validate()
            .is_ok()
        );
        let t = Text::from("a");
        assert!(
            Command::Transfer {
                held_call_id: t.clone(),
                active_call_id: t
            }
            .validate()
            .is_err()
        );
    }
}
