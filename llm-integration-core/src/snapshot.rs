//! The configuration snapshot: an immutable view of every integration and
//! VM, indexed for the hot path.
//!
//! Built from [`ConfigRecords`] whenever the configuration changes and
//! swapped in atomically by the server (an `Arc<Snapshot>` behind an
//! atomic pointer). For each VM it precomputes the integrations attached to
//! it, by hostname label, so a routing decision is a few hash lookups
//! whatever the number of integrations.

use std::net::IpAddr;
use std::sync::Arc;

use crate::attachment::Attachment;
use crate::domain::{
    ConfigRecords, IntegrationConfig, IntegrationId, Owner, Team, TeamId, User, UserId, Vm, VmId,
};
use crate::host::Scope;
use crate::model_id::ModelCatalog;

/// The snapshot's indexes hash with foldhash, seeded at random once per
/// process: their keys come from the configuration (ids, addresses,
/// integration names), not from requests, and a routing decision makes
/// about ten lookups (criterion's route benches ran 12% to 50% faster than
/// with SipHash).
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// What a snapshot is built with besides the records.
#[derive(Debug, Clone)]
pub struct SnapshotOptions {
    /// The domain of integration hostnames (`NAME.int.DOMAIN`), lowercase,
    /// without a trailing dot. Default `exe.xyz`.
    pub domain: String,
    /// Models known per provider, for routing by exact match.
    pub catalog: Arc<ModelCatalog>,
    /// A number that grows with every configuration change (for logs and
    /// replicas).
    pub version: u64,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        SnapshotOptions {
            domain: "exe.xyz".to_owned(),
            catalog: Arc::default(),
            version: 0,
        }
    }
}

impl SnapshotOptions {
    /// Options with another domain (normalised to lowercase, no trailing dot).
    pub fn with_domain(mut self, domain: &str) -> Self {
        self.domain = domain.trim_end_matches('.').to_ascii_lowercase();
        self
    }
}

/// A VM with the integrations attached to it.
#[derive(Debug)]
pub(crate) struct VmEntry {
    pub(crate) vm: Vm,
    /// Attached personal integrations by name → index into `integrations`.
    pub(crate) personal: HashMap<Box<str>, u32>,
    /// Attached team integrations by name → index into `integrations`.
    pub(crate) team: HashMap<Box<str>, u32>,
}

/// The immutable, indexed configuration the data plane routes on, with
/// the model catalog it routes by exact match. The indexed configuration
/// is shared, so a snapshot with a new catalog costs one allocation
/// ([`Snapshot::with_catalog`]).
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub(crate) catalog: Arc<ModelCatalog>,
    pub(crate) indexed: Arc<Indexed>,
}

/// The configuration records, indexed.
#[derive(Debug)]
pub(crate) struct Indexed {
    pub(crate) domain: Box<str>,
    pub(crate) version: u64,
    pub(crate) integrations: Vec<IntegrationConfig>,
    pub(crate) users: HashMap<UserId, User>,
    pub(crate) teams: HashMap<TeamId, Team>,
    pub(crate) vms: HashMap<VmId, VmEntry>,
    by_address: HashMap<IpAddr, VmId>,
    /// Every integration by owner and name, attached or not.
    by_owner: HashMap<Owner, HashMap<Box<str>, u32>>,
    by_id: HashMap<IntegrationId, u32>,
}

