//! At hub start: every server recorded as started is looked at again. A ready one that still
//! runs is adopted (its route is restored by the route check); one whose start was under way
//! (a job still queued, or starting) is taken up where it was; one that is gone is marked
//! stopped with the reason. A spawner that cannot tell (the batch controller is down) gives
//! no server up.

use std::sync::Arc;

use nbhub_spawner::{PollStatus, SpawnerState};
use serde_json::json;

use super::{Endpoint, Phase, Supervisor};
use crate::db::{self, servers, tokens};

impl Supervisor {
    pub async fn adopt(self: &Arc<Self>) -> Result<(), sqlx::Error> {
        let base = self.config.hub.base_url.as_str();
        for row in servers::list_started(&self.db).await? {
            let Some(user) = db::users::get_by_id(&self.db, row.user_id).await? else {
                continue;
            };
            let slot = self.slot_entry(&user, &row.name);
            let state = SpawnerState(row.state.clone());
            slot.lock().spawner_state = state.clone();
            let gone = |reason: String| {
                let this = self.clone();
                let slot = slot.clone();
                async move {
                    tracing::info!(user = %slot.user, server = %slot.server_name, %reason, "a server recorded as started is gone; marking it stopped");
                    let state = slot.lock().spawner_state.clone();
                    let log = this.spawner.last_output(&state);
                    this.cleanup(slot.user_id, &slot, row.id).await;
                    slot.set_exit(reason, log);
                    slot.set_phase(Phase::Stopped);
                }
            };
            if state.is_empty() {
                gone("the hub stopped before the server was started".into()).await;
                continue;
            }
            let ready = row.ip.is_some() && row.port.is_some();
            match self.spawner.poll(&state).await {
                PollStatus::Exited { reason } => {
                    gone(format!(
                        "the server was gone when the hub restarted: {reason}"
                    ))
                    .await;
                }
                status if ready => {
                    if let PollStatus::Unknown { reason } = &status {
                        tracing::warn!(user = %user.name, server = %row.name, %reason, "cannot tell whether the server runs; adopting it");
                    }
                    slot.lock().endpoint =
                        row.ip.clone().zip(row.port).map(|(host, port)| Endpoint {
                            host,
                            port: port as u16,
                        });
                    slot.set_phase(Phase::Running);
                    tracing::info!(user = %user.name, server = %row.name, "adopted a running server");
                }
                status => {
                    // The start was under way: take it up again.
                    let note = format!("Server at {}", slot.prefix(base));
                    let token_id = tokens::list_for(&self.db, tokens::Owner::User(user.id))
                        .await?
                        .into_iter()
                        .find(|t| t.note == note)
                        .map(|t| t.id);
                    slot.reset_for_spawn();
                    slot.lock().token_id = token_id;
                    if let Some(port) = row.port {
                        slot.report_port(port as u16);
                    }
                    slot.set_phase(Phase::Starting);
                    let message = match status {
                        PollStatus::Pending { message } => message,
                        _ => "The hub restarted; waiting for the server".to_string(),
                    };
                    slot.push_event(json!({"progress": 10, "message": message}));
                    tracing::info!(user = %user.name, server = %row.name, "taking up a start that was under way");
                    let this = self.clone();
                    let slot = slot.clone();
                    let row_id = row.id;
                    tokio::spawn(async move {
                        let _op = slot.op.lock().await;
                        this.run_resume(slot.user_id, &slot, row_id).await;
                    });
                }
            }
        }
        Ok(())
    }
}
