//! Start estimates for the form ("estimated start 14:05 on node3"): `sbatch --test-only` as
//! the user with the options as they stand, at most one every [`ESTIMATE_EVERY`] per user (a
//! form asks as its fields change; each ask reaches Slurm's controller).

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use super::parse::{
    self, controller_unreachable, has_come, short_time, standard_form, TestOnly, SLURM_TIME_FORMAT,
};
use super::script::JobRequest;
use super::SlurmSpawner;
use crate::{lock, Estimate, FormContext, SpawnError, ValidatedOptions};

/// How often one user may ask for an estimate.
const ESTIMATE_EVERY: Duration = Duration::from_secs(2);

impl SlurmSpawner {
    pub(super) async fn estimate_job(
        &self,
        ctx: &FormContext,
        options: &ValidatedOptions,
    ) -> Result<Estimate, SpawnError> {
        {
            let mut last = lock(&self.last_estimate);
            if let Some(at) = last.get(&ctx.user) {
                if at.elapsed() < ESTIMATE_EVERY {
                    return Err(SpawnError::TooSoon {
                        message: format!(
                            "one estimate every {} seconds, please; try again in a moment",
                            ESTIMATE_EVERY.as_secs()
                        ),
                        retry_after: ESTIMATE_EVERY.saturating_sub(at.elapsed()),
                    });
                }
            }
            last.insert(ctx.user.clone(), Instant::now());
        }
        let user = if ctx.unix_user.is_empty() {
            &ctx.user
        } else {
            &ctx.unix_user
        };
        let job = JobRequest::from_options(options, &self.slurm.fields)?;
        let mut args = vec!["--test-only".to_owned()];
        args.extend(job.sbatch_options(&self.slurm));
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self
            .commands
            .as_user(
                user,
                "sbatch",
                &argv,
                // The estimated start with its UTC offset (parse.rs: SLURM_TIME_FORMAT).
                &BTreeMap::from([("SLURM_TIME_FORMAT".to_owned(), SLURM_TIME_FORMAT.to_owned())]),
                Some("#!/bin/sh\ntrue\n"),
            )
            .await?;
        if controller_unreachable(&out.stderr) {
            return Err(SpawnError::Failed(
                "Slurm's controller does not answer right now; please try again in a minute"
                    .to_owned(),
            ));
        }
        Ok(match parse::parse_test_only(&out.stderr) {
            TestOnly::Fits { start, nodes, .. } => {
                let message = if has_come(&start) {
                    format!("would start now on {nodes}")
                } else {
                    format!("estimated start {} on {nodes}", short_time(&start))
                };
                Estimate {
                    fits: true,
                    message,
                    start: Some(standard_form(&start)),
                    nodes: Some(nodes),
                }
            }
            TestOnly::Refused(reason) => Estimate {
                fits: false,
                message: format!("Slurm cannot run this request: {reason}"),
                start: None,
                nodes: None,
            },
        })
    }
}