impl Snapshot {
    /// Indexes `records`. Never fails: records that reference missing
    /// users or teams simply match nothing, and of two integrations with
    /// the same owner and name (which a store prevents) the first wins.
    pub fn build(records: ConfigRecords, options: SnapshotOptions) -> Snapshot {
        let ConfigRecords {
            users,
            teams,
            vms,
            integrations,
        } = records;
        let mut by_owner: HashMap<Owner, HashMap<Box<str>, u32>> = HashMap::default();
        let mut by_id = HashMap::with_capacity_and_hasher(integrations.len(), Default::default());
        for (index, integration) in integrations.iter().enumerate() {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            by_owner
                .entry(integration.owner)
                .or_default()
                .entry(integration.name.as_str().into())
                .or_insert(index);
            by_id.entry(integration.id).or_insert(index);
        }
        let attached = |owner: Owner, vm: &Vm| -> HashMap<Box<str>, u32> {
            by_owner
                .get(&owner)
                .map(|named| {
                    named
                        .iter()
                        .filter(|(_, index)| {
                            integrations[**index as usize]
                                .attachments
                                .iter()
                                .any(|a| a.matches(vm))
                        })
                        .map(|(name, index)| (name.clone(), *index))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut by_address = HashMap::default();
        let mut vm_index = HashMap::with_capacity_and_hasher(vms.len(), Default::default());
        for vm in vms {
            for address in &vm.addresses {
                by_address.entry(*address).or_insert(vm.id);
            }
            let personal = attached(Owner::User(vm.owner), &vm);
            let team = vm
                .team
                .map(|t| attached(Owner::Team(t), &vm))
                .unwrap_or_default();
            vm_index.insert(vm.id, VmEntry { vm, personal, team });
        }
        let indexed = Indexed {
            domain: options.domain.into_boxed_str(),
            version: options.version,
            users: users.into_iter().map(|u| (u.id, u)).collect(),
            teams: teams.into_iter().map(|t| (t.id, t)).collect(),
            vms: vm_index,
            by_address,
            by_owner,
            by_id,
            integrations,
        };
        Snapshot {
            catalog: options.catalog,
            indexed: Arc::new(indexed),
        }
    }

    /// This configuration, routing with `catalog`.
    #[must_use]
    pub fn with_catalog(&self, catalog: Arc<ModelCatalog>) -> Snapshot {
        Snapshot {
            catalog,
            indexed: self.indexed.clone(),
        }
    }

    /// The model catalog, shared.
    pub fn catalog_shared(&self) -> Arc<ModelCatalog> {
        self.catalog.clone()
    }

    /// The configuration version this snapshot was built at.
    pub fn version(&self) -> u64 {
        self.indexed.version
    }

    /// The hostname domain.
    pub fn domain(&self) -> &str {
        &self.indexed.domain
    }

    /// The model catalog used for routing.
    pub fn catalog(&self) -> &ModelCatalog {
        &self.catalog
    }

    /// The VM whose connections come from `address` (the default caller
    /// resolver).
    pub fn vm_by_address(&self, address: IpAddr) -> Option<VmId> {
        self.indexed.by_address.get(&address).copied()
    }

    /// A VM by id.
    pub fn vm(&self, id: VmId) -> Option<&Vm> {
        self.indexed.vms.get(&id).map(|e| &e.vm)
    }

    /// A user by id.
    pub fn user(&self, id: UserId) -> Option<&User> {
        self.indexed.users.get(&id)
    }

    /// A team by id.
    pub fn team(&self, id: TeamId) -> Option<&Team> {
        self.indexed.teams.get(&id)
    }

    /// An integration by id.
    pub fn integration(&self, id: IntegrationId) -> Option<&IntegrationConfig> {
        self.indexed
            .by_id
            .get(&id)
            .map(|i| &self.indexed.integrations[*i as usize])
    }

    /// An integration by owner and name, attached to anything or not.
    pub fn integration_named(&self, owner: Owner, name: &str) -> Option<&IntegrationConfig> {
        self.indexed
            .by_owner
            .get(&owner)?
            .get(name)
            .map(|i| &self.indexed.integrations[*i as usize])
    }

    /// Every integration.
    pub fn integrations(&self) -> &[IntegrationConfig] {
        &self.indexed.integrations
    }

    /// The integration named `name` in `scope` if it is attached to `vm`.
    pub fn attached(&self, vm: VmId, scope: Scope, name: &str) -> Option<&IntegrationConfig> {
        let entry = self.indexed.vms.get(&vm)?;
        let map = match scope {
            Scope::Personal => &entry.personal,
            Scope::Team => &entry.team,
        };
        map.get(name)
            .map(|i| &self.indexed.integrations[*i as usize])
    }

    /// Every integration attached to `vm`, personal first, each in name
    /// order, with its scope.
    pub fn attached_to(&self, vm: VmId) -> Vec<(Scope, &IntegrationConfig)> {
        let Some(entry) = self.indexed.vms.get(&vm) else {
            return Vec::new();
        };
        let mut out: Vec<(Scope, &IntegrationConfig)> = entry
            .personal
            .values()
            .map(|i| (Scope::Personal, &self.indexed.integrations[*i as usize]))
            .chain(
                entry
                    .team
                    .values()
                    .map(|i| (Scope::Team, &self.indexed.integrations[*i as usize])),
            )
            .collect();
        out.sort_by(|a, b| (a.0 == Scope::Team, &a.1.name).cmp(&(b.0 == Scope::Team, &b.1.name)));
        out
    }

    /// The hostname VMs use for `integration`.
    pub fn hostname_of(&self, integration: &IntegrationConfig) -> String {
        integration.hostname(&self.indexed.domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attachment::AttachmentSpec;
    use crate::domain::IntegrationKind;

    fn records() -> ConfigRecords {
        let alice = UserId(1);
        let bob = UserId(2);
        let team = TeamId(1);
        let mut devbox = Vm::new(VmId(1), "devbox".parse().unwrap(), alice);
        devbox.addresses.push("127.0.0.2".parse().unwrap());
        devbox.team = Some(team);
        let mut gpu = Vm::new(VmId(2), "gpu".parse().unwrap(), alice);
        gpu.tags.insert("llm".parse().unwrap());
        let bobs = Vm::new(VmId(3), "bobs".parse().unwrap(), bob);
        let mut tagged = IntegrationConfig::default_llm(IntegrationId(2), Owner::User(alice));
        tagged.name = "tagged".parse().unwrap();
        tagged.attachments = vec!["tag:llm".parse::<AttachmentSpec>().unwrap()];
        let mut shared = IntegrationConfig::default_llm(IntegrationId(3), Owner::Team(team));
        shared.name = "shared".parse().unwrap();
        ConfigRecords {
            users: vec![
                User::new(alice, "a@example.com"),
                User::new(bob, "b@example.com"),
            ],
            teams: vec![Team {
                id: team,
                name: "core".parse().unwrap(),
                members: [alice].into(),
            }],
            vms: vec![devbox, gpu, bobs],
            integrations: vec![
                IntegrationConfig::default_llm(IntegrationId(1), Owner::User(alice)),
                tagged,
                shared,
            ],
        }
    }

    #[test]
    fn indexes_attachments_by_scope() {
        let s = Snapshot::build(records(), SnapshotOptions::default());
        assert_eq!(s.vm_by_address("127.0.0.2".parse().unwrap()), Some(VmId(1)));
        assert!(s.attached(VmId(1), Scope::Personal, "llm").is_some());
        assert!(
            s.attached(VmId(1), Scope::Personal, "tagged").is_none(),
            "not tagged"
        );
        assert!(s.attached(VmId(2), Scope::Personal, "tagged").is_some());
        assert!(s.attached(VmId(1), Scope::Team, "shared").is_some());
        assert!(
            s.attached(VmId(2), Scope::Team, "shared").is_none(),
            "not in the team"
        );
        assert!(
            s.attached(VmId(3), Scope::Personal, "llm").is_none(),
            "alice's, not bob's"
        );
        let names: Vec<_> = s
            .attached_to(VmId(1))
            .iter()
            .map(|(sc, i)| (*sc, i.name.to_string()))
            .collect();
        assert_eq!(
            names,
            vec![
                (Scope::Personal, "llm".to_string()),
                (Scope::Team, "shared".to_string())
            ]
        );
        let shared = s.integration(IntegrationId(3)).unwrap();
        assert_eq!(s.hostname_of(shared), "shared.team.exe.xyz");
        assert!(matches!(shared.kind, IntegrationKind::Llm(_)));
    }
}
