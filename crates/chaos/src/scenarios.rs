//! The scenarios, each a job (or jobs) under a fault, with what is checked afterwards, and
//! the checks made once all have run.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jobs_core::sqlx::{self, PgPool};
use jobs_queue::messages::Queues;
use jobs_queue::{OutgoingMessage, PgTransport, PgTransportOptions, Transport};
use serde_json::{Value, json};

use crate::data;
use crate::faults::{Fault, drive};
use crate::receiver::Deliveries;
use crate::stack::Stack;

/// One line of the table.
#[derive(Debug)]
pub struct Row {
    pub scenario: String,
    pub faults: String,
    pub secs: f64,
    pub outcome: String,
    pub ok: bool,
}

pub struct Run {
    pub stack: Stack,
    pub pool: PgPool,
    pub hook: String,
    pub deliveries: Arc<Mutex<Deliveries>>,
    /// Jobs submitted with a webhook: each must get exactly one logical webhook.
    pub webhook_jobs: Vec<String>,
    pub rows: Vec<Row>,
    /// What `COPY` writes for the source: every export must be this.
    pub expected: (u64, String),
    /// An exported file, uploaded once for the imports.
    pub upload_id: Option<String>,
    pub job_deadline: Duration,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run").field("rows", &self.rows).finish()
    }
}

fn describe(fault: &Fault, kills: u32, notes: &[String]) -> String {
    let mut parts = match fault {
        Fault::None => vec!["none".to_owned()],
        Fault::KillWorkers { .. } => vec![format!("{kills} worker SIGKILLs")],
        Fault::KillApi { .. } => vec![format!("{kills} API SIGKILLs")],
        Fault::RestartPostgres | Fault::BlobOutage { .. } => vec![],
    };
    parts.extend(notes.iter().cloned());
    parts.join("; ")
}

impl Run {
    fn record(&mut self, scenario: &str, faults: String, secs: f64, outcome: String, ok: bool) {
        self.rows.push(Row {
            scenario: scenario.to_owned(),
            faults,
            secs,
            outcome,
            ok,
        });
    }

    /// An export of the whole source under `fault`: the file must be byte-identical to
    /// `COPY`.
    pub async fn export(&mut self, name: &str, fault: Fault) -> anyhow::Result<()> {
        let started = Instant::now();
        let id = self
            .stack
            .submit(
                &json!({"kind": "export", "export": {"dataset": "src", "format": "csv"},
                            "notify": {"webhook_url": self.hook}}),
            )
            .await?;
        self.webhook_jobs.push(id.clone());
        let (job, injected) = drive(&mut self.stack, &id, &fault, self.job_deadline).await?;
        let secs = started.elapsed().as_secs_f64();
        let (ok, outcome) = if job["status"] != "succeeded" {
            (false, format!("job {}: {}", job["status"], job["error"]))
        } else {
            let file = self.stack.download(&id).await?;
            let got = data::digest(&file);
            if self.upload_id.is_none() {
                self.upload_id = Some(self.stack.upload(file).await?);
            }
            if got == self.expected {
                (
                    true,
                    format!(
                        "{} bytes, {} parts, identical to COPY",
                        got.0, job["result"]["parts"]
                    ),
                )
            } else {
                (
                    false,
                    format!("file differs from COPY: {got:?} vs {:?}", self.expected),
                )
            }
        };
        self.record(
            name,
            describe(&fault, injected.kills, &injected.notes),
            secs,
            outcome,
            ok,
        );
        Ok(())
    }

    /// An import of the exported file into an empty copy of the source under `fault`: the
    /// table must equal the source.
    pub async fn import(&mut self, name: &str, fault: Fault) -> anyhow::Result<()> {
        let Some(upload) = self.upload_id.clone() else {
            anyhow::bail!("no exported file to import");
        };
        sqlx::query("TRUNCATE public.chaos_dst")
            .execute(&self.pool)
            .await?;
        let started = Instant::now();
        let id = self
            .stack
            .submit(
                &json!({"kind": "import", "import": {"dataset": "dst", "upload_id": upload},
                            "notify": {"webhook_url": self.hook}}),
            )
            .await?;
        self.webhook_jobs.push(id.clone());
        let (job, injected) = drive(&mut self.stack, &id, &fault, self.job_deadline).await?;
        let secs = started.elapsed().as_secs_f64();
        let differences = data::differences(&self.pool).await?;
        let r = &job["result"];
        let ok = job["status"] == "succeeded" && differences == 0 && r["rejected"] == 0;
        let outcome = format!(
            "{}: {} rows, {} inserted, {} updated, {} rejected, {} items; {differences} rows differ from the source",
            job["status"],
            r["rows"],
            r["inserted"],
            r["updated"],
            r["rejected"],
            job["progress"]["total"]
        );
        self.record(
            name,
            describe(&fault, injected.kills, &injected.notes),
            secs,
            outcome,
            ok,
        );
        Ok(())
    }

