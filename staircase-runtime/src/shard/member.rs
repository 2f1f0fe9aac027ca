//! A replica's membership: a Lease of its own, renewed with its acknowledgement, released on
//! shutdown. A term begins at each join; grants of an earlier term are void.

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

use super::assignment::{ACK, Ack};
use crate::LeaderElection;

/// The label every member Lease of one operator carries: the operator's Lease name.
pub(crate) const GROUP: &str = "staircase.rs/shard-group";

/// The name of `identity`'s member Lease in the group of Lease `lease`.
pub(crate) fn lease_name(lease: &str, identity: &str) -> String {
    format!("{lease}-member-{identity}")
}

pub(crate) struct Member {
    api: Api<Lease>,
    cfg: LeaderElection,
    name: String,
    term: String,
}

impl Member {
    pub(crate) fn new(client: Client, cfg: &LeaderElection) -> Self {
        let api = match &cfg.namespace {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::default_namespaced(client),
        };
        Member {
            api,
            name: lease_name(&cfg.lease_name, &cfg.identity),
            cfg: cfg.clone(),
            term: String::new(),
        }
    }

    pub(crate) fn identity(&self) -> &str {
        &self.cfg.identity
    }

    pub(crate) fn term(&self) -> &str {
        &self.term
    }

    /// Begins a new term: nothing granted before it may run.
    pub(crate) async fn join(&mut self) -> kube::Result<()> {
        self.term = format!("{:016x}", rand::random::<u64>());
        let ack = Ack {
            term: self.term.clone(),
            ..Ack::default()
        };
        self.renew(&ack).await
    }

    /// Renews the Lease, publishing `ack`.
    pub(crate) async fn renew(&self, ack: &Ack) -> kube::Result<()> {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let spec = LeaseSpec {
            holder_identity: Some(self.cfg.identity.clone()),
            lease_duration_seconds: Some(self.cfg.lease_duration.as_secs().max(1) as i32),
            renew_time: Some(now),
            ..Default::default()
        };
        let annotations = BTreeMap::from([(
            ACK.to_string(),
            serde_json::to_string(ack).expect("an ack serializes"),
        )]);
        match self.api.get_opt(&self.name).await? {
            Some(mut lease) => {
                let acquire = lease.spec.as_ref().and_then(|s| s.acquire_time.clone());
                lease.spec = Some(LeaseSpec {
                    acquire_time: acquire.or_else(|| spec.renew_time.clone()),
                    ..spec
                });
                lease
                    .metadata
                    .annotations
                    .get_or_insert_default()
                    .extend(annotations);
                // Carries the resourceVersion read: only this replica writes its Lease, so a
                // conflict is a stranger's write and this renewal counts as failed.
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
                    .map(|_| ())
            }
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        labels: Some(BTreeMap::from([(
                            GROUP.to_string(),
                            self.cfg.lease_name.clone(),
                        )])),
                        annotations: Some(annotations),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        acquire_time: spec.renew_time.clone(),
                        ..spec
                    }),
                };
                self.api
                    .create(&PostParams::default(), &lease)
                    .await
                    .map(|_| ())
            }
        }
    }

    /// Ends the membership (on shutdown, after the last run): the assigner gives the slots away
    /// at its next look instead of after the lease duration.
    pub(crate) async fn release(&self) -> kube::Result<()> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_default();
        spec.holder_identity = None;
        spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
            .map(|_| ())
    }
}
