//! lkg-notify against real receivers: loopback HTTP servers that check each
//! service's payload, and a real SMTP server (Debian's python3-aiosmtpd).
#![allow(clippy::disallowed_methods, reason = "tests read the mail files they wait for")]

mod http;
mod smtp;

use lkg_notify::{Message, Severity};

/// A rollback's message, with every character a payload must carry intact.
fn message() -> Message {
    Message {
        title: "lkg: shop rolled back 1.1.0 → 1.0.0".to_owned(),
        text: "GET /health answered 503 <b> & \"quoted\"\nreason: unhealthy".to_owned(),
        severity: Severity::Warning,
        json: serde_json::json!({"id": "20260529T005510Z-shop-rollback-3f2a", "kind": "rollback"}),
    }
}