    /// `n` small exports submitted one after another while the enqueuer and the notifier
    /// are killed (at the 4th submission of every 6) and started again (three submissions
    /// later, the last time after the last submission): jobs submitted meanwhile wait in the
    /// queue, and every job must end with one webhook. The time reported after the last
    /// restart is how long the services took to catch up.
    pub async fn many_small_jobs(&mut self, name: &str, n: i64) -> anyhow::Result<()> {
        let started = Instant::now();
        let (mut ids, mut kills, mut down) = (Vec::new(), 0, false);
        for i in 0..n {
            if i % 6 == 3 && !down {
                self.stack.kill("enqueuer").await?;
                self.stack.kill("notifier").await?;
                kills += 2;
                down = true;
            } else if i % 6 == 0 && down {
                self.stack.start("enqueuer")?;
                self.stack.start("notifier")?;
                down = false;
            }
            let filter = json!({"id": {"gte": i * 1000, "lt": (i + 1) * 1000}});
            ids.push(
                self.stack
                    .submit(&json!({"kind": "export",
                                    "export": {"dataset": "src", "filter": filter},
                                    "notify": {"webhook_url": self.hook}}))
                    .await?,
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        if down {
            self.stack.start("enqueuer")?;
            self.stack.start("notifier")?;
        }
        let back = Instant::now();
        self.webhook_jobs.extend(ids.iter().cloned());
        let mut succeeded = 0;
        for id in &ids {
            let (job, _) = drive(&mut self.stack, id, &Fault::None, self.job_deadline).await?;
            succeeded += usize::from(job["status"] == "succeeded");
        }
        self.rows.push(Row {
            scenario: name.to_owned(),
            faults: format!("{kills} SIGKILLs of the enqueuer and notifier"),
            secs: started.elapsed().as_secs_f64(),
            outcome: format!(
                "{succeeded} of {n} jobs succeeded, the last {:.1} s after both were back",
                back.elapsed().as_secs_f64()
            ),
            ok: succeeded == ids.len(),
        });
        Ok(())
    }

    /// Messages no service can read, sent straight into each queue: each must be
    /// dead-lettered with a reason, and no service may die of them.
    pub async fn poison(&mut self, name: &str) -> anyhow::Result<()> {
        let started = Instant::now();
        let transport = PgTransport::start(
            self.pool.clone(),
            PgTransportOptions {
                listen_notify: false,
                poll_interval: Duration::from_millis(200),
                maintenance_interval: Duration::from_secs(3600),
                vacuum_dead_rows: 0,
                receiver_connections: 1,
            },
        )
        .await?;
        let queues = Queues::default();
        let bodies: [&[u8]; 4] = [
            b"not json at all",
            b"{\"kind\": \"no.such.kind\", \"job_id\": \"x\"}",
            b"",
            &[0xff, 0xfe, 0x00, 0x01],
        ];
        let mut sent = Vec::new();
        for queue in [&queues.work, &queues.jobs, &queues.events] {
            let msgs: Vec<OutgoingMessage> = bodies
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    OutgoingMessage::new(
                        format!("poison-{queue}-{i}-{}", uuid::Uuid::new_v4()),
                        b.to_vec(),
                    )
                })
                .collect();
            sent.extend(msgs.iter().map(|m| (queue.clone(), m.message_id.clone())));
            transport.send(queue, &msgs).await?;
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut reasons = std::collections::BTreeMap::<String, u32>::new();
        loop {
            let mut found = 0;
            reasons.clear();
            for queue in [&queues.work, &queues.jobs, &queues.events] {
                for dead in transport.peek_dead_letters(queue, None, 5000).await? {
                    if sent
                        .iter()
                        .any(|(q, id)| q == queue && *id == dead.message_id)
                    {
                        found += 1;
                        *reasons.entry(dead.reason.clone()).or_default() += 1;
                    }
                }
            }
            if found == sent.len() || Instant::now() > deadline {
                let died = self.stack.exited();
                let ok = found == sent.len() && died.is_none();
                let reasons: Vec<String> =
                    reasons.iter().map(|(r, n)| format!("{n}× {r}")).collect();
                self.rows.push(Row {
                    scenario: name.to_owned(),
                    faults: format!("{} malformed messages in 3 queues", sent.len()),
                    secs: started.elapsed().as_secs_f64(),
                    outcome: format!(
                        "{found} dead-lettered ({}){}",
                        reasons.join(", "),
                        died.map(|(s, st)| format!("; {s} exited: {st}"))
                            .unwrap_or_default()
                    ),
                    ok,
                });
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Request bodies a client may get wrong: each must be a 4xx with the JSON error body.
    pub async fn bad_bodies(&mut self, name: &str) -> anyhow::Result<()> {
        let started = Instant::now();
        let upload = self.upload_id.clone().unwrap_or_default();
        let jobs: Vec<Value> = vec![
            json!({}),
            json!([]),
            json!("export"),
            json!({"kind": "export"}),
            json!({"kind": "export", "export": {}}),
            json!({"kind": "export", "export": {"dataset": "nope"}}),
            json!({"kind": "export", "export": {"dataset": "src", "format": "xlsx"}}),
            json!({"kind": "export", "export": {"dataset": "src", "columns": ["id", "salary"]}}),
            json!({"kind": "export", "export": {"dataset": "src", "filter": {"payload": "x"}}}),
            json!({"kind": "export", "export": {"dataset": "src", "filter": {"id": {"gte": "ten"}}}}),
            json!({"kind": "export", "export": {"dataset": "src", "chunk_rows": -5}}),
            json!({"kind": "export", "export": {"dataset": "src"}, "notify": {"webhook_url": "ftp://x"}}),
            json!({"kind": "import", "import": {"dataset": "dst", "upload_id": "not-an-id"}}),
            json!({"kind": "import", "import": {"dataset": "dst", "upload_id": upload, "max_rejected": -1}}),
            json!({"kind": "ingest", "ingest": {"source": "none"}}),
            json!({"kind": "no-such-kind"}),
        ];
        let mut raw: Vec<(&str, Vec<u8>)> = vec![
            // Over api.max_body_bytes (1 MiB by default).
            ("application/json", vec![b' '; 2 << 20]),
            ("application/json", b"{".to_vec()),
            ("application/json", b"{\"kind\": \"export\", }".to_vec()),
            ("application/json", vec![0xff, 0xfe]),
            ("text/plain", b"kind=export".to_vec()),
        ];
        raw.extend(jobs.iter().map(|j| {
            (
                "application/json",
                serde_json::to_vec(j).unwrap_or_default(),
            )
        }));
        let (mut fine, mut server_errors, mut unformatted) = (0, 0, Vec::new());
        for (content_type, body) in raw {
            let (status, answer) = self
                .stack
                .post_raw("/v1/jobs", content_type, body.clone())
                .await?;
            if status >= 500 {
                server_errors += 1;
            } else if !(400..500).contains(&status) {
                unformatted.push(format!("{status} for {}", String::from_utf8_lossy(&body)));
            } else if answer["error"]["code"].is_string() && answer["error"]["message"].is_string()
            {
                fine += 1;
            } else {
                unformatted.push(format!(
                    "{status} {answer} for {}",
                    String::from_utf8_lossy(&body)
                ));
            }
        }
        let n = fine + server_errors + unformatted.len();
        self.rows.push(Row {
            scenario: name.to_owned(),
            faults: format!("{n} malformed POST /v1/jobs bodies"),
            secs: started.elapsed().as_secs_f64(),
            outcome: format!(
                "{fine} answered 4xx with the JSON error; {server_errors} 5xx{}",
                if unformatted.is_empty() {
                    String::new()
                } else {
                    format!("; other: {}", unformatted.join(" | "))
                }
            ),
            ok: server_errors == 0 && unformatted.is_empty(),
        });
        Ok(())
    }

    /// After everything: every job ended, one logical webhook per job, nothing left locked.
    pub async fn final_checks(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        let unfinished: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM offload.jobs
             WHERE status NOT IN ('succeeded', 'failed', 'cancelled')",
        )
        .fetch_one(&self.pool)
        .await?;
        // Webhooks of the last jobs may still be on their way.
        let deadline = Instant::now() + Duration::from_secs(60);
        let (one, wrong, repeats) = loop {
            let tally = self
                .deliveries
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .tally(&self.webhook_jobs);
            if tally.1.is_empty() || Instant::now() > deadline {
                break tally;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let locked: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM offload.queue_messages
             WHERE lock_token IS NOT NULL AND visible_at > now()",
        )
        .fetch_one(&self.pool)
        .await?;
        let expired: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM offload.queue_messages
             WHERE lock_token IS NOT NULL AND visible_at <= now()",
        )
        .fetch_one(&self.pool)
        .await?;
        self.rows.push(Row {
            scenario: "after all".to_owned(),
            faults: String::new(),
            secs: started.elapsed().as_secs_f64(),
            outcome: format!(
                "{unfinished} jobs unfinished; {one} of {} jobs with exactly one webhook ({repeats} repeated deliveries){}; {locked} messages locked, {expired} with an expired lock",
                self.webhook_jobs.len(),
                if wrong.is_empty() { String::new() } else { format!(" — {}", wrong.join(", ")) },
            ),
            ok: unfinished == 0 && wrong.is_empty() && locked == 0 && expired == 0,
        });
        Ok(())
    }
}
